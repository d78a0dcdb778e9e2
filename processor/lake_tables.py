"""The lake's four tables: their columns (as Arrow schemas) and rows -> Arrow tables.

The engine works on Python rows on the driver; these schemas fix the types each table gets in
Delta, whatever a batch happens to hold (an all-null column still has its type).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ml_model.features import FEATURE_NAMES
from processor.parse import ARROW_TYPE_OF, EVENT_FIELDS, SOURCE_FIELDS

if TYPE_CHECKING:
    from processor.arrow_rows import CollectedBatch

TABLES = ("transactions", "auth_events", "labels", "dead_letters")


def partition_column(table: str) -> str:
    """The date column `table` is partitioned by: dead letters by arrival (they may have no
    event time), the others by event date."""
    return "arrival_date" if table == "dead_letters" else "event_date"


# The columns a row holds as parsed (processor/parse.py). The engine and the scorer add columns
# to a row and never change these, so a table may gather them from the collected batch.
PARSED_EVENT_COLUMNS = frozenset(name for name, _ in EVENT_FIELDS + SOURCE_FIELDS)


def _fields(pairs: list[tuple[str, Any]]) -> list[pa.Field]:
    return [pa.field(name, ARROW_TYPE_OF[type(kind)]) for name, kind in pairs]


# Every event table: the event's columns, where it came from, when it happened, and whether it
# arrived behind the watermark (it is scored and kept all the same).
EVENT_COLUMNS = [
    *_fields(EVENT_FIELDS + SOURCE_FIELDS),
    pa.field("event_date", pa.date32()),
    pa.field("late", pa.bool_()),
    pa.field("lateness_ms", pa.int64()),
]
EVENT_TABLE = pa.schema(EVENT_COLUMNS)
TRANSACTION_TABLE = pa.schema(
    [*EVENT_COLUMNS, *(pa.field(name, pa.float64()) for name in FEATURE_NAMES)]
)
SCORE_COLUMNS = [
    pa.field("fraud_score", pa.float64()),
    pa.field("model_version", pa.string()),
    pa.field("decision", pa.string()),
    pa.field("reason_codes", pa.list_(pa.string())),
    # The shadow challenger's (model.challenger_path): always in the schema, null without one,
    # so starting or stopping a challenger never changes the table's schema (Delta refuses an
    # append with new columns: autoMerge is off). A lake created before these two columns
    # needs them added once (README: "Shadow challenger").
    pa.field("challenger_score", pa.float64()),
    pa.field("challenger_version", pa.string()),
]
CHALLENGER_COLUMNS = ("challenger_score", "challenger_version")
SCORED_TRANSACTION_TABLE = pa.schema([*TRANSACTION_TABLE, *SCORE_COLUMNS])
DEAD_LETTER_TABLE = pa.schema(
    [
        pa.field("reason", pa.string()),
        pa.field("field", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("raw_payload", pa.binary()),
        *_fields(SOURCE_FIELDS),
        pa.field("arrival_date", pa.date32()),
    ]
)


def _day(moment: datetime | None) -> date | None:
    return None if moment is None else moment.date()


def _null_for_nan(column: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray:
    return pc.if_else(pc.is_nan(column), pa.scalar(None, kind), column)


def event_table(
    rows: list[dict[str, Any]],
    schema: pa.Schema,
    collected: CollectedBatch | None = None,
    features: np.ndarray | None = None,
    columns: Mapping[str, Sequence[Any]] | None = None,
) -> pa.Table:
    """Rows of an event table -> an Arrow table of `schema` (event_date filled in).

    A feature without history is NaN in the feature code and null in the lake, as SQL expects.
    Each column is built the cheapest way it is known (ADR 0026): given the batch the rows were
    collected in, the columns they hold as parsed are gathered from its Arrow table; given the
    rows' feature matrix (`FEATURE_NAMES` order, the one they were scored from), the features
    are its columns; `columns` gives others as a value per row (the scores, ADR 0045); the
    rest, and everything without those, Arrow reads from the rows (`from_pylist`, keys not in
    the schema ignored).
    """
    given = {} if columns is None else {n: v for n, v in columns.items() if n in schema.names}
    taken: dict[str, Any] = {}
    if collected is not None:
        taken = collected.take(rows, [f for f in schema if f.name in PARSED_EVENT_COLUMNS])
    in_matrix = {}
    if features is not None:
        in_matrix = {name: j for j, name in enumerate(FEATURE_NAMES) if name in schema.names}
    from_rows = [
        field
        for field in schema
        if field.name not in taken
        and field.name not in in_matrix
        and field.name not in given
        and field.name != "event_date"
    ]
    read = pa.Table.from_pylist(rows, schema=pa.schema(from_rows))
    arrays = []
    for field in schema:
        if field.name == "event_date":
            column = pa.array([_day(row["event_time"]) for row in rows], pa.date32())
        elif field.name in in_matrix:
            assert features is not None
            values = features[:, in_matrix[field.name]]
            column = pa.array(values, field.type, mask=np.isnan(values))
        else:
            if field.name in given:
                column = pa.chunked_array([pa.array(given[field.name], field.type)])
            else:
                column = taken[field.name] if field.name in taken else read.column(field.name)
            if pa.types.is_floating(field.type):
                column = _null_for_nan(column, field.type)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)


def dead_letter_table(rows: list[dict[str, Any]]) -> pa.Table:
    renamed = {
        "reason": "dead_letter_reason",
        "field": "dead_letter_field",
        "detail": "dead_letter_detail",
        "raw_payload": "raw_payload_masked",
    }
    columns: dict[str, list[Any]] = {name: [] for name in DEAD_LETTER_TABLE.names}
    for row in rows:
        for name in DEAD_LETTER_TABLE.names:
            if name == "arrival_date":
                columns[name].append(_day(row["approximateArrivalTimestamp"]))
            else:
                columns[name].append(row.get(renamed.get(name, name)))
    return pa.Table.from_pydict(columns, schema=DEAD_LETTER_TABLE)
