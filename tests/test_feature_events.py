"""FeatureEvents built from Arrow columns (`from_arrow`, `from_frame`) equal those built row by
row (`from_row`)."""

from __future__ import annotations

import math
import pickle
import time
from dataclasses import astuple, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from mypy import api as mypy_api

from ml_model.features import FeatureEvent, from_arrow, from_frame, from_row
from ml_model.history import generated_history
from processor.parse import PARSED_ARROW_SCHEMA, PARSED_SCHEMA
from producer.generator.options import GeneratorOptions

AT = datetime(2026, 1, 1, 12, 0, 0, 999_600, tzinfo=UTC)  # 999.6 ms: rounded down to 999


def _row(**values: Any) -> dict[str, Any]:
    return {name: values.get(name) for name in PARSED_SCHEMA.fieldNames()} | values


ROWS = [
    _row(event_type="transaction", event_id="t1", transaction_id="t1", event_time=AT,
         card_token="c1", terminal_id="p1", amount=12.5, merchant_id="m1",
         merchant_country="FR", latitude=48.85, longitude=2.35, channel="ecom", device_id="d1"),
    # before 1970: rounded down too (-0.5 ms is -1)
    _row(event_type="transaction", event_id="t2", transaction_id="t2",
         event_time=datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC), card_token="c1",
         amount=float("nan"), latitude=None, longitude=float("nan"), channel="pos"),
    _row(event_type="auth", event_id="a1", auth_id="a1", event_time=AT, card_token="c1",
         success=False, device_id="d2"),
    _row(event_type="auth", event_id="a2", auth_id="a2", event_time=AT, card_token="c2"),
    _row(event_type="chargeback", event_id="b1", chargeback_id="b1", transaction_id="t1",
         terminal_id="p1", event_time=AT, transaction_time=datetime(2025, 12, 1, tzinfo=UTC),
         confirmed_fraud=False),
    _row(event_type="chargeback", event_id="b2", chargeback_id="b2", transaction_id="t2",
         event_time=AT, confirmed_fraud=True),
    # not feature events: from_row refuses them, from_arrow gives None
    _row(event_type="refund", event_id="r1", event_time=AT),
    _row(event_type="transaction", event_id="t3", transaction_id="t3", event_time=None),
    _row(event_type=None, event_time=AT),
]  # fmt: skip


def _expected(rows: list[dict[str, Any]]) -> list[FeatureEvent | None]:
    out: list[FeatureEvent | None] = []
    for row in rows:
        try:
            out.append(from_row(row))
        except ValueError:
            out.append(None)
    return out


def test_the_parsed_schema_gives_the_events_from_row_gives() -> None:
    table = pa.Table.from_pylist(ROWS, schema=PARSED_ARROW_SCHEMA)
    events = from_arrow(table)
    assert events == _expected(table.to_pylist())
    assert [event is None for event in events] == [False] * 6 + [True] * 3
    first, before_1970, failed, unknown, disputed, confirmed = events[:6]
    assert first is not None and first.time_ms == 1_767_268_800_999
    assert before_1970 is not None and before_1970.time_ms == -1
    assert before_1970.amount is None and before_1970.longitude is None
    assert failed is not None and failed.success is False
    assert unknown is not None and unknown.success is None
    assert disputed is not None and disputed.transaction_id == "t1"
    assert disputed.confirmed_fraud is False and disputed.transaction_time_ms is not None
    assert confirmed is not None and confirmed.transaction_time_ms is None
    # a transaction's own transaction_id is its id, not a disputed one
    assert first.transaction_id is None and first.event_id == "t1"


def _retyped(table: pa.Table, name: str, kind: pa.DataType) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, table[name].cast(kind))


@pytest.mark.parametrize(
    "variant",
    [
        "nanoseconds in another zone",
        "seconds",
        "naive timestamps",
        "large strings",
        "integer ids",
        "single floats",
        "columns missing",
        "record batch",
    ],
)
def test_other_column_types_give_the_same_events_as_their_rows(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the column types (a history file, another Spark time zone), each event equals
    the one `from_row` builds from the same row as pyarrow reads it."""
    # Naive times are local (producer.contract.to_epoch_ms): a zone other than UTC tells them
    # apart from UTC ones.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    table = pa.Table.from_pylist(ROWS, schema=PARSED_ARROW_SCHEMA)
    data: pa.Table | pa.RecordBatch = table
    if variant == "nanoseconds in another zone":
        data = _retyped(table, "event_time", pa.timestamp("ns", tz="Europe/Paris"))
    elif variant == "seconds":
        data = _retyped(table, "transaction_time", pa.timestamp("s", tz="UTC"))
    elif variant == "naive timestamps":
        data = _retyped(table, "event_time", pa.timestamp("us"))
    elif variant == "large strings":
        data = _retyped(
            _retyped(table, "card_token", pa.large_string()), "event_id", pa.large_string()
        )
    elif variant == "integer ids":
        ids = pa.array([None, None, 7, 8, None, None, None, None, None], pa.int64())
        data = table.set_column(table.schema.get_field_index("auth_id"), "auth_id", ids)
    elif variant == "single floats":
        data = _retyped(table, "amount", pa.float32())
    elif variant == "columns missing":
        data = table.drop_columns(["terminal_id", "device_id", "transaction_time", "success"])
    else:
        data = table.to_batches()[0]
    try:
        events = from_arrow(data)
        assert events == _expected(data.to_pylist())
        assert sum(event is not None for event in events) == 6
    finally:
        monkeypatch.undo()
        time.tzset()


def test_an_event_pickles_as_the_list_of_its_values() -> None:
    """The form the frozen class wrote, which engine state files of format 3 hold."""
    event = FeatureEvent("transaction", 5, "t1", card="c1", amount=math.pi, success=None)
    _, _, state = event.__reduce_ex__(pickle.HIGHEST_PROTOCOL)[:3]
    assert state == list(astuple(event)) and len(state) == len(fields(FeatureEvent))
    assert pickle.loads(pickle.dumps(event)) == event


def test_an_event_is_hashed_by_value_and_its_fields_are_read_only_to_mypy(tmp_path: Path) -> None:
    """Built as a plain dataclass for speed, an event keeps what the frozen class promised: a
    hash by value, and `make lint` refuses an assignment to one of its fields."""
    event = FeatureEvent("transaction", 5, "t1", card="c1")
    assert hash(event) == hash(FeatureEvent("transaction", 5, "t1", card="c1"))
    assert len({event, FeatureEvent("transaction", 5, "t1", card="c1")}) == 1
    module = tmp_path / "assigns.py"
    module.write_text(
        "from ml_model.features import FeatureEvent\n\n"
        "def shift(event: FeatureEvent) -> None:\n"
        "    event.time_ms += 1\n"
    )
    out, _, status = mypy_api.run(
        [str(module), "--follow-imports=silent", "--cache-dir", str(tmp_path / "cache")]
    )
    assert status == 1, out
    assert 'Property "time_ms" defined in "FeatureEvent" is read-only' in out, out


def test_a_history_frame_gives_the_events_from_row_gives() -> None:
    """Training builds its events with `from_frame` (the stream's `from_arrow`): equal to
    `from_row` over the frame's records, whose missing values pandas holds as NaN and NaT."""
    history = generated_history(
        GeneratorOptions(seed=5, num_transactions=1_500, num_customers=40, num_terminals=20,
                         fraud_rate=0.05, chargeback_delay_days=0.5)
    )  # fmt: skip
    assert set(history["event_type"]) == {"transaction", "auth", "chargeback"}
    history.loc[history.index[3], "device_id"] = float("nan")  # an object column's NaN
    events = from_frame(history)
    assert events == [from_row(row) for row in history.to_dict("records")]
    assert events[3].device is None


def test_a_history_frame_with_naive_times_reads_them_as_utc_as_from_row_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`from_row` reads a naive pandas Timestamp as UTC (its `.value`); so does `from_frame`,
    in a zone other than UTC too."""
    history = pd.DataFrame(
        {"event_type": ["transaction", "chargeback"], "transaction_id": ["t1", "t1"],
         "chargeback_id": [None, "b1"], "card_token": ["c", None], "terminal_id": ["p", "p"],
         "event_time": pd.to_datetime(["2026-01-01 00:00:00.9996", "2026-01-09 00:00:00.0000"]),
         "transaction_time": pd.to_datetime([None, "2026-01-01 00:00:00.9996"])}
    )  # fmt: skip
    # Microseconds, as a Parquet file gives them: pyarrow hands those out as datetimes.
    history = history.astype({"event_time": "datetime64[us]", "transaction_time": "datetime64[us]"})
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        events = from_frame(history)
        assert events == [from_row(row) for row in history.to_dict("records")]
    finally:
        monkeypatch.undo()
        time.tzset()
    assert events[0].time_ms == 1_767_225_600_999 == events[1].transaction_time_ms


def test_a_history_row_that_is_no_feature_event_is_named() -> None:
    history = pd.DataFrame(
        {"event_type": ["transaction", "refund"], "transaction_id": ["t1", "r1"],
         "event_time": pd.to_datetime(["2026-01-01T00:00Z", "2026-01-01T00:01Z"])}
    )  # fmt: skip
    with pytest.raises(ValueError, match="row 1: event_type='refund'"):
        from_frame(history)
    assert [event.event_id for event in from_frame(history, skip_refused=True)] == ["t1"]
