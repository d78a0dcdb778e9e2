"""Kill loop: the job SIGKILLed again and again at random moments, then drained; counts what broke.

    python -m scripts.soak [--kills 10] [--events 8000] [--model PATH]

Starts its own moto server, loads a stream produced far faster than real time (4 shards,
anomalies and duplicates included), then runs `python -m processor.job` in small micro-batches
and SIGKILLs it `--kills` times, each after a random 3-25 s, restarting it on the same
checkpoint. Halfway, the emulator itself is stopped and restarted under the running job (its
streams, tables and buckets persist: `scripts.local_aws start --persist`). Finally the rest is
drained with `--available-now`. Prints and saves to bench-results/soak.json: transactions lost,
duplicated, unscored, both in the lake and in dead letters, flagged late, and alert items that
differ from the lake's ALERT rows. All zero is a pass: the stream is produced far faster than
real time, and still no valid event may be late.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from config.aws import make_client
from config.settings import Settings, load_config
from ml_model.train import main as train_main
from processor.alerts import scan_alerts
from processor.sinks import table_path
from processor.spark_session import build_spark
from producer.contract import parse_payload
from producer.generator import GeneratorOptions, TransactionGenerator
from producer.kinesis_writer import KinesisWriter
from producer.stats import SendStats
from scripts.bench_results import RESULTS, save_results
from scripts.bench_scoring import SMALL_MODEL
from scripts.local_aws import LocalAws, free_port, start, stop
from scripts.setup_aws import ensure_alerts_table, ensure_stream

ROOT = Path(__file__).resolve().parent.parent


def _load(settings: Settings, events: int, failed: Path) -> set[str]:
    """Put the stream on Kinesis; returns the ids of the valid transactions sent."""
    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, settings.kinesis.shard_count)
    options = GeneratorOptions(
        seed=99, num_transactions=events, fraud_rate=0.03, anomaly_rate=0.02, num_customers=800
    )
    generator = TransactionGenerator(options)
    records = list(generator.records())
    writer = KinesisWriter(client, settings.kinesis.stream_name, SendStats(), failed)
    writer.put(records)
    writer.flush()
    expected = set()
    for record in records:
        event, problem = parse_payload(record.data)
        if problem is None and event is not None and record.anomaly in (None, "duplicate"):
            if event["event_type"] == "transaction":
                expected.add(event["transaction_id"])
    return expected


def _job(settings: Settings, log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "FRAUD_ENDPOINT_URL": str(settings.aws.endpoint_url),
        "FRAUD_STREAM_NAME": settings.kinesis.stream_name,
        "FRAUD_LAKE_PATH": settings.processor.lake_path,
        "FRAUD_CHECKPOINT_LOCATION": settings.processor.checkpoint_location,
        "FRAUD_ALERTS_TABLE": settings.dynamodb.alerts_table,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "processor.job", "--metrics-port", "0",
         "--model-path", settings.model.path, *args],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def _transaction_id(payload: bytes) -> str | None:
    """The transaction id a dead letter's (masked) payload names, if it is a JSON object.

    The generator's broken records replace their event rather than copy it, so a valid
    transaction's id in a dead letter means one record ended up in two tables.
    """
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return value.get("transaction_id") if isinstance(value, dict) else None


def _counts(settings: Settings, expected: set[str]) -> dict[str, Any]:
    spark = build_spark(settings, app_name="soak-check", master="local[2]",
                        extra={"spark.driver.host": "127.0.0.1"})  # fmt: skip
    lake = settings.processor.lake_path
    rows = spark.read.format("delta").load(table_path(lake, "transactions")).collect()
    dead_path = table_path(lake, "dead_letters")
    dead = spark.read.format("delta").load(dead_path).collect() if Path(dead_path).exists() else []
    spark.stop()
    ids = [r.transaction_id for r in rows]
    dead_ids = {_transaction_id(r.raw_payload) for r in dead}
    alerted = sorted(r.transaction_id for r in rows if r.decision == "ALERT")
    items = sorted(i["transaction_id"]["S"] for i in scan_alerts(settings))
    return {
        "expected": len(expected),
        "lost": len(expected - set(ids)),
        "duplicated": len(ids) - len(set(ids)),
        "unscored": sum(r.fraud_score is None for r in rows),
        "in_two_tables": len(set(ids) & dead_ids),
        "late_flagged": sum(bool(r.late) for r in rows),
        "alerts": len(items),
        "alerts_not_matching_lake": len(set(items) ^ set(alerted)),
        "dead_letters": len(dead),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.soak", description=__doc__)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--events", type=int, default=8_000, help="transactions to load")
    parser.add_argument("--seed", type=int, default=1, help="of the kill moments")
    parser.add_argument("--model", default=None, help="trained model folder (default: train)")
    args = parser.parse_args(argv)
    os.environ.setdefault("CARD_TOKEN_KEY", "soak-only-tokenisation-key")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        model = args.model or str(root / "model")
        if args.model is None:
            train_main([*SMALL_MODEL, "--output", model], load_config("local"))
        emulator = LocalAws("127.0.0.1", free_port(), root / "moto")
        start(emulator, persist=True)
        try:
            settings = load_config("local").with_overrides(
                aws={"endpoint_url": emulator.endpoint_url},
                kinesis={"stream_name": "soak", "shard_count": 4},
                dynamodb={"alerts_table": "soak-alerts"},
                processor={"lake_path": str(root / "lake"),
                           "checkpoint_location": str(root / "checkpoint")},
                model={"path": model},
            )  # fmt: skip
            ensure_alerts_table(make_client("dynamodb", settings.aws), "soak-alerts")
            expected = _load(settings, args.events, root / "failed_records.jsonl")
            log = root / "job.log"
            small = ("--trigger-interval", "1 second", "--max-records-per-shard", "200")
            began = time.perf_counter()
            restarts = 0
            for kill in range(args.kills):
                job = _job(settings, log, *small)
                time.sleep(rng.uniform(3, 25))
                if kill == args.kills // 2:
                    # The emulator goes away under the running job and comes back.
                    stop(emulator)
                    time.sleep(rng.uniform(1, 5))
                    start(emulator, persist=True)
                    restarts += 1
                    print("emulator restarted", flush=True)
                    time.sleep(rng.uniform(3, 10))
                job.send_signal(signal.SIGKILL)
                job.wait(30)
                print(f"kill {kill + 1}/{args.kills}", flush=True)
            finish = _job(settings, log, "--available-now")
            if finish.wait(900) != 0:
                print(log.read_text()[-3000:], file=sys.stderr)
                return 1
            results = {
                "kills": args.kills,
                "emulator_restarts": restarts,
                "seconds": round(time.perf_counter() - began, 1),
                **_counts(settings, expected),
                "load_average": os.getloadavg(),
            }
        finally:
            stop(emulator)
    save_results(results, RESULTS / "soak.json")
    broken = (
        "lost",
        "duplicated",
        "unscored",
        "in_two_tables",
        "late_flagged",
        "alerts_not_matching_lake",
    )
    return 0 if not any(results[name] for name in broken) else 1


if __name__ == "__main__":
    raise SystemExit(main())
