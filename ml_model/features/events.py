"""The slice of an event that feature math reads, and the order events are applied in.

Labels never enter here: a `FeatureEvent` has no `is_fraud`. A chargeback is an event like any
other (it arrives at its own event time), which is how terminal risk counts only the labels that
had arrived by the time of the transaction being scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from producer.contract import to_epoch_ms

TRANSACTION = "transaction"
AUTH = "auth"
CHARGEBACK = "chargeback"

# Events at the same millisecond are ordered by kind, then id, so "every earlier event" is
# well defined whatever order they arrived in.
_KIND_ORDER = {CHARGEBACK: 0, AUTH: 1, TRANSACTION: 2}

EventKey = tuple[int, int, str]

# Every column `from_row` reads (the processor's parsed-row names): the stream passes exactly
# these through its stateful operator; training reads them from history.
FEATURE_INPUTS = (
    "event_type",
    "event_time",
    "transaction_id",
    "auth_id",
    "chargeback_id",
    "card_token",
    "terminal_id",
    "amount",
    "merchant_id",
    "merchant_country",
    "latitude",
    "longitude",
    "channel",
    "device_id",
    "success",
    "transaction_time",
    "confirmed_fraud",
)


@dataclass(frozen=True, slots=True)
class FeatureEvent:
    """One event, reduced to what the feature definitions use."""

    kind: str
    time_ms: int
    event_id: str  # transaction_id, auth_id or chargeback_id
    card: str | None = None  # card token
    terminal: str | None = None
    amount: float | None = None
    merchant: str | None = None
    country: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    channel: str | None = None
    device: str | None = None
    success: bool | None = None  # auth: login outcome
    transaction_id: str | None = None  # chargeback: the disputed transaction
    transaction_time_ms: int | None = None  # chargeback: that transaction's event time
    confirmed_fraud: bool | None = None  # chargeback: fraud confirmed (False clears it)

    @property
    def key(self) -> EventKey:
        return event_key(self.kind, self.time_ms, self.event_id)


def event_key(kind: str, time_ms: int, event_id: str) -> EventKey:
    return (time_ms, _KIND_ORDER[kind], event_id)


def _ms(value: Any) -> int | None:
    """Epoch ms (rounded down, as `to_epoch_ms`) from a datetime / pandas Timestamp / int;
    None for a missing value."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if hasattr(value, "value") and hasattr(value, "tz_localize"):  # pandas Timestamp
        if value != value:  # NaT
            return None
        return int(value.value // 1_000_000)
    if isinstance(value, datetime):
        return to_epoch_ms(value)
    return int(value)


def _clean(value: Any) -> Any:
    """None for pandas' missing markers (NaN, NaT, pd.NA), the value otherwise."""
    if value is None:
        return None
    try:
        if value != value:  # NaN / NaT
            return None
    except TypeError:  # pd.NA refuses comparisons
        return None
    return value


_ID_COLUMN = {TRANSACTION: "transaction_id", AUTH: "auth_id", CHARGEBACK: "chargeback_id"}


def from_row(row: dict[str, Any]) -> FeatureEvent:
    """A FeatureEvent from a parsed event row (processor/parse.py's column names)."""
    get = row.get
    kind = get("event_type")
    time_ms = _ms(_clean(get("event_time")))
    if kind not in _KIND_ORDER or time_ms is None:
        raise ValueError(f"not a feature event: event_type={kind!r} event_time={time_ms!r}")
    event_id = _ID_COLUMN[kind]
    amount = _clean(get("amount"))
    lat, lon = _clean(get("latitude")), _clean(get("longitude"))
    success, confirmed = _clean(get("success")), _clean(get("confirmed_fraud"))
    return FeatureEvent(
        kind=kind,
        time_ms=time_ms,
        event_id=str(get(event_id)),
        card=_clean(get("card_token")),
        terminal=_clean(get("terminal_id")),
        amount=None if amount is None else float(amount),
        merchant=_clean(get("merchant_id")),
        country=_clean(get("merchant_country")),
        latitude=None if lat is None else float(lat),
        longitude=None if lon is None else float(lon),
        channel=_clean(get("channel")),
        device=_clean(get("device_id")),
        success=None if success is None else bool(success),
        transaction_id=_clean(get("transaction_id")) if kind == CHARGEBACK else None,
        transaction_time_ms=_ms(_clean(get("transaction_time"))),
        confirmed_fraud=None if confirmed is None else bool(confirmed),
    )
