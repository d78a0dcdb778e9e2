"""Arrow -> Python values with timestamps built in Python: the same values pyarrow gives."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from processor.arrow_rows import column_values, columns_of, rows_of

MOMENTS = [
    datetime(2026, 6, 1, 12, 30, 15, 123456, tzinfo=UTC),
    None,
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before the epoch
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
]


@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_utc_timestamps_are_the_same_instants_as_pyarrows(unit: str) -> None:
    moments = [m if m is None or unit == "us" else m.replace(microsecond=0) for m in MOMENTS]
    column = pa.array(moments, pa.timestamp(unit, tz="UTC"))
    values = column_values(column)
    assert values == column.to_pylist() == moments
    assert all(v is None or v.utcoffset() is not None for v in values)  # aware, not naive
    # A column without nulls takes the mapped path.
    full = column.drop_null()
    assert full.null_count == 0 < len(full)
    assert column_values(full) == full.to_pylist() == [m for m in moments if m is not None]


def test_other_columns_and_other_zones_are_pyarrows_own_values() -> None:
    paris = pa.array([MOMENTS[0]], pa.timestamp("us", tz="Europe/Paris"))
    naive = pa.array([MOMENTS[0].replace(tzinfo=None)], pa.timestamp("us"))
    for column in (paris, naive, pa.array(["a", None]), pa.array([1.5, None])):
        assert column_values(column) == column.to_pylist()
    assert column_values(paris)[0].hour == 14  # local wall time kept, as pyarrow gives it


def test_rows_and_columns_match_pyarrows_conversions() -> None:
    table = pa.table(
        {
            "id": pa.array(["a", "b", None, "d", "e"]),
            "at": pa.array(MOMENTS, pa.timestamp("us", tz="UTC")),
            "n": pa.array([1, 2, 3, None, 5], pa.int64()),
        }
    )
    assert rows_of(table) == table.to_pylist()
    assert columns_of(table.to_batches()[0]) == table.to_pydict()
    assert rows_of(table.slice(0, 0)) == []
