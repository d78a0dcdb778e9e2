"""Data-quality anomalies: each breaks one genuine transaction in a recorded way.

The `expected_reason` of each kind is the reason code `producer.contract.parse_payload` gives
the broken payload, so a test can count exactly what the processor must dead-letter.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from producer.contract import (
    REASON_FUTURE_EVENT_TIME,
    REASON_INVALID_VALUE,
    REASON_MISSING_FIELD,
    REASON_NOT_JSON,
    REASON_OUT_OF_RANGE,
    REASON_WRONG_TYPE,
    encode_event,
)
from producer.generator.options import ANOMALY_KINDS
from producer.records import InjectedAnomaly

DUPLICATE: Final = "duplicate"
EXPECTED_REASON: Final = {
    "missing_field": REASON_MISSING_FIELD,
    "wrong_type": REASON_WRONG_TYPE,
    "negative_amount": REASON_OUT_OF_RANGE,
    "future_timestamp": REASON_FUTURE_EVENT_TIME,
    "unknown_currency": REASON_INVALID_VALUE,
    DUPLICATE: DUPLICATE,
    "not_json": REASON_NOT_JSON,
}
_REQUIRED = ("amount", "currency", "terminal_id", "event_time", "merchant_id")


def inject_anomaly(
    rng: np.random.Generator, event: dict[str, Any], payload: bytes
) -> InjectedAnomaly:
    """Pick an anomaly kind and apply it to a copy of `event` (the original is untouched)."""
    kind = ANOMALY_KINDS[int(rng.integers(len(ANOMALY_KINDS)))]
    broken = dict(event)
    field: str | None = None
    if kind == "missing_field":
        field = _REQUIRED[int(rng.integers(len(_REQUIRED)))]
        del broken[field]
    elif kind == "wrong_type":
        field = "amount"
        broken[field] = f"{event['amount']:.2f}"
    elif kind == "negative_amount":
        field = "amount"
        broken[field] = -abs(float(event["amount"]))
    elif kind == "future_timestamp":
        field = "event_time"
        broken[field] = "2099" + event["event_time"][4:]
    elif kind == "unknown_currency":
        field = "currency"
        broken[field] = "XXX"
    if kind == DUPLICATE:
        data = payload
    elif kind == "not_json":
        data = payload[: max(1, len(payload) // 2)]  # a truncated write
    else:
        data = encode_event(broken)
    return InjectedAnomaly(
        kind=kind,
        expected_reason=EXPECTED_REASON[kind],
        event_id=str(event["transaction_id"]),
        field=field,
        data=data,
    )
