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
