"""Delta sinks, written once per micro-batch with Delta's idempotent-write options.

Every table write carries `txnAppId` (stable per query) and `txnVersion` (the batch id): when
a batch is replayed after a crash, Delta skips the writes it already committed, so at-least-once
delivery gives exactly-once tables.

The writer id comes from the query id that Spark stores in the checkpoint's `metadata` file when
it creates the checkpoint, not from the checkpoint's path: a reset (the folder deleted, or a new
one) starts again at batch 0 under a new id, so Delta cannot mistake its batches for ones it
already has and skip them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from processor.late import ThresholdStore, advance
from processor.parse import EVENT_SCHEMA, dead_letters, valid_events

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

logger = logging.getLogger(__name__)

TABLES = ("transactions", "auth_events", "labels", "dead_letters")
BatchSink = Callable[["DataFrame", int], None]


def table_path(lake_path: str, table: str) -> str:
    return f"{lake_path.rstrip('/')}/{table}"


def app_id(query_id: str, table: str) -> str:
    """A writer id that is stable for one query (the id in its checkpoint) and one table."""
    return f"fraud-processor-{query_id}-{table}"


def checkpoint_query_id(spark: SparkSession, checkpoint_location: str) -> str:
    """The query id in `<checkpoint>/metadata`, read through Hadoop (local, s3a:// alike).

    Spark writes the file before the first batch and never changes it, so the id is the same
    for every restart on one checkpoint and new after a reset.
    """
    jvm = spark._jvm  # noqa: SLF001 - the Hadoop FileSystem API has no Python binding
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(f"{checkpoint_location.rstrip('/')}/metadata")
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())  # noqa: SLF001
    stream = fs.open(path)
    try:
        text = jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()
    return str(json.loads(text.splitlines()[0])["id"])


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
    late: int = 0  # of the dead letters, those older than the watermark
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
    # The checkpoint's query id (read at the first batch); names this query's Delta writes.
    query_id: str | None = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        if self.query_id is None:
            self.query_id = checkpoint_query_id(batch.sparkSession, self.checkpoint_location)
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
            late = 0
            # One job counts every table's rows (and the late dead letters among them); empty
            # tables are then not written at all.
            is_late = F.coalesce(F.col("dead_letter_reason") == "late", F.lit(False))
            for row in batch.groupBy(_table_of_row(), is_late.alias("late")).count().collect():
                counts[row[0]] += row[2]
                late += row[2] if row[1] else 0
            # Alerts first: they are idempotent (keyed by transaction id), so if the lake commit
            # then fails, the replay rewrites the same items; the other way round, an outage of
            # the alert table would leave ALERT rows in the lake with no alert behind them.
            if counts["transactions"]:
                for sink in self.transaction_sinks:
                    sink(transactions, batch_id)
            for table, frame in frames.items():
                if counts[table]:
                    partition = "arrival_date" if table == "dead_letters" else "event_date"
                    write_delta(
                        frame,
                        table_path(self.lake_path, table),
                        partition,
                        app_id(self.query_id, table),
                        batch_id,
                    )
            if self.thresholds is not None:
                # From what batch N-1 left, never from this batch's own earlier attempt.
                largest = batch.agg(F.max(F.unix_millis("watermark_time")).alias("m")).first()
                before = self.thresholds.read(as_of=batch_id - 1)
                moment = None if largest is None else largest["m"]
                self.thresholds.write(advance(before, moment, self.watermark_delay_ms), batch_id)
        finally:
            if self.score is not None and transactions is not None:
                transactions.unpersist()
            batch.unpersist()
            if raw is not None:
                raw.unpersist()
        self.stats.batch_id = batch_id
        self.stats.counts = counts
        self.stats.late = late
        for table, count in counts.items():
            self.stats.totals[table] = self.stats.totals.get(table, 0) + count
        logger.debug("batch %d wrote %s", batch_id, counts)
