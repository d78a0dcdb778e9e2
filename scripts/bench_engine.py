"""The feature engine alone, as the job's driver runs it: milliseconds per micro-batch.

    python -m scripts.bench_engine [--transactions 200000] [--customers 1400] [--batch 40000]
                                   [--shards 4] [--repeats 3] [--label TEXT]
    python -m scripts.bench_engine --rate 1000 [--seconds 600] [--repeats 1]

Generates a seeded stream, parses it as the source does (processor/parse.py's ContractParser,
one Arrow batch per micro-batch of `--batch` records, each card's records on one of `--shards`
shards, in order), then times what the sink's "engine" step does with each batch: the feature
events built from its columns (`from_arrow`) and `FeatureEngine.process`, from empty state,
`--repeats` times. The state's changelog is saved after each batch and timed apart (the job
writes a big batch's in a forked child while the sinks run, a small one's in the batch); after
the last batch, the whole state is encoded and decoded as a snapshot is, and the dedupe index's
ids, array bytes and runs are counted. No Spark, no emulator: the figure a change to the feature
or state code moves, without the ±15% a whole 200k run spreads. Prints and saves
bench-results/engine.json: per-batch milliseconds of each run, the best and median µs per
event over the steady batches (all but the first), each batch's changelog milliseconds, the
snapshot's bytes and encode / decode milliseconds, the dedupe index's size, a digest of every
transaction's features (equal digests: the same features), and the load average before and
after.

With `--rate`, the stream is the latency runs' instead (scripts/bench_streams.py): `--rate`
events a second for `--seconds`, stamped with their send time, one batch a second. Its whole
event time falls within the run, so every entity's short windows fill as the run goes on: the
per-batch cost minute by minute says whether the engine's cost follows the state (ADR 0030).
Saved to bench-results/engine-at-rate.json, with each minute's median milliseconds a batch.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from config.cli import at_least, configure_logging, new_parser, run_cli
from ml_model.features import from_arrow
from processor.arrow_rows import rows_of
from processor.checkpoint_files import CheckpointFiles
from processor.engine import EngineSettings, FeatureEngine, StateStore
from processor.engine.state import decode_state, encode_state
from processor.heap import HeapKeeper
from processor.parse import ContractParser
from producer.generator import GeneratorOptions, TransactionGenerator
from producer.records import OutgoingRecord
from scripts.bench_results import RESULTS, save_results
from scripts.bench_streams import latency_records, restamped

KEY_ENV = "FRAUD_BENCH_TOKEN_KEY"
MINUTE, DAY = 60_000, 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the --rate stream's first stamp
# The job's defaults (config/default.yaml): watermark 10 minutes, idle shard 1 minute, dedupe
# 35 days.
SETTINGS = EngineSettings(
    watermark_delay_ms=10 * MINUTE, idle_shard_timeout_ms=MINUTE, dedupe_retention_ms=35 * DAY
)


def _tens(text: str) -> int:
    """--rate: a positive multiple of 10 (the stream is sent in ten ticks a second)."""
    rate = at_least(10)(text)
    if rate % 10:
        raise argparse.ArgumentTypeError(f"not a multiple of 10: {rate}")
    return rate


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("scripts.bench_engine", __doc__)
    parser.add_argument("--transactions", type=int, default=200_000, help="transactions generated")
    parser.add_argument("--customers", type=int, default=1_400, help="customers (sets the span)")
    parser.add_argument("--batch", type=int, default=40_000, help="records per micro-batch")
    parser.add_argument("--shards", type=int, default=4, help="shards the cards spread over")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs")
    parser.add_argument(
        "--rate", type=_tens, default=None, help="the latency runs' stream at this rate/s"
    )
    parser.add_argument(
        "--seconds", type=at_least(1), default=600, help="how long a stream --rate makes"
    )
    parser.add_argument("--label", default="", help="a note saved with the figures")
    return parser


def parsed_batches(transactions: int, customers: int, size: int, shards: int) -> list[pa.Table]:
    """The generated stream as the source hands it over: parsed, `size` records a batch."""
    generator = TransactionGenerator(
        GeneratorOptions(seed=5, num_transactions=transactions, num_customers=customers)
    )
    return _parsed(generator.records(), size, shards)


def batches_at_rate(rate: int, seconds: int, shards: int) -> list[pa.Table]:
    """The latency runs' stream (scripts/bench_streams.py), `rate` events a second (a multiple
    of 10) for `seconds`, each stamped with its send time (ten ticks a second, as the producer
    sends): one batch a second, what the job's 1-second trigger reads when it keeps up."""
    records = latency_records()
    per_tick = rate // 10

    def stamped() -> Iterator[OutgoingRecord]:
        for tick in range(seconds * 10):
            now_ms = T0 + tick * 100
            for _ in range(per_tick):
                yield restamped(next(records), now_ms)

    return _parsed(stamped(), per_tick * 10, shards)


def source_batches(
    records: Iterable[OutgoingRecord], size: int, shards: int
) -> list[pa.RecordBatch]:
    """`records` as the Kinesis source hands them to its record parser, `size` a batch, each
    card's on one of `shards` shards in order, arriving at their send time."""
    sequences = [0] * shards
    columns: dict[str, list[object]] = {
        name: [] for name in ("data", "shardId", "partitionKey", "sequenceNumber", "arrivalMs")
    }
    for record in records:
        shard = zlib.crc32(record.partition_key.encode()) % shards
        sequences[shard] += 1
        columns["data"].append(record.data)
        columns["shardId"].append(f"shardId-{shard:012d}")
        columns["partitionKey"].append(record.partition_key)
        columns["sequenceNumber"].append(f"{sequences[shard]:030d}")
        columns["arrivalMs"].append(record.send_time_ms)
    batches = []
    for start in range(0, len(columns["data"]), size):
        part = {name: values[start : start + size] for name, values in columns.items()}
        n = len(part["data"])
        batches.append(
            pa.RecordBatch.from_pydict(
                {
                    "data": pa.array(part["data"], pa.binary()),
                    "streamName": ["bench"] * n,
                    "shardId": part["shardId"],
                    "partitionKey": part["partitionKey"],
                    "sequenceNumber": part["sequenceNumber"],
                    "subSequenceNumber": [0] * n,
                    "approximateArrivalTimestamp": pa.array(
                        part["arrivalMs"], pa.timestamp("ms", "UTC")
                    ).cast(pa.timestamp("us", "UTC")),
                }
            )
        )
    return batches


def _parsed(records: Iterable[OutgoingRecord], size: int, shards: int) -> list[pa.Table]:
    """`records` parsed as the source hands them over (`source_batches`)."""
    os.environ.setdefault(KEY_ENV, "bench-only-tokenisation-key-0123456789")
    parse = ContractParser(KEY_ENV)
    return [
        pa.Table.from_batches([parse(source)]) for source in source_batches(records, size, shards)
    ]


@dataclass
class Run:
    """One run from empty state."""

    engine_ms: list[float]  # per batch
    changelog_ms: list[float]  # per batch: `commit`, which encodes and writes the changelog
    snapshot_bytes: int
    snapshot_encode_ms: float
    snapshot_decode_ms: float
    digest: str  # of every transaction's features
    ids: dict[str, int]  # the dedupe index at the end: ids held, their arrays' bytes, runs


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def run_once(batches: list[pa.Table]) -> Run:
    store = StateStore(CheckpointFiles(tempfile.mkdtemp()))
    store.background_snapshots = False  # timed below instead, once, on the whole state
    engine = FeatureEngine(store, SETTINGS)
    heap = HeapKeeper()
    digest = hashlib.sha256()
    engine_ms, changelog_ms = [], []
    for batch_id, table in enumerate(batches):
        rows = rows_of(table)  # the sink's collect step, untimed here
        with heap.during_batch():
            started = time.perf_counter()
            result = engine.process(rows, batch_id, (), from_arrow(table))
            engine_ms.append(_ms_since(started))
            started = time.perf_counter()
            engine.commit()
            changelog_ms.append(_ms_since(started))
        for row, values in zip(result.transactions, result.features.tolist(), strict=True):
            digest.update(repr((row["transaction_id"], values)).encode())
    with heap.during_batch():
        started = time.perf_counter()
        snapshot = encode_state(engine.state)
        encode_ms = _ms_since(started)
        started = time.perf_counter()
        decode_state(snapshot, "snapshot")
        decode_ms = _ms_since(started)
    assert engine.state is not None
    index = engine.state.seen
    ids = {"count": len(index), "bytes": index.nbytes, "runs": index.runs()}
    return Run(
        engine_ms, changelog_ms, len(snapshot), encode_ms, decode_ms, digest.hexdigest()[:16], ids
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    if args.rate:
        batches = batches_at_rate(args.rate, args.seconds, args.shards)
    else:
        batches = parsed_batches(args.transactions, args.customers, args.batch, args.shards)
    load_before = os.getloadavg()
    runs = [run_once(batches) for _ in range(args.repeats)]
    digests = {run.digest for run in runs}
    steady_events = sum(table.num_rows for table in batches[1:])
    steady = [sum(run.engine_ms[1:]) * 1000 / max(steady_events, 1) for run in runs]
    results = {
        "label": args.label,
        "records": sum(table.num_rows for table in batches),
        "batches": len(batches),
        "ms_per_batch": [[round(ms) for ms in run.engine_ms] for run in runs],
        "steady_best_us_per_event": round(min(steady), 1),
        "steady_median_us_per_event": round(statistics.median(steady), 1),
        "changelog_ms_per_batch": [[round(ms) for ms in run.changelog_ms] for run in runs],
        "snapshot": {
            "bytes": runs[0].snapshot_bytes,
            "encode_ms": [round(run.snapshot_encode_ms) for run in runs],
            "decode_ms": [round(run.snapshot_decode_ms) for run in runs],
        },
        "features_digest": digests.pop() if len(digests) == 1 else sorted(digests),
        "dedupe_index": runs[0].ids,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    if args.rate:
        results["rate_per_s"] = args.rate
        # Each minute's median: a slope here is a cost that follows the state.
        results["median_ms_per_batch_by_minute"] = [
            [
                round(statistics.median(run.engine_ms[i : i + 60]))
                for i in range(0, len(batches), 60)
            ]
            for run in runs
        ]
    save_results(results, RESULTS / ("engine-at-rate.json" if args.rate else "engine.json"))
    return 0


def cli() -> int:
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
