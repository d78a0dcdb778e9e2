"""Arrow data as Python values, with timestamps built in Python.

pyarrow turns a UTC timestamp into a `datetime` with a `zoneinfo` tzinfo at ~3.6 µs a value;
adding a `timedelta` to the epoch makes the same instant with `datetime.UTC` in ~0.35 µs, with
the `timedelta` built from positional arguments and the column mapped in C (keyword arguments
and a Python loop cost ~0.6 µs). Both the parse step (one arrival time per record) and the
driver's sink (three timestamps per row) pay that per event, so they read Arrow through here.
Values are equal either way; only the tzinfo object differs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import pyarrow as pa

from producer.contract import EPOCH

# A count of each unit as a timedelta: timedelta(days, seconds, microseconds, milliseconds).
_DELTAS: dict[str, Callable[[int], timedelta]] = {
    "s": partial(timedelta, 0),
    "ms": partial(timedelta, 0, 0, 0),
    "us": partial(timedelta, 0, 0),
}
_UTC_NAMES = frozenset({"UTC", "utc", "Etc/UTC", "+00:00", "Z"})


def column_values(column: pa.Array | pa.ChunkedArray) -> list[Any]:
    """One column as Python values; a UTC timestamp column as aware datetimes."""
    kind = column.type
    if not pa.types.is_timestamp(kind) or kind.tz not in _UTC_NAMES or kind.unit not in _DELTAS:
        return column.to_pylist()
    delta, counts = _DELTAS[kind.unit], column.cast(pa.int64()).to_pylist()
    if column.null_count:
        return [None if count is None else EPOCH + delta(count) for count in counts]
    return list(map(EPOCH.__add__, map(delta, counts)))


def columns_of(data: pa.RecordBatch | pa.Table) -> dict[str, list[Any]]:
    """`to_pydict()`, with `column_values`' timestamps."""
    return {name: column_values(data.column(name)) for name in data.schema.names}


def rows_of(data: pa.RecordBatch | pa.Table) -> list[dict[str, Any]]:
    """`to_pylist()`, with `column_values`' timestamps, built column by column."""
    names = data.schema.names
    columns = [column_values(data.column(name)) for name in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


class CollectedBatch:
    """A micro-batch as collected: its Arrow table and its rows (`rows_of`).

    The engine and the scorer add columns to these rows; `take` gathers columns the rows still
    hold as collected straight from the table (one C-level gather per column) rather than
    reading 40,000 values back out of the dicts. A row is known by identity, which is stable
    while `rows` holds it; a row that is not one of this batch's (a transaction held since an
    earlier batch) is read from its dict.
    """

    def __init__(self, table: pa.Table, rows: list[dict[str, Any]] | None = None) -> None:
        """`rows`: `rows_of(table)`, if already built (one dict per row, in the table's order)."""
        self.table = table
        self.rows = rows_of(table) if rows is None else rows
        assert len(self.rows) == table.num_rows
        self._positions = {id(row): index for index, row in enumerate(self.rows)}

    def take(
        self, rows: list[dict[str, Any]], fields: list[pa.Field]
    ) -> dict[str, pa.ChunkedArray]:
        """`fields` (columns of the table, cast to the fields' types) of `rows`, in their order."""
        schema = pa.schema(fields)
        source = self.table.select(schema.names)
        if source.schema != schema:  # e.g. Spark's session time zone or large strings
            source = source.cast(schema)
        positions: list[int] = []
        others: list[dict[str, Any]] = []
        for row in rows:
            position = self._positions.get(id(row))
            if position is None:
                position = self.table.num_rows + len(others)
                others.append(row)
            positions.append(position)
        if others:
            source = pa.concat_tables([source, pa.Table.from_pylist(others, schema=schema)])
        taken = source.take(pa.array(positions, pa.int64()))
        return dict(zip(schema.names, taken.columns, strict=True))
