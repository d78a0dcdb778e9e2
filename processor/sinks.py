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
from processor.parse import dead_letters, valid_events

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
    """The foreachBatch function: splits a parsed batch into the lake's tables."""

    lake_path: str
    checkpoint_location: str
    extra_sinks: list[BatchSink] = field(default_factory=list)
    stats: BatchCounts = field(default_factory=BatchCounts)
    # Optional step between parsing and the transactions table (issue 4 adds scoring here).
    enrich_transactions: Callable[[DataFrame], DataFrame] | None = None
    # Where the next batch's late threshold is recorded (processor/late.py); None: not tracked.
    thresholds: ThresholdStore | None = None
    watermark_delay_ms: int = 0

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        batch = batch.persist()
        try:
            events = valid_events(batch)
            frames = {
                "transactions": events.where(F.col("event_type") == "transaction"),
                "auth_events": events.where(F.col("event_type") == "auth"),
                "labels": events.where(F.col("event_type") == "chargeback"),
                "dead_letters": dead_letters(batch),
            }
            if self.enrich_transactions is not None:
                frames["transactions"] = self.enrich_transactions(frames["transactions"])
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
            for sink in self.extra_sinks:
                sink(batch, batch_id)
            if self.thresholds is not None:
                largest = batch.agg(F.max(F.unix_millis("watermark_time")).alias("m")).first()
                if largest is not None and largest["m"] is not None:
                    state = advance(self.thresholds.read(), largest["m"], self.watermark_delay_ms)
                    self.thresholds.write(state)
        finally:
            batch.unpersist()
        self.stats.batch_id = batch_id
        self.stats.counts = counts
        for table, count in counts.items():
            self.stats.totals[table] = self.stats.totals.get(table, 0) + count
        logger.debug("batch %d wrote %s", batch_id, counts)
