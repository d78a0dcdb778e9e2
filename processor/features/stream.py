"""Features in the stream: route each event to its entities, run the stateful operator, and
merge a transaction's card and terminal halves back into one row inside foreachBatch.

A transaction is routed twice (its card and its terminal); both halves come out of the operator
in the same micro-batch as their input row, so the merge is a plain batch join on
`transaction_id`, no streaming join needed. Auth events go to the card, chargebacks to the
terminal, dead letters through a key of their own that holds no state.

Every column that passes through a Python stateful operator is converted per key (a group is one
or two rows), so the operator gets only the columns the features read plus the whole parsed row
packed into one JSON string, which the merge unpacks again (exactly: microsecond timestamps,
base64 binary, shortest round-trip doubles).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, StringType, StructField, StructType

from ml_model.features import CARD_PART, TERMINAL_FEATURES
from ml_model.features.events import FEATURE_INPUTS
from processor.features.processors import (
    OUTPUT_SCHEMA,
    PACKED,
    STATE_SCHEMA,
    PandasFeatureProcessor,
    RowFeatureProcessor,
    apply_in_pandas_with_state,
)
from processor.parse import PARSED_SCHEMA

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

StateApi = Literal["pandas", "row", "group_state"]

# The columns ml_model.features.from_row reads (event ids included); nothing else enters Python.
# to_json / from_json keep microseconds only with an explicit pattern (the default has millis).
PACK_OPTIONS = {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"}
ROUTED_SCHEMA = StructType(
    [
        *(PARSED_SCHEMA[name] for name in FEATURE_INPUTS),
        PARSED_SCHEMA["watermark_time"],
        StructField(PACKED, StringType(), True),
        StructField("entity", StringType(), True),
        StructField("primary", BooleanType(), True),
    ]
)
FEATURED_SCHEMA = OUTPUT_SCHEMA


def _role(prefix: str, key: Column, primary: bool) -> Column:
    return F.struct(
        F.concat(F.lit(prefix + "|"), key).alias("entity"), F.lit(primary).alias("primary")
    )


def pack() -> Column:
    """The whole parsed row as one string column."""
    return F.to_json(F.struct(*PARSED_SCHEMA.fieldNames()), PACK_OPTIONS).alias(PACKED)


def unpack(featured: DataFrame) -> DataFrame:
    """The operator's output -> the parsed columns again, then `primary` and the features."""
    row = F.from_json(F.col(PACKED), PARSED_SCHEMA, PACK_OPTIONS).alias("_row")
    features = [name for name in OUTPUT_SCHEMA.fieldNames() if name != PACKED]
    return featured.select(row, *features).select("_row.*", *features)


def route_to_entities(parsed: DataFrame) -> DataFrame:
    """One row per (event, entity whose state it updates); `primary` marks the row to keep."""
    event_type = F.col("event_type")
    card, terminal = F.col("card_token"), F.col("terminal_id")
    roles = (
        F.when(
            F.col("dead_letter_reason").isNotNull(),
            F.array(_role("none", F.col("dedupe_key"), True)),
        )
        .when(
            event_type == "transaction",
            F.array(_role("card", card, True), _role("terminal", terminal, False)),
        )
        .when(event_type == "auth", F.array(_role("card", card, True)))
        .otherwise(F.array(_role("terminal", terminal, True)))
    )
    # watermark_time rides along (unused in Python) so the operator still sees the watermark.
    carried = [*FEATURE_INPUTS, "watermark_time"]
    return parsed.select(*carried, pack(), F.explode(roles).alias("_role")).select(
        *carried, PACKED, "_role.entity", "_role.primary"
    )


def with_features(parsed: DataFrame, api: StateApi = "pandas") -> DataFrame:
    """Parsed (deduplicated, watermarked) rows -> (packed row, role, features) per entity row."""
    grouped = route_to_entities(parsed).groupBy("entity")
    if api == "group_state":
        return grouped.applyInPandasWithState(
            apply_in_pandas_with_state,
            outputStructType=OUTPUT_SCHEMA,
            stateStructType=STATE_SCHEMA,
            outputMode="Append",
            timeoutConf="EventTimeTimeout",
        )
    if api == "row":
        return grouped.transformWithState(
            statefulProcessor=RowFeatureProcessor(),
            outputStructType=OUTPUT_SCHEMA,
            outputMode="Append",
            timeMode="EventTime",
        )
    return grouped.transformWithStateInPandas(
        statefulProcessor=PandasFeatureProcessor(),
        outputStructType=OUTPUT_SCHEMA,
        outputMode="Append",
        timeMode="EventTime",
    )


def merge_feature_parts(batch: DataFrame) -> DataFrame:
    """A micro-batch of the operator's output -> one row per event, with all its features."""
    rows = unpack(batch)
    primary = rows.where(F.col("primary"))
    terminal_half = rows.where(~F.col("primary") & (F.col("event_type") == "transaction")).select(
        "transaction_id", *TERMINAL_FEATURES
    )
    transactions = (
        primary.where(F.col("event_type") == "transaction")
        .drop(*TERMINAL_FEATURES)
        .join(terminal_half, "transaction_id", "left")
    )
    others = primary.where(F.col("event_type").isNull() | (F.col("event_type") != "transaction"))
    columns = [*PARSED_SCHEMA.fieldNames(), *CARD_PART, *TERMINAL_FEATURES]
    return transactions.select(*columns).unionByName(others.select(*columns))
