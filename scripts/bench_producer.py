"""Producer benchmark: generation alone (one core) and sending to the local emulator.

    python -m scripts.bench_producer [--events 200000] [--send-events 50000]

Prints the figures and saves them to bench-results/producer.json.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from config.aws import make_client
from config.settings import load_config
from producer.generator import GeneratorOptions, TransactionGenerator
from producer.kinesis_writer import KinesisWriter
from producer.stats import SendStats
from scripts.bench_results import RESULTS, save_results
from scripts.local_aws import LocalAws, free_port, start, stop
from scripts.setup_aws import ensure_stream


def bench_generation(events: int, network: str) -> float:
    generator = TransactionGenerator(
        GeneratorOptions(seed=1, num_transactions=events, fraud_rate=0.005, network=network)
    )
    began = time.perf_counter()
    produced = sum(1 for _ in generator.records())
    return produced / (time.perf_counter() - began)


def bench_send(events: int, shards: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as state:
        emulator = LocalAws("127.0.0.1", free_port(), Path(state))
        start(emulator)
        try:
            settings = load_config("local").with_overrides(
                aws={"endpoint_url": emulator.endpoint_url}
            )
            client = make_client("kinesis", settings.aws)
            ensure_stream(client, "bench-producer", shards)
            records = list(
                TransactionGenerator(GeneratorOptions(seed=2, num_transactions=events)).records()
            )
            stats = SendStats()
            writer = KinesisWriter(client, "bench-producer", stats, Path(state) / "failed.jsonl")
            began = time.perf_counter()
            writer.put(records)
            writer.flush()
            elapsed = time.perf_counter() - began
        finally:
            stop(emulator)
    return {"records": stats.sent, "failed": stats.failed, "events_per_s": stats.sent / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--send-events", type=int, default=50_000)
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args(argv)
    send = bench_send(args.send_events, args.shards)
    send["events_per_s"] = round(send["events_per_s"])
    results = {
        "machine": f"{platform.machine()} {platform.python_version()}",
        "generation_events_per_s": {
            net: round(bench_generation(args.events, net)) for net in ("excellent", "terrible")
        },
        "send_to_local_emulator": send,
    }
    save_results(results, RESULTS / "producer.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
