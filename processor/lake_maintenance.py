"""The lake's daily maintenance: closed days compacted into big files, then an optional VACUUM.

    python -m processor.lake_maintenance [--profile P] [--lake-path PATH] [--before DATE]
                                         [--target-mib 256] [--vacuum]

The job compacts each table every 200 versions into files of up to 8 MiB (ADR 0028): enough to
keep a commit's cost flat through a day, not to keep a day's files few (thousands at 1,000
events/s, and every file is read on each commit). Run this once a day after midnight UTC, while
the job runs: each table's partitions before `--before` (default: today, UTC; `event_date`,
or `arrival_date` for dead letters) are compacted into files of up to `--target-mib`, in an
OPTIMIZE commit that changes no data and commits beside the job's appends. `--vacuum` then
deletes the files that commits removed longer ago than the table's retention
(`delta.deletedFileRetentionDuration`, 7 days by default), which readers of older versions may
still need until then. Prints one JSON line per table.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import UTC, date, datetime

from deltalake.exceptions import DeltaError

from config.cli import (
    at_least,
    configure_logging,
    load_settings,
    new_parser,
    probe_endpoint,
    run_cli,
    utc_day,
)
from config.exceptions import FraudPipelineError
from config.lake import commit_options_for, delta_uri
from processor.lake_commit import compact_closed_days, open_table
from processor.lake_tables import TABLES, partition_column

logger = logging.getLogger(__name__)

DEFAULT_TARGET_MIB = 256


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("processor.lake_maintenance", __doc__)
    parser.add_argument("--lake-path", help="the lake (default: the profile's processor.lake_path)")
    parser.add_argument(
        "--before",
        type=utc_day,
        help="compact the partitions before this date, YYYY-MM-DD (default: today, UTC)",
    )
    parser.add_argument(
        "--target-mib",
        type=at_least(1),
        default=DEFAULT_TARGET_MIB,
        help="size of the compacted files, MiB",
    )
    parser.add_argument(
        "--vacuum",
        action="store_true",
        help="then delete files removed longer ago than each table's retention",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    settings = load_settings(args.profile)
    lake = args.lake_path or settings.processor.lake_path
    before = args.before or datetime.now(UTC).date()
    uris = {name: delta_uri(lake, name) for name in TABLES}
    if any(uri.startswith("s3://") for uri in uris.values()):
        probe_endpoint(settings.aws)  # a closed emulator fails now, not after delta-rs's retries
    for name, uri in uris.items():
        partition = partition_column(name)
        try:
            report = _maintain(uri, partition, before, args, commit_options_for(uri, settings.aws))
        except DeltaError as error:
            raise FraudPipelineError(f"{uri}: {error}") from error
        print(json.dumps({"table": name, "uri": uri, "before": before.isoformat(), **report}))
    return 0


def _maintain(
    uri: str, partition: str, before: date, args: argparse.Namespace, options: dict[str, str] | None
) -> dict[str, object]:
    metrics = compact_closed_days(uri, partition, before, args.target_mib << 20, options)
    if metrics is None:
        return {"skipped": "no table yet"}
    report: dict[str, object] = {
        "files_removed": metrics["numFilesRemoved"],
        "files_added": metrics["numFilesAdded"],
    }
    if args.vacuum:
        table = open_table(uri, options)
        assert table is not None  # it was compacted a moment ago
        report["files_vacuumed"] = len(table.vacuum(dry_run=False))
    return report


def cli() -> int:
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
