"""The slice of an event that feature math reads, and the order events are applied in.

Labels never enter here: a `FeatureEvent` has no `is_fraud`. A chargeback is an event like any
other (it arrives at its own event time), which is how terminal risk counts only the labels that
had arrived by the time of the transaction being scored.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, dataclass_transform

import numpy as np
import pyarrow as pa

from producer.contract import to_epoch_ms

if TYPE_CHECKING:
    import pandas as pd

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


_Record = TypeVar("_Record")


@dataclass_transform(frozen_default=True)
def _immutable(cls: type[_Record]) -> type[_Record]:
    """A slots dataclass that type checkers hold frozen, built as a plain one at run time.

    A frozen dataclass sets each field through `object.__setattr__`: 3.1 µs an event against
    0.36 µs, paid for every event the stream reads and every one a restart replays. mypy
    (`make lint`) still refuses any assignment to a field, and the hash is by value, as for a
    frozen class.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)


@_immutable
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

    # Pickled as the list of its values, as the frozen class was: engine state files of
    # format 3 (processor/engine/state.py) hold events in that form.
    def __getstate__(self) -> list[Any]:
        return [getattr(self, name) for name in _FIELD_NAMES]

    def __setstate__(self, state: list[Any]) -> None:
        for name, value in zip(_FIELD_NAMES, state, strict=True):
            setattr(self, name, value)


_FIELD_NAMES = tuple(field.name for field in fields(FeatureEvent))


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


def _float(value: Any) -> float | None:
    value = _clean(value)
    return None if value is None else float(value)


def _bool(value: Any) -> bool | None:
    value = _clean(value)
    return None if value is None else bool(value)


def _time(value: Any) -> int | None:
    return _ms(_clean(value))


_ID_COLUMN = {TRANSACTION: "transaction_id", AUTH: "auth_id", CHARGEBACK: "chargeback_id"}


def from_row(row: dict[str, Any]) -> FeatureEvent:
    """A FeatureEvent from a parsed event row (processor/parse.py's column names)."""
    get = row.get
    kind = get("event_type")
    time_ms = _ms(_clean(get("event_time")))
    if kind not in _KIND_ORDER or time_ms is None:
        raise ValueError(f"not a feature event: event_type={kind!r} event_time={time_ms!r}")
    return FeatureEvent(
        kind=kind,
        time_ms=time_ms,
        event_id=str(get(_ID_COLUMN[kind])),
        card=_clean(get("card_token")),
        terminal=_clean(get("terminal_id")),
        amount=_float(get("amount")),
        merchant=_clean(get("merchant_id")),
        country=_clean(get("merchant_country")),
        latitude=_float(get("latitude")),
        longitude=_float(get("longitude")),
        channel=_clean(get("channel")),
        device=_clean(get("device_id")),
        success=_bool(get("success")),
        transaction_id=_clean(get("transaction_id")) if kind == CHARGEBACK else None,
        transaction_time_ms=_time(get("transaction_time")),
        confirmed_fraud=_bool(get("confirmed_fraud")),
    )


def from_arrow(data: pa.Table | pa.RecordBatch) -> list[FeatureEvent | None]:
    """`from_row` of each row of `data`, built column by column; None for a row `from_row`
    refuses (no known event type or no event time). A missing column reads as nulls.

    The stream's batches arrive as Arrow: reading a timezone-aware time column as integers
    skips a `datetime` per value, and one positional constructor call per event skips the
    per-row lookups. Any other column type is read value by value with `from_row`'s own
    conversions, so the events are equal whatever the types (tests/test_feature_events.py).
    """
    names = set(data.schema.names)

    def column(name: str) -> list[Any]:
        values = data.column(name) if name in names else pa.nulls(data.num_rows)
        return values.to_pylist()

    def strings(name: str) -> list[Any]:
        if name in names and pa.types.is_string(data.schema.field(name).type):
            return column(name)  # no NaN in a string column: _clean would return each as is
        return [_clean(value) for value in column(name)]

    def times(name: str) -> list[int | None]:
        kind = data.schema.field(name).type if name in names else pa.null()
        if pa.types.is_timestamp(kind) and kind.tz is not None and kind.unit in _PER_MS:
            return _epoch_ms(data.column(name), kind.unit)
        return [_time(value) for value in column(name)]

    kinds = column("event_type")
    ids = {kind: column(name) for kind, name in _ID_COLUMN.items()}
    by_field: dict[str, list[Any]] = {
        "kind": kinds,
        "time_ms": times("event_time"),
        "event_id": [
            str(ids[kind][row]) if kind in ids else None for row, kind in enumerate(kinds)
        ],
        "card": strings("card_token"),
        "terminal": strings("terminal_id"),
        "amount": [_float(value) for value in column("amount")],
        "merchant": strings("merchant_id"),
        "country": strings("merchant_country"),
        "latitude": [_float(value) for value in column("latitude")],
        "longitude": [_float(value) for value in column("longitude")],
        "channel": strings("channel"),
        "device": strings("device_id"),
        "success": [_bool(value) for value in column("success")],
        "transaction_id": [
            disputed if kind == CHARGEBACK else None
            for kind, disputed in zip(kinds, strings("transaction_id"), strict=True)
        ],
        "transaction_time_ms": times("transaction_time"),
        "confirmed_fraud": [_bool(value) for value in column("confirmed_fraud")],
    }
    rows = zip(*(by_field[name] for name in _FIELD_NAMES), strict=True)
    return [
        FeatureEvent(*values) if values[0] in _KIND_ORDER and values[1] is not None else None
        for values in rows
    ]


def from_frame(frame: pd.DataFrame, skip_refused: bool = False) -> list[FeatureEvent]:
    """`from_row` of every record of a pandas frame, built the way the stream builds its
    batches' (`from_arrow`). A row `from_row` refuses is left out with `skip_refused`, else it
    raises ValueError naming the first one.

    A NaN or NaT reads as missing, and a naive time as UTC, as `from_row` reads the pandas
    values of `frame.to_dict("records")` (tests/test_feature_events.py).
    """
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for name in ("event_time", "transaction_time"):
        kind = table.schema.field(name).type if name in table.schema.names else None
        if kind is not None and pa.types.is_timestamp(kind) and kind.tz is None:
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, table[name].cast(pa.timestamp(kind.unit, "UTC")))
    events = from_arrow(table)
    refused = next((row for row, event in enumerate(events) if event is None), None)
    if refused is not None and not skip_refused:
        row = frame.iloc[refused]
        raise ValueError(
            f"not a feature event: row {refused}: event_type={row.get('event_type')!r} "
            f"event_time={row.get('event_time')!r}"
        )
    return [event for event in events if event is not None]


# A timestamp unit -> how many of it make a millisecond (None: seconds, 1,000 ms each).
_PER_MS = {"s": None, "ms": 1, "us": 1_000, "ns": 1_000_000}


def _epoch_ms(column: pa.Array | pa.ChunkedArray, unit: str) -> list[int | None]:
    """A timezone-aware timestamp column as epoch ms, rounded down as `to_epoch_ms` does: its
    integers count `unit`s since the epoch in UTC, whatever the zone."""
    counts = column.cast(pa.int64())
    values = counts.fill_null(0).to_numpy(zero_copy_only=False)
    per_ms = _PER_MS[unit]
    out: list[int | None] = (values * 1000 if per_ms is None else values // per_ms).tolist()
    if counts.null_count:
        for row in np.flatnonzero(counts.is_null().to_numpy(zero_copy_only=False)).tolist():
            out[row] = None
    return out
