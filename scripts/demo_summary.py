"""Summary printed at the end of `make demo`: the lake, the alerts, and how good they were.

    python -m scripts.demo_summary [--profile local] [--report-dir reports/my-run]

Precision and recall compare the alerts in DynamoDB with the ground-truth labels that travelled
beside the events (never read by a feature). Latency is measured from the record's arrival in
Kinesis to the alert being written: the demo's event times are simulated (hours of card traffic
sent in seconds), so event time -> alert would measure the simulation, not the pipeline.

With --report-dir it also writes the run report there (index.html, see ml_model/report), read
without Spark from the lake, the alerts table and the job's batch records.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any

import numpy as np

from config.settings import load_config
from ml_model.drift import PSI_ALERT, SCORE
from ml_model.report import write_report
from ml_model.report.run_data import run_report_data
from processor.alerts import scan_alerts
from processor.batch_progress import BatchProgress, read_progress
from processor.checkpoint_files import CheckpointFiles
from processor.sinks import TABLES, table_path
from processor.spark_session import build_spark


def alert_quality(transactions: Any, alert_ids: set[str]) -> list[str]:
    rows = transactions.select("transaction_id", "label_is_fraud", "label_fraud_scenario").collect()
    fraud = {r.transaction_id: r.label_fraud_scenario for r in rows if r.label_is_fraud}
    hits = alert_ids & fraud.keys()
    lines = [
        f"  alerts in DynamoDB  {len(alert_ids):>6}   table {len(rows):,} transactions, "
        f"{len(fraud)} labelled fraud",
        f"  precision {len(hits) / len(alert_ids) if alert_ids else 0:.3f}   "
        f"recall {len(hits) / len(fraud) if fraud else 0:.3f}",
    ]
    scenarios = sorted(set(fraud.values()), key=str)
    for scenario in scenarios:
        ids = {tx for tx, s in fraud.items() if s == scenario}
        lines.append(
            f"      recall {scenario!s:<22} {len(ids & alert_ids) / len(ids):.3f}  ({len(ids)})"
        )
    return lines


def drift_lines(progress: list[BatchProgress], threshold: float = PSI_ALERT) -> list[str]:
    """The drift monitor's verdict after the last batch that measured it, and why a cold job
    shows it: the job's WARNING alone reads like a fault on a first run."""
    measured = [batch.psi for batch in progress if batch.psi]
    if not measured:
        return []
    psi = measured[-1]
    features = {name: value for name, value in psi.items() if name != SCORE}
    above = sorted((name for name, value in features.items() if value > threshold),
                   key=lambda name: -features[name])  # fmt: skip
    score = f", {SCORE} {psi[SCORE]:.2f}" if SCORE in psi else ""
    lines = [
        f"  drift: {len(above)} of {len(features)} features above PSI {threshold} against the "
        f"training reference after the last batch{score}"
        + (f" (most: {', '.join(above[:3])})" if above else "")
    ]
    if above:
        lines += [
            "    (expected here: the demo's job starts without feature history, so its windows",
            "     of 7 and 30 days and each card's previous transaction start empty;",
            "     `--bootstrap-from` starts a job warm)",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo_summary", description=__doc__)
    parser.add_argument(
        "--profile", default=None, help="config profile (default: $FRAUD_PROFILE, else local)"
    )
    parser.add_argument(
        "--report-dir", default=None, help="also write the run report (index.html) to this folder"
    )
    parser.add_argument(
        "--run-id", default=None, help="the run's name in the report (default: the time now)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = load_config(args.profile)
    spark = build_spark(settings, app_name="demo-summary")
    spark.sparkContext.setLogLevel("ERROR")
    lake = settings.processor.lake_path
    print(f"\nDelta lake: {os.path.abspath(lake) if '://' not in lake else lake}")
    transactions = None
    for table in TABLES:
        path = table_path(lake, table)
        try:
            frame = spark.read.format("delta").load(path)
        except Exception:  # noqa: BLE001 - a table the run never wrote
            print(f"  {table:<13} (empty)")
            continue
        print(f"  {table:<13} {frame.count():>7} rows   {path}")
        if table == "transactions":
            transactions = frame
            for row in frame.groupBy("decision").count().orderBy("decision").collect():
                print(f"      decision {row['decision']!s:<10} {row['count']:>6}")
        if table == "dead_letters":
            for row in frame.groupBy("reason").count().orderBy("reason").collect():
                print(f"      {row['reason']:<24} {row['count']:>5}")
    items = scan_alerts(settings)
    print(f"\nAlerts: DynamoDB table {settings.dynamodb.alerts_table}")
    if transactions is not None:
        ids = {item["transaction_id"]["S"] for item in items}
        for line in alert_quality(transactions, ids):
            print(line)
    latencies = [int(i["arrival_to_alert_ms"]["N"]) for i in items if "arrival_to_alert_ms" in i]
    if latencies:
        p50, p95 = np.percentile(latencies, [50, 95])
        print(f"  latency, Kinesis arrival -> alert written: p50 {p50:.0f} ms, p95 {p95:.0f} ms")
        print("    (the demo starts the processor after the producer: this is mostly Spark's")
        print("     start-up; `make bench` measures latency with the job already running)")
    for line in drift_lines(read_progress(CheckpointFiles.of(settings))):
        print(line)
    if items:
        example = max(items, key=lambda i: float(i["fraud_score"]["N"]))
        reasons = [r["S"] for r in example["reason_codes"]["L"]]
        print(
            f"  top alert: {example['transaction_id']['S']} card ****{example['card_last4']['S']}"
            f" score {float(example['fraud_score']['N']):.3f} reasons {reasons}"
        )
    spark.stop()
    if args.report_dir:
        run_id = args.run_id or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        report = write_report(args.report_dir, run_report_data(settings, run_id))
        print(f"\nRun report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
