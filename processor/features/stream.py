"""Features in the stream: route each event to its entities, run the stateful operator, and
merge a transaction's card and terminal halves back into one row inside foreachBatch.

A transaction is routed twice (its card and its terminal); both halves come out of the operator
in the same micro-batch as their input row, so the merge is a plain batch join on
`transaction_id`, no streaming join needed. Auth events go to the card, chargebacks to the
terminal, dead letters through a key of their own that holds no state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, DoubleType, StringType, StructField, StructType

from ml_model.features import CARD_PART, FEATURE_NAMES, TERMINAL_FEATURES
from processor.features.processors import (
    STATE_SCHEMA,
    PandasFeatureProcessor,
    RowFeatureProcessor,
    apply_in_pandas_with_state,
)
from processor.parse import PARSED_SCHEMA

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

StateApi = Literal["pandas", "row", "group_state"]

ROUTED_SCHEMA = StructType(
    [
        *PARSED_SCHEMA.fields,
        StructField("entity", StringType(), True),
        StructField("primary", BooleanType(), True),
    ]
)
FEATURED_SCHEMA = StructType(
    [*ROUTED_SCHEMA.fields, *(StructField(name, DoubleType(), True) for name in FEATURE_NAMES)]
)


def _role(prefix: str, key: Column, primary: bool) -> Column:
    return F.struct(
        F.concat(F.lit(prefix + "|"), key).alias("entity"), F.lit(primary).alias("primary")
    )


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
    return parsed.withColumn("_role", F.explode(roles)).select(
        *PARSED_SCHEMA.fieldNames(), "_role.entity", "_role.primary"
    )


def with_features(parsed: DataFrame, api: StateApi = "pandas") -> DataFrame:
    """Parsed (deduplicated, watermarked) rows -> rows with the features of their entity."""
    grouped = route_to_entities(parsed).groupBy("entity")
    if api == "group_state":
        return grouped.applyInPandasWithState(
            apply_in_pandas_with_state,
            outputStructType=FEATURED_SCHEMA,
            stateStructType=STATE_SCHEMA,
            outputMode="Append",
            timeoutConf="EventTimeTimeout",
        )
    if api == "row":
        return grouped.transformWithState(
            statefulProcessor=RowFeatureProcessor(),
            outputStructType=FEATURED_SCHEMA,
            outputMode="Append",
            timeMode="EventTime",
        )
    return grouped.transformWithStateInPandas(
        statefulProcessor=PandasFeatureProcessor(),
        outputStructType=FEATURED_SCHEMA,
        outputMode="Append",
        timeMode="EventTime",
    )


def merge_feature_parts(batch: DataFrame) -> DataFrame:
    """A micro-batch of the operator's output -> one row per event, with all its features."""
    primary = batch.where(F.col("primary"))
    terminal_half = batch.where(~F.col("primary") & (F.col("event_type") == "transaction")).select(
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
