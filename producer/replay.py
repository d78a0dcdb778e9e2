"""Replay a JSONL file of contract events: how real or external data enters the pipeline.

Lines are sent as they are, in file order. A line that is not a JSON object is still sent (the
processor dead-letters it), keyed by a hash of its bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from config.exceptions import ConfigError
from producer.contract import PARTITION_KEY_FIELD, parse_event_time, to_epoch_ms
from producer.records import OutgoingRecord


def read_replay_file(path: str | Path) -> Iterator[OutgoingRecord]:
    """Records of a JSONL file; `send_time_ms` is the event time (0 when unreadable).

    The file is checked now, so a bad path fails before anything is sent.
    """
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"replay file {str(source)!r} does not exist (option --replay)")
    return _records(source)


def _records(source: Path) -> Iterator[OutgoingRecord]:
    with source.open("rb") as lines:
        for line in lines:
            data = line.rstrip(b"\r\n")
            if not data.strip():
                continue
            key, event_type, event_id, is_fraud, time_ms = _describe(data)
            yield OutgoingRecord(
                partition_key=key,
                data=data,
                event_type=event_type,
                event_id=event_id,
                is_fraud=is_fraud,
                anomaly=None,
                send_time_ms=time_ms,
            )


def _describe(data: bytes) -> tuple[str, str | None, str | None, bool, int]:
    try:
        event = json.loads(data)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        return hashlib.sha256(data).hexdigest()[:32], None, None, False, 0
    key = event.get(PARTITION_KEY_FIELD)
    if not isinstance(key, str) or not key:
        key = hashlib.sha256(data).hexdigest()[:32]
    event_type = event.get("event_type") if isinstance(event.get("event_type"), str) else None
    event_id = next(
        (str(event[f]) for f in ("transaction_id", "auth_id", "chargeback_id") if f in event),
        None,
    )
    label = event.get("label")
    is_fraud = bool(label.get("is_fraud")) if isinstance(label, dict) else False
    try:
        time_ms = to_epoch_ms(parse_event_time(str(event.get("event_time"))))
    except ValueError:
        time_ms = 0
    return key, event_type, event_id, is_fraud, time_ms
