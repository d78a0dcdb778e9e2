"""The lake's daily maintenance: closed days compacted into big files, then an optional VACUUM.

    python -m processor.lake_maintenance [--profile P] [--lake-path PATH] [--before DATE]
                                         [--target-mib 256] [--lease-wait 600] [--vacuum]

The job compacts each table every 200 versions into files of up to 8 MiB (ADR 0028): enough to
keep a commit's cost flat through a day, not to keep a day's files few (thousands at 1,000
events/s, and every file is read on each commit). Run this once a day after midnight UTC, while
the job runs: each table's partitions before `--before` (default: today, UTC; `event_date`,
or `arrival_date` for dead letters) are compacted into files of up to `--target-mib`, in an
OPTIMIZE commit that changes no data and commits beside the job's appends. Each table is
compacted while this command holds its compaction lease (processor/compaction_lease.py), which
the job's own compaction takes too: two compactions of the same files would both commit and
duplicate their rows. A table whose lease stays held for `--lease-wait` seconds is skipped (its
line says by whom); the next day's run compacts it with the others. `--vacuum` then
deletes the files that commits removed longer ago than the table's retention
(`delta.deletedFileRetentionDuration`, 7 days by default), which readers of older versions may
still need until then. Prints one JSON line per table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import time
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
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
from processor.compaction_lease import compaction_lease
from processor.lake_commit import compact_closed_days, open_table
from processor.lake_tables import TABLES, partition_column

if TYPE_CHECKING:
    from config.settings import AwsSettings

logger = logging.getLogger(__name__)

DEFAULT_TARGET_MIB = 256
DEFAULT_LEASE_WAIT_SECONDS = 600
# The lease outlives any one table's compaction by far (a 1.2 GiB day took 11 s, ADR 0028); a
# run that dies keeps the job from compacting that table this long at most.
LEASE_SECONDS = 3600
LEASE_POLL_SECONDS = 5.0


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
        "--lease-wait",
        type=at_least(0),
        default=DEFAULT_LEASE_WAIT_SECONDS,
        help="seconds to wait for a table's compaction lease while the job compacts it",
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
            report = _maintain(uri, partition, before, args, settings.aws)
        except (DeltaError, BotoCoreError, ClientError) as error:
            raise FraudPipelineError(f"{uri}: {error}") from error
        print(json.dumps({"table": name, "uri": uri, "before": before.isoformat(), **report}))
    return 0


def _maintain(
    uri: str, partition: str, before: date, args: argparse.Namespace, aws: AwsSettings
) -> dict[str, object]:
    options = commit_options_for(uri, aws)
    table = open_table(uri, options)
    if table is None:
        return {"skipped": "no table yet"}
    compacted = _compact_under_lease(uri, partition, before, args, aws)
    report: dict[str, object]
    if isinstance(compacted, str):
        logger.warning("%s: not compacted, %s held its compaction lease for %d s", uri,
                       compacted, args.lease_wait)  # fmt: skip
        report = {"skipped": f"compaction lease held by {compacted}"}
    else:
        report = {
            "files_removed": compacted["numFilesRemoved"],
            "files_added": compacted["numFilesAdded"],
        }
    if args.vacuum:
        table.update_incremental()
        report["files_vacuumed"] = len(table.vacuum(dry_run=False))
    return report


def _compact_under_lease(
    uri: str, partition: str, before: date, args: argparse.Namespace, aws: AwsSettings
) -> dict[str, Any] | str:
    """The compaction's metrics, or who held the table's lease for all of `--lease-wait`."""
    holder = f"processor.lake_maintenance {socket.gethostname()} pid {os.getpid()}"
    options = commit_options_for(uri, aws)
    target = args.target_mib << 20
    deadline = time.monotonic() + args.lease_wait
    while True:
        with compaction_lease(uri, holder, aws, LEASE_SECONDS) as lease:
            if lease.taken:
                # Opens the table again: the compaction must read the version that is current
                # once the lease is held, not the one `_maintain` read before it.
                return compact_closed_days(uri, partition, before, target, options) or {}
        left = deadline - time.monotonic()
        if left <= 0:
            return lease.holder or "another holder"
        time.sleep(min(LEASE_POLL_SECONDS, left))


def cli() -> int:
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
