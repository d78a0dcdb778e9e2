"""A record of every committed micro-batch beside the checkpoint: `progress/<batch id>.json`.

Spark's own progress (`query.recentProgress`) lives in the driver and is gone when the job
ends; the run report (ml_model.report) reads these files instead, after the job has exited.
One file per batch id rather than one appended file: S3 cannot append, and a replayed batch
overwrites its own record instead of adding a second one. The newest `RETAINED_BATCHES` are
kept. Writing is best effort: a record that cannot be written is logged, never fails a batch.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processor.checkpoint_files import CheckpointFiles
    from processor.sinks import BatchCounts

logger = logging.getLogger(__name__)

FOLDER = "progress"
SUFFIX = ".json"
RETAINED_BATCHES = 1_000


@dataclass(frozen=True)
class BatchProgress:
    """One committed batch: rows read, the sink's time on it, and when it was committed.

    `duration_ms` is the sink's time from collecting the batch (which runs the source read) to
    the saved feature state; `events_per_s` is `rows_in` over that time.
    """

    batch_id: int
    rows_in: int
    duration_ms: int
    events_per_s: float
    committed_at: str  # ISO 8601, UTC, milliseconds
    written: dict[str, int] = field(default_factory=dict)
    timings_ms: dict[str, int] = field(default_factory=dict)
    # PSI per feature and of the score ("fraud_score") over the drift monitor's window as of
    # this batch (processor/drift.py); empty without a monitor or while its window fills.
    psi: dict[str, float] = field(default_factory=dict)
    # Terminal events still waiting for a backlogged shard after this batch
    # (processor/engine/ordering.py); their transactions are written by a later batch.
    held: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BatchProgress:
        return cls(**json.loads(text))


def batch_progress(
    batch_id: int, rows_in: int, counts: BatchCounts, committed_ms: int | None = None
) -> BatchProgress:
    """The record of a batch from what the sink measured (`counts` of that batch)."""
    committed_ms = int(time.time() * 1000) if committed_ms is None else committed_ms
    duration_ms = sum(counts.timings_ms.values())
    return BatchProgress(
        batch_id=batch_id,
        rows_in=rows_in,
        duration_ms=duration_ms,
        events_per_s=round(rows_in * 1000 / duration_ms, 1) if duration_ms else 0.0,
        committed_at=datetime.fromtimestamp(committed_ms / 1000, UTC).isoformat(
            timespec="milliseconds"
        ),
        written=dict(counts.counts),
        timings_ms=dict(counts.timings_ms),
        psi=dict(counts.psi),
        held=counts.held,
    )


def record_batch(files: CheckpointFiles, batch_id: int, rows_in: int, counts: BatchCounts) -> None:
    """Write batch `batch_id`'s record and drop the one that falls out of retention."""
    progress = batch_progress(batch_id, rows_in, counts)
    try:
        files.put(f"{FOLDER}/{batch_id}{SUFFIX}", progress.to_json().encode())
        if batch_id >= RETAINED_BATCHES:
            files.delete(f"{FOLDER}/{batch_id - RETAINED_BATCHES}{SUFFIX}")
    except Exception as exc:  # noqa: BLE001 - a diagnostics file never fails a committed batch
        logger.warning("batch %d: progress record not written: %s", batch_id, exc)


def read_progress(files: CheckpointFiles) -> list[BatchProgress]:
    """Every retained record, by batch id (an empty list before the first batch)."""
    return [
        BatchProgress.from_json(files.get(f"{FOLDER}/{batch_id}{SUFFIX}").decode())
        for batch_id in files.batch_ids(FOLDER, SUFFIX)
    ]
