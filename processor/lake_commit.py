"""One batch's Arrow table -> one Delta commit with delta-rs, at most once per writer and batch.

Exactly-once the way Spark's `txnAppId`/`txnVersion` options do it, and with the same log
entries: each commit carries the Delta protocol's SetTransaction action (`txn`: the writer id,
the batch id as its version). Before writing, the table's latest version for the writer id is
read; a batch at or below it was committed already (a replay after a crash between the lake
commit and the state save) and is skipped. The write commits against the snapshot that check
read, so a commit of the same writer id landing in between fails this one (delta-rs's
`ConcurrentTransaction` conflict) instead of appending the batch twice. A table Spark wrote
continues here, and back: both read and write the same `txn` actions (ADR 0016).

Readers replay the log from the newest checkpoint, so one is written every
`delta.checkpointInterval` versions (Spark's default of 10 when the table does not set it), and
log files past the table's retention (`delta.logRetentionDuration`, 30 days) are removed then,
as Spark does.

A table written every second gains a small file per partition and commit, and delta-rs reads
every file's entry on each commit (opening the table, then the write): its cost grows with the
table's files, not with the batch (docs/decisions/0028). So every `COMPACT_INTERVAL` versions
the sink compacts the table (`compact_table`): small files are rewritten into files of up to
`delta.targetFileSize` (else `COMPACT_TARGET_BYTES`) in an OPTIMIZE commit that changes no
data (`dataChange: false`, which Delta's streaming readers skip). A table can opt out with
`delta.autoOptimize.autoCompact = false`, for a scheduled OPTIMIZE instead. Two compactions
of the same files must never run at once (delta-rs commits both, duplicating rows), so their
callers hold the table's compaction lease (processor/compaction_lease.py).

On S3 a commit file is written with put-if-absent (`If-None-Match: *`, config/lake.py): a
second writer of the same version gets a conflict, never overwrites.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from deltalake import (
    CommitProperties,
    DeltaTable,
    PostCommitHookProperties,
    Transaction,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import SchemaMismatchError, TableNotFoundError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import date

logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_INTERVAL",
    "COMPACT_INTERVAL",
    "COMPACT_TARGET_BYTES",
    "COMPACT_WRITER",
    "checkpoint_interval",
    "commit_batch",
    "compact_closed_days",
    "compact_table",
    "compaction_due",
    "committed_batch",
    "open_table",
]

CHECKPOINT_INTERVAL = 10
# docs/decisions/0028: any interval keeps a commit's cost flat; a compaction slows the batches
# beside it, so at a one-second trigger every 200 versions touches under 1% of them (a p99
# promise holds), every 50 touched 2% of them. Bigger targets rewrite the day's growing file
# each time.
COMPACT_INTERVAL = 200
COMPACT_TARGET_BYTES = 8 * 1024 * 1024
# The sink's compaction runs beside the batches (ADR 0031), so its CPU is theirs: ZSTD level 1
# costs ~30% less CPU than delta-rs's OPTIMIZE default (level 4) for files ~2% larger (ADR
# 0032). The daily maintenance, which writes the closed days' lasting files, keeps the default.
COMPACT_WRITER = WriterProperties(compression="ZSTD", compression_level=1)
# Checkpoints and log cleanup are this module's (every 10 versions by default, as Spark), not
# delta-rs's post-commit hook's (every 100 by default, and a log listing after every commit).
_NO_HOOKS = PostCommitHookProperties(create_checkpoint=False, cleanup_expired_logs=False)


def open_table(uri: str, storage_options: Mapping[str, str] | None = None) -> DeltaTable | None:
    """The Delta table at `uri`, or None when there is none yet."""
    try:
        return DeltaTable(uri, storage_options=dict(storage_options or {}))
    except TableNotFoundError:
        return None


def committed_batch(table: DeltaTable, writer_id: str) -> int | None:
    """The newest batch id `writer_id` committed to `table` (its `txn` version), or None."""
    version = table.transaction_version(writer_id)
    return None if version is None else int(version)


def checkpoint_interval(table: DeltaTable) -> int:
    """The table's `delta.checkpointInterval`, else Spark's default."""
    value = table.metadata().configuration.get("delta.checkpointInterval")
    return int(value) if value else CHECKPOINT_INTERVAL


def _aligned(data: pa.Table, table: DeltaTable, uri: str) -> pa.Table:
    """`data` with the table's columns it lacks added as nulls, as Spark's append does.

    Columns the table lacks are refused (no schema evolution, as the Spark writer with
    autoMerge off): adding one is a migration (README, "Shadow challenger").
    """
    schema = pa.schema(table.schema().to_arrow())
    extra = [name for name in data.column_names if name not in schema.names]
    if extra:
        raise SchemaMismatchError(
            f"{uri}: the batch has columns the table lacks: {', '.join(extra)} "
            "(add them to the table once, README 'Shadow challenger')"
        )
    missing = [f for f in schema if f.name not in data.column_names]
    for f in missing:
        data = data.append_column(f, pa.nulls(data.num_rows, f.type))
    return data


def commit_batch(
    uri: str,
    data: pa.Table,
    partition: str,
    writer_id: str,
    batch_id: int,
    storage_options: Mapping[str, str] | None = None,
) -> int | None:
    """Append `data` to the table at `uri` (created, partitioned by `partition`, if missing)
    unless `writer_id` committed `batch_id` or a later batch already.

    Returns the table version written, or None when the batch was skipped.
    """
    options = dict(storage_options or {})
    table = open_table(uri, options)
    if table is not None:
        done = committed_batch(table, writer_id)
        if done is not None and done >= batch_id:
            logger.info("%s: batch %d committed before (%s), skipped", uri, batch_id, writer_id)
            return None
        data = _aligned(data, table, uri)
    write_deltalake(
        table if table is not None else uri,
        data,
        partition_by=[partition],
        mode="append",
        storage_options=None if table is not None else options,
        commit_properties=CommitProperties(app_transactions=[Transaction(writer_id, batch_id)]),
        post_commithook_properties=_NO_HOOKS,
    )
    if table is None:
        table = DeltaTable(uri, storage_options=options)
    version = int(table.version())
    if version and version % checkpoint_interval(table) == 0:
        table.create_checkpoint()
        table.cleanup_metadata()
    return version


def compaction_due(version: int | None, interval: int | None = None) -> bool:
    """Whether the commit that made `version` (None: skipped) is one to compact after: every
    `interval` versions (`COMPACT_INTERVAL` unless given)."""
    return bool(version) and version % (interval or COMPACT_INTERVAL) == 0  # type: ignore[operator]


def compact_table(uri: str, storage_options: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Rewrite the table's small files into bigger ones (an OPTIMIZE commit); its metrics.

    Rows and writer ids stay as they were; appends may commit beside it (delta-rs lets a blind
    append and a compaction both land), another compaction may not: hold the table's
    compaction lease (processor/compaction_lease.py). A table with
    `delta.autoOptimize.autoCompact = false` is left alone (metrics empty).
    """
    table = DeltaTable(uri, storage_options=dict(storage_options or {}))
    configuration = table.metadata().configuration
    if configuration.get("delta.autoOptimize.autoCompact", "").lower() == "false":
        return {}
    target = int(configuration.get("delta.targetFileSize") or COMPACT_TARGET_BYTES)
    # One task: the job's batches run beside it on the other core (ADR 0031).
    return table.optimize.compact(
        target_size=target,
        max_concurrent_tasks=1,
        writer_properties=COMPACT_WRITER,
        post_commithook_properties=_NO_HOOKS,
    )


def compact_closed_days(
    uri: str,
    partition: str,
    before: date,
    target_bytes: int,
    storage_options: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """Compact the partitions of `partition` before the date `before` into files of up to
    `target_bytes` (the daily maintenance, processor/lake_maintenance.py), whether or not the
    table opted out of the sink's compaction; its metrics, or None when there is no table."""
    table = open_table(uri, storage_options)
    if table is None:
        return None
    return table.optimize.compact(
        partition_filters=[(partition, "<", before.isoformat())],
        target_size=target_bytes,
        post_commithook_properties=_NO_HOOKS,
    )
