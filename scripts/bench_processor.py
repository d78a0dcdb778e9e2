"""Processor benchmark: a pre-loaded stream read, parsed, deduplicated, featured, written to Delta.

    python -m scripts.bench_processor [--events 200000] [--shards 4]

Starts its own moto server, pre-loads the stream, then runs the job with an availableNow
trigger on local[2] once per source read mode (`handoff`: the driver's probe hands its records
to the executors; `reread`: executors read the range again). Prints and saves sustained
events/s and read amplification (records fetched from Kinesis / records delivered) to
bench-results/processor.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from config.aws import make_client
from config.settings import load_config
from processor.job import ingest, lake_writer, write
from processor.spark_session import build_spark
from producer.generator import GeneratorOptions, TransactionGenerator
from producer.kinesis_writer import KinesisWriter
from producer.stats import SendStats
from scripts.bench_results import RESULTS, save_results
from scripts.local_aws import LocalAws, free_port, start, stop
from scripts.setup_aws import ensure_stream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000, help="transactions to pre-load")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--modes", default="handoff,reread")
    parser.add_argument("--customers", type=int, default=200_000)
    args = parser.parse_args(argv)
    os.environ.setdefault("CARD_TOKEN_KEY", "benchmark-only-tokenisation-key")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    results: dict[str, object] = {"events_requested": args.events, "shards": args.shards}
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        emulator = LocalAws("127.0.0.1", free_port(), root / "moto")
        start(emulator)
        try:
            settings = load_config("local").with_overrides(
                aws={"endpoint_url": emulator.endpoint_url},
                kinesis={"stream_name": "bench-processor", "shard_count": args.shards},
                processor={"shuffle_partitions": 4, "watermark": "1 day", "metrics_port": 0},
            )
            client = make_client("kinesis", settings.aws)
            ensure_stream(client, "bench-processor", args.shards)
            began = time.perf_counter()
            # Many customers: dense event time, like a real stream's.
            generator = TransactionGenerator(
                GeneratorOptions(seed=9, num_transactions=args.events, num_customers=args.customers)
            )
            writer = KinesisWriter(client, "bench-processor", SendStats(), root / "failed.jsonl")
            writer.put(generator.records())
            writer.flush()
            loaded = writer.stats.sent
            results["records_loaded"] = loaded
            results["load_seconds"] = round(time.perf_counter() - began, 1)
            print(f"pre-loaded {loaded} records in {results['load_seconds']}s", flush=True)

            spark = build_spark(
                settings,
                app_name="bench-processor",
                master="local[2]",
                extra={"spark.driver.host": "127.0.0.1"},
            )
            spark.sparkContext.setLogLevel("ERROR")
            for mode in args.modes.split(","):
                name = mode
                fetch_log = root / f"fetch-{mode}.jsonl"
                run = settings.with_overrides(
                    processor={
                        "lake_path": str(root / mode / "lake"),
                        "checkpoint_location": str(root / mode / "checkpoint"),
                    }
                )
                extra = {"readMode": mode, "fetchLogPath": str(fetch_log)}
                lake = lake_writer(run)
                began = time.perf_counter()
                query = write(ingest(spark, run, extra), run, lake, True)
                query.awaitTermination()
                elapsed = time.perf_counter() - began
                assert query.exception() is None, query.exception()
                for progress in query.recentProgress:
                    print("  batch", progress["batchId"], progress["durationMs"], flush=True)
                delivered = sum(lake.stats.totals.values())
                fetched = sum(
                    json.loads(line)["fetched"] for line in fetch_log.read_text().splitlines()
                )
                results[name] = {
                    "records_delivered": delivered,
                    "records_fetched": fetched,
                    "read_amplification": round(fetched / max(delivered, 1), 3),
                    "seconds": round(elapsed, 1),
                    "events_per_s": round(delivered / elapsed),
                    "tables": lake.stats.totals,
                }
                print(name, json.dumps(results[name]), flush=True)
            spark.stop()
        finally:
            stop(emulator)
    save_results(results, RESULTS / "processor.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
