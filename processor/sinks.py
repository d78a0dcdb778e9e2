"""Delta sinks, written once per micro-batch with Delta's idempotent-write options.

Every table write carries `txnAppId` (stable per query) and `txnVersion` (the batch id): when
a batch is replayed after a crash, Delta skips the writes it already committed, so at-least-once
delivery gives exactly-once tables.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from processor.late import ThresholdStore, advance
from processor.parse import EVENT_SCHEMA, dead_letters, valid_events

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

logger = logging.getLogger(__name__)

TABLES = ("transactions", "auth_events", "labels", "dead_letters")
BatchSink = Callable[["DataFrame", int], None]


def table_path(lake_path: str, table: str) -> str:
    return f"{lake_path.rstrip('/')}/{table}"


def app_id(checkpoint_location: str, table: str) -> str:
    """A writer id that is stable for one query (its checkpoint) and one table."""
    digest = hashlib.sha256(checkpoint_location.encode()).hexdigest()[:16]
    return f"fraud-processor-{digest}-{table}"


def write_delta(frame: DataFrame, path: str, partition: str, writer_id: str, batch_id: int) -> None:
    (
        frame.write.format("delta")
        .mode("append")
        .partitionBy(partition)
        .option("txnAppId", writer_id)
        .option("txnVersion", batch_id)
        .save(path)
    )


def _table_of_row() -> Column:
    """The table a parsed row belongs to (the same split as LakeWriter's frames)."""
    return (
        F.when(F.col("dead_letter_reason").isNotNull(), "dead_letters")
        .when(F.col("event_type") == "transaction", "transactions")
        .when(F.col("event_type") == "auth", "auth_events")
        .otherwise("labels")
        .alias("table")
    )


@dataclass
class BatchCounts:
    """What the last batch wrote; the metrics listener reads it."""

    batch_id: int = -1
    counts: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)


@dataclass
class LakeWriter:
    """The foreachBatch function: splits a batch into the lake's tables, scores transactions.

    With features on, a batch holds the stateful operator's output: `prepare` merges it back
    into one row per event, the transactions table keeps `transaction_columns` (features) and
    `score` adds the score columns; `transaction_sinks` (the DynamoDB alerts) then get the very
    rows the transactions table got, scored once.
    """

    lake_path: str
    checkpoint_location: str
    stats: BatchCounts = field(default_factory=BatchCounts)
    prepare: Callable[[DataFrame], DataFrame] | None = None
    transaction_columns: tuple[str, ...] = ()
    score: Callable[[DataFrame], DataFrame] | None = None
    transaction_sinks: list[BatchSink] = field(default_factory=list)
    # Where the next batch's late threshold is recorded (processor/late.py); None: not tracked.
    thresholds: ThresholdStore | None = None
    watermark_delay_ms: int = 0

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        raw: DataFrame | None = None
        if self.prepare is not None:
            # The operator's output feeds several actions: compute it (and its state) once.
            raw = batch.persist()
            batch = self.prepare(raw)
        batch = batch.persist()
        transactions: DataFrame | None = None
        try:
            events = valid_events(batch, self.transaction_columns)
            plain = events.select(*EVENT_SCHEMA.fieldNames())
            transactions = events.where(F.col("event_type") == "transaction")
            if self.score is not None:
                transactions = self.score(transactions).persist()
            frames = {
                "transactions": transactions,
                "auth_events": plain.where(F.col("event_type") == "auth"),
                "labels": plain.where(F.col("event_type") == "chargeback"),
                "dead_letters": dead_letters(batch),
            }
            counts = dict.fromkeys(frames, 0)
            # One job counts every table's rows; empty tables are then not written at all.
            for row in batch.groupBy(_table_of_row()).count().collect():
                counts[row[0]] = row[1]
            for table, frame in frames.items():
                if counts[table]:
                    partition = "arrival_date" if table == "dead_letters" else "event_date"
                    write_delta(
                        frame,
                        table_path(self.lake_path, table),
                        partition,
                        app_id(self.checkpoint_location, table),
                        batch_id,
                    )
            if counts["transactions"]:
                for sink in self.transaction_sinks:
                    sink(transactions, batch_id)
            if self.thresholds is not None:
                largest = batch.agg(F.max(F.unix_millis("watermark_time")).alias("m")).first()
                if largest is not None and largest["m"] is not None:
                    state = advance(self.thresholds.read(), largest["m"], self.watermark_delay_ms)
                    self.thresholds.write(state)
        finally:
            if self.score is not None and transactions is not None:
                transactions.unpersist()
            batch.unpersist()
            if raw is not None:
                raw.unpersist()
        self.stats.batch_id = batch_id
        self.stats.counts = counts
        for table, count in counts.items():
            self.stats.totals[table] = self.stats.totals.get(table, 0) + count
        logger.debug("batch %d wrote %s", batch_id, counts)
