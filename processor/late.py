"""The event-time threshold below which an event is late, shared by driver and executors.

Spark's watermark for micro-batch N+1 is the largest event time seen up to batch N minus the
delay, and `dropDuplicatesWithinWatermark` silently drops older rows. To dead-letter them
instead, the foreachBatch sink (which sees every row that reached the watermark operator)
records the same threshold after each batch beside the checkpoint, one small JSON file per batch
id (`_late_threshold/<N>.json`); the parse step marks older events `late`, with no watermark
time, so Spark passes them through to the dead-letter table.

Which file the parse step reads is fixed by the checkpoint, not by what ran last: the file of
the last batch in Spark's commit log. Batch N runs after batch N-1 committed and before it
commits itself, so its first attempt and any replay after a crash both read N-1's file, and
batch N's own file (written by a first attempt that then crashed) is never read by batch N.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_DIR = "_late_threshold"
# Files kept behind the newest, as Spark keeps its own logs (minBatchesToRetain).
RETAINED_FILES = 100
# How far ahead of its arrival an event may push the watermark. Validation accepts event times
# up to a day ahead (a device clock can be wrong); the watermark believes only this much.
WATERMARK_MAX_SKEW_US = 5 * 60 * 1_000_000
_BATCH_FILE = re.compile(r"^(\d+)(?:\.json)?$")


@dataclass(frozen=True)
class ThresholdStore:
    """Where the thresholds live: a local folder, or an s3a:// checkpoint (read with boto3)."""

    checkpoint_location: str
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None

    def _s3(self) -> tuple[Any, str, str] | None:
        if not self.checkpoint_location.startswith(("s3a://", "s3://")):
            return None
        import boto3

        bucket, _, prefix = self.checkpoint_location.split("://", 1)[1].partition("/")
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )
        return client, bucket, prefix.strip("/")

    def _batch_ids(self, folder: str) -> list[int]:
        """Batch ids of the files in a checkpoint sub-folder (`commits` or the state dir)."""
        s3 = self._s3()
        if s3 is not None:
            client, bucket, prefix = s3
            names = [
                item["Key"].rsplit("/", 1)[-1]
                for page in client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=f"{prefix}/{folder}/".lstrip("/")
                )
                for item in page.get("Contents", [])
            ]
        else:
            path = Path(self.checkpoint_location) / folder
            names = [p.name for p in path.iterdir()] if path.is_dir() else []
        return sorted(int(m.group(1)) for m in map(_BATCH_FILE.match, names) if m)

    def last_committed_batch(self) -> int | None:
        """The newest batch id in Spark's commit log, or None before the first commit."""
        ids = self._batch_ids("commits")
        return ids[-1] if ids else None

    def read(self, as_of: int | None = None) -> dict[str, int]:
        """The state left by batch `as_of` (default: the last committed batch), or {}.

        {"max_event_time_ms": ..., "threshold_ms": ...}; a batch that wrote no file (none
        before this design) falls back to the newest file before it.
        """
        if as_of is None:
            as_of = self.last_committed_batch()
            if as_of is None:
                return {}
        written = [batch for batch in self._batch_ids(STATE_DIR) if batch <= as_of]
        if not written:
            return {}
        body = self._get(f"{STATE_DIR}/{written[-1]}.json")
        return {key: int(value) for key, value in json.loads(body).items()}

    def write(self, state: dict[str, int], batch_id: int) -> None:
        """Record what batch `batch_id` leaves for the next one; prune old files."""
        self._put(f"{STATE_DIR}/{batch_id}.json", json.dumps(state).encode())
        for old in self._batch_ids(STATE_DIR):
            if old < batch_id - RETAINED_FILES:
                self._delete(f"{STATE_DIR}/{old}.json")

    def _get(self, name: str) -> bytes:
        s3 = self._s3()
        if s3 is not None:
            client, bucket, prefix = s3
            body: bytes = client.get_object(Bucket=bucket, Key=f"{prefix}/{name}".lstrip("/"))[
                "Body"
            ].read()
            return body
        return (Path(self.checkpoint_location) / name).read_bytes()

    def _put(self, name: str, body: bytes) -> None:
        s3 = self._s3()
        if s3 is not None:
            client, bucket, prefix = s3
            client.put_object(Bucket=bucket, Key=f"{prefix}/{name}".lstrip("/"), Body=body)
            return
        target = Path(self.checkpoint_location) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: a reader never sees half a file.
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            tmp.write(body)
        os.replace(tmp.name, target)

    def _delete(self, name: str) -> None:
        s3 = self._s3()
        if s3 is not None:
            client, bucket, prefix = s3
            client.delete_object(Bucket=bucket, Key=f"{prefix}/{name}".lstrip("/"))
            return
        (Path(self.checkpoint_location) / name).unlink(missing_ok=True)


_UNITS_MS = {"second": 1_000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}


def delay_ms(text: str) -> int:
    """'10 minutes' -> 600000 (the units config.settings accepts for a watermark)."""
    number, unit = text.split()
    return int(float(number) * _UNITS_MS[unit.rstrip("s")])


def advance(state: dict[str, int], batch_max_ms: int | None, delay_ms: int) -> dict[str, int]:
    """The state after a batch whose largest (non-late) event time was `batch_max_ms`."""
    if batch_max_ms is None:
        return state
    largest = max(state.get("max_event_time_ms", batch_max_ms), batch_max_ms)
    return {"max_event_time_ms": largest, "threshold_ms": largest - delay_ms}


def bound_watermark_times(
    arrivals_us: list[int | None], times_us: list[int | None], late_before_us: int | None
) -> list[int | None]:
    """The event times the watermark may follow, for one task's rows (None: not an event).

    - No row counts for more than its arrival time plus WATERMARK_MAX_SKEW_US: a record dated
      tomorrow cannot make today's records late.
    - No row counts for more than the second-largest time of the task, so one outlier cannot
      move the watermark (a task holds one shard's share of a batch: the same rows on replay).
    - A row that is not late counts for at least the current threshold, so Spark's own
      watermark never drops a row that the parse step let through.
    """
    bounded: list[int | None] = []
    for arrival, moment in zip(arrivals_us, times_us, strict=True):
        if moment is not None and arrival is not None:
            moment = min(moment, arrival + WATERMARK_MAX_SKEW_US)
        bounded.append(moment)
    known = sorted(t for t in bounded if t is not None)
    cap = known[-2] if len(known) >= 2 else None
    floor = None if late_before_us is None else late_before_us + 1
    out: list[int | None] = []
    for moment in bounded:
        if moment is not None:
            if cap is not None:
                moment = min(moment, cap)
            if floor is not None:
                moment = max(moment, floor)
        out.append(moment)
    return out
