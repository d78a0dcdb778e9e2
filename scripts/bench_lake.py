"""A lake commit's cost as the table grows, with and without the sink's compaction (ADR 0028).

    python -m scripts.bench_lake [--commits 1200] [--rows 1000] [--interval 200]
                                 [--target-bytes N] [--label NOTE]

Appends `--commits` batches of `--rows` scored transactions (random feature values, one event
date per batch, a new date every `--commits-per-day`) to a fresh local table with the job's
`commit_batch`, once never compacting and once compacting as the sink does
(`compaction_due` / `compact_table`; `--interval` and `--target-bytes` try other settings).
Prints and saves to bench-results/lake.json each run's commit milliseconds by tenth of the
run, mean / p50 / p99 / max, the compactions' cost, and the table's files and bytes at the
end, with the load average it ran at.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from deltalake import DeltaTable

from config.cli import at_least, configure_logging, new_parser, run_cli
from ml_model.features import FEATURE_NAMES
from processor.lake_commit import (
    COMPACT_INTERVAL,
    COMPACT_TARGET_BYTES,
    commit_batch,
    compact_table,
    compaction_due,
)
from processor.lake_tables import SCORED_TRANSACTION_TABLE, event_table
from scripts.bench_results import RESULTS, save_results

WRITER = "bench-lake-transactions"
START = datetime(2026, 3, 1, tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("scripts.bench_lake", __doc__)
    parser.add_argument(
        "--commits", type=at_least(1), default=1_200, help="batches appended per run"
    )
    parser.add_argument("--rows", type=at_least(1), default=1_000, help="transactions per batch")
    parser.add_argument(
        "--commits-per-day",
        type=at_least(1),
        default=400,
        help="batches per event date (partition)",
    )
    parser.add_argument(
        "--interval",
        type=at_least(1),
        default=COMPACT_INTERVAL,
        help="versions between compactions",
    )
    parser.add_argument(
        "--target-bytes",
        type=int,
        default=0,
        help="the compacted table's delta.targetFileSize (0: the sink's default)",
    )
    parser.add_argument("--label", default="", help="a note saved with the figures")
    return parser


def batch_table(batch_id: int, rows: int, day: date, rng: np.random.Generator) -> pa.Table:
    """`rows` scored transactions of one event date, every feature a fresh random value."""
    features = rng.random((rows, len(FEATURE_NAMES)))
    moment = datetime.combine(day, START.timetz()) + timedelta(seconds=batch_id % 86_400)
    out = []
    for i in range(rows):
        row: dict[str, Any] = dict.fromkeys(SCORED_TRANSACTION_TABLE.names)
        row.update(zip(FEATURE_NAMES, features[i].tolist(), strict=True))
        row.update(
            event_type="transaction",
            event_id=f"e-{batch_id}-{i}",
            schema_version=1,
            transaction_id=f"tx-{batch_id}-{i}",
            amount=float(features[i, 0] * 500),
            event_time=moment,
            approximateArrivalTimestamp=moment,
            subSequenceNumber=0,
            late=False,
            lateness_ms=0,
            fraud_score=float(features[i, 1]),
            model_version="bench",
            decision="OK",
            reason_codes=[],
        )
        out.append(row)
    return event_table(out, SCORED_TRANSACTION_TABLE)


def _ms(seconds: list[float]) -> list[float]:
    return [s * 1000 for s in seconds]


def run(args: argparse.Namespace, compact: bool) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    commits: list[float] = []
    compactions: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-lake-") as folder:
        uri = str(Path(folder) / "transactions")
        for batch_id in range(args.commits):
            day = START.date() + timedelta(days=batch_id // args.commits_per_day)
            data = batch_table(batch_id, args.rows, day, rng)
            started = time.perf_counter()
            version = commit_batch(uri, data, "event_date", WRITER, batch_id)
            commits.append(time.perf_counter() - started)
            if compact and version == 0 and args.target_bytes:
                target = {"delta.targetFileSize": str(args.target_bytes)}
                DeltaTable(uri).alter.set_table_properties(target)
            if compact and compaction_due(version, args.interval):
                started = time.perf_counter()
                compact_table(uri)
                compactions.append(time.perf_counter() - started)
        table = DeltaTable(uri)
        sizes = table.get_add_actions(flatten=True).column("size_bytes").to_pylist()
        rows = table.to_pyarrow_table(columns=["transaction_id"]).num_rows
    assert rows == args.commits * args.rows, "rows lost or duplicated"
    ms = _ms(commits)
    tenth = max(1, len(ms) // 10)
    ordered = sorted(ms)
    result: dict[str, Any] = {
        "commit_ms_median_by_tenth": [
            round(statistics.median(ms[i : i + tenth]), 1) for i in range(0, len(ms), tenth)
        ],
        "commit_ms": {
            "mean": round(statistics.mean(ms), 1),
            "p50": round(statistics.median(ms), 1),
            "p99": round(ordered[int(0.99 * (len(ordered) - 1))], 1),
            "max": round(ordered[-1], 1),
        },
        "files_at_end": len(sizes),
        "mb_at_end": round(sum(sizes) / 1e6, 1),
        "total_s": round(sum(commits) + sum(compactions), 1),
    }
    if compact:
        done = _ms(compactions)
        result["compactions"] = {
            "count": len(done),
            "median_ms": round(statistics.median(done), 1) if done else None,
            "max_ms": round(max(done), 1) if done else None,
        }
        result["mean_ms_per_commit_with_compactions"] = round(
            (sum(commits) + sum(compactions)) * 1000 / len(commits), 1
        )
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    load_before = os.getloadavg()
    results = {
        "label": args.label,
        "commits": args.commits,
        "rows_per_commit": args.rows,
        "commits_per_day": args.commits_per_day,
        "compact_interval": args.interval,
        "compact_target_bytes": args.target_bytes or COMPACT_TARGET_BYTES,
        "never_compacted": run(args, compact=False),
        "compacted": run(args, compact=True),
        "load_average_before": load_before,
        "load_average": os.getloadavg(),
    }
    save_results(results, RESULTS / "lake.json")
    return 0


def cli() -> int:
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
