"""The event-time threshold below which an event is late, shared by driver and executors.

Spark's watermark for micro-batch N+1 is the largest event time seen up to batch N minus the
delay, and `dropDuplicatesWithinWatermark` silently drops older rows. To dead-letter them
instead, the foreachBatch sink (which sees every row that reached the watermark operator)
records the same threshold after each batch in a small JSON file beside the checkpoint; the
parse step of the next batch reads it and marks older events `late`, with no watermark time,
so Spark passes them through to the dead-letter table. Micro-batches run one after another, so
batch N+1's tasks always read what batch N wrote.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "_late_threshold.json"
# How far ahead of its arrival an event may push the watermark. Validation accepts event times
# up to a day ahead (a device clock can be wrong); the watermark believes only this much.
WATERMARK_MAX_SKEW_US = 5 * 60 * 1_000_000


@dataclass(frozen=True)
class ThresholdStore:
    """Where the threshold lives: a local folder, or an s3a:// checkpoint (read with boto3)."""

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
        return client, bucket, f"{prefix.rstrip('/')}/{STATE_FILE}".lstrip("/")

    def read(self) -> dict[str, int]:
        """{"max_event_time_ms": ..., "threshold_ms": ...}, or {} before the first batch."""
        s3 = self._s3()
        try:
            if s3 is not None:
                client, bucket, key = s3
                body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            else:
                body = (Path(self.checkpoint_location) / STATE_FILE).read_bytes()
        except FileNotFoundError:
            return {}
        except Exception as exc:  # noqa: BLE001 - boto3's NoSuchKey is a generated class
            if "NoSuchKey" in type(exc).__name__ or "NoSuchKey" in str(exc):
                return {}
            raise
        return {key: int(value) for key, value in json.loads(body).items()}

    def write(self, state: dict[str, int]) -> None:
        body = json.dumps(state).encode()
        s3 = self._s3()
        if s3 is not None:
            client, bucket, key = s3
            client.put_object(Bucket=bucket, Key=key, Body=body)
            return
        folder = Path(self.checkpoint_location)
        folder.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: a reader never sees half a file.
        with tempfile.NamedTemporaryFile(dir=folder, delete=False) as tmp:
            tmp.write(body)
        os.replace(tmp.name, folder / STATE_FILE)


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
