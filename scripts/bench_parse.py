"""The parse step alone: microseconds per record, the figure a change to the contract's checks,
the JSON decoding or the tokenisation moves.

    python -m scripts.bench_parse [--transactions 40000] [--customers 1400] [--batch 5000]
                                  [--repeats 5] [--label TEXT]

Generates a seeded stream and times processor/parse.py's `ContractParser` (what the Kinesis
source runs on every record it reads, ADR 0023) over it in Arrow batches of `--batch` source
records (as scripts/bench_engine.py builds them: four shards, each card's on one, arriving at
their send time), `--repeats` times. Prints and saves bench-results/parse.json: the best and
median µs per record, a digest of the parsed columns (equal digests: the same rows) and the
load average before and after. In the job this runs in the source's process, on the same two
cores as the rest of a batch.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time

from config.cli import at_least, configure_logging, new_parser, run_cli
from processor.parse import ContractParser
from producer.generator import GeneratorOptions, TransactionGenerator
from scripts.bench_engine import KEY_ENV, source_batches
from scripts.bench_results import RESULTS, save_results

SHARDS = 4  # the default stream's


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("scripts.bench_parse", __doc__)
    parser.add_argument(
        "--transactions", type=at_least(1), default=40_000, help="transactions generated"
    )
    parser.add_argument(
        "--customers", type=at_least(1), default=1_400, help="customers (sets the span)"
    )
    parser.add_argument("--batch", type=at_least(1), default=5_000, help="records per batch")
    parser.add_argument("--repeats", type=at_least(1), default=5, help="timed runs")
    parser.add_argument("--label", default="", help="a note saved with the figures")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    os.environ.setdefault(KEY_ENV, "bench-only-tokenisation-key-0123456789")
    generator = TransactionGenerator(
        GeneratorOptions(seed=9, num_transactions=args.transactions, num_customers=args.customers)
    )
    records = [record for record in generator.records() if record.event_type is not None]
    batches = source_batches(records, args.batch, SHARDS)
    parse = ContractParser(KEY_ENV)
    load_before = os.getloadavg()
    runs, parsed = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        parsed = [parse(batch) for batch in batches]
        runs.append(time.perf_counter() - started)
    digest = hashlib.blake2b(digest_size=8)
    for batch in parsed:
        for column in batch.columns:
            digest.update(repr(column.to_pylist()).encode())
    dead = sum(batch.column("dead_letter_reason").null_count != batch.num_rows for batch in parsed)
    results = {
        "label": args.label,
        "records": len(records),
        "batch_records": args.batch,
        "batches_with_dead_letters": dead,
        "best_us_per_record": round(min(runs) / len(records) * 1e6, 2),
        "median_us_per_record": round(statistics.median(runs) / len(records) * 1e6, 2),
        "runs_s": [round(run, 3) for run in runs],
        "rows_digest": digest.hexdigest(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    save_results(results, RESULTS / "parse.json")
    return 0


def cli() -> int:
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
