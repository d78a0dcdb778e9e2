"""The foreachBatch sink: the engine decides, the model scores, then alerts and Delta writes.

Every table commit (processor/lake_commit.py, delta-rs) carries Delta's transaction entry: a
writer id stable per query and the batch id. When a batch is replayed after a crash, the
commits it already made are skipped, so at-least-once delivery gives exactly-once tables. The
engine reads its state as of the previous batch, so the replay decides and scores exactly as
the first attempt did.

The writer id comes from the query id that Spark stores in the checkpoint's `metadata` file when
it creates the checkpoint, not from the checkpoint's path: a reset (the folder deleted, or a new
one) starts again at batch 0 under a new id, so Delta cannot mistake its batches for ones it
already has and skip them.
"""

from __future__ import annotations

import json
import logging
import operator
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError
from deltalake.exceptions import DeltaError

from config.lake import commit_options_for, delta_uri
from ml_model.features import FEATURE_NAMES, FeatureEvent, from_arrow
from ml_model.scorer import OK
from processor.arrow_collect import collect_converted, spooled_converted
from processor.arrow_rows import CollectedBatch, rows_of
from processor.batch_progress import record_batch
from processor.compaction_lease import compaction_lease
from processor.engine import FeatureEngine
from processor.engine.engine import values_matrix
from processor.engine.ordering import backlogged_shards, batch_source_offset
from processor.hadoop_files import read_text
from processor.heap import HeapKeeper
from processor.kinesis_source.spool import BatchSpool
from processor.lake_commit import commit_batch, compact_table, compaction_due
from processor.lake_tables import (
    CHALLENGER_COLUMNS,
    EVENT_TABLE,
    SCORE_COLUMNS,
    SCORED_TRANSACTION_TABLE,
    TABLES,
    TRANSACTION_TABLE,
    dead_letter_table,
    event_table,
    partition_column,
)
from producer.contract import to_epoch_ms

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

    from config.lake import S3Access
    from processor.scoring import FrameScorer

logger = logging.getLogger(__name__)
T = TypeVar("T")
# The job's compactions take about a second (ADR 0028); a lease the job left when it died
# blocks the daily maintenance this long at most (a restarted job takes it back at once).
JOB_LEASE_SECONDS = 600

__all__ = [
    "TABLES",
    "BatchColumns",
    "BatchCounts",
    "LakeWriter",
    "RowSink",
    "app_id",
    "table_path",
]


@dataclass(frozen=True)
class BatchColumns:
    """What a batch's transaction rows do not carry as keys, as columns in the rows' order:
    their features (`FEATURE_NAMES` columns) and, once scored, their score columns (`_SCORES`
    names -> a value per row; empty when the batch was not scored). Only the rows whose
    decision is ALERT or REVIEW carry their scores as keys too (ADR 0045)."""

    features: np.ndarray
    scores: dict[str, list[Any]] = field(default_factory=dict)


class RowSink(Protocol):
    """A sink of one batch's scored transaction rows (the DynamoDB alerts, the drift monitor)
    and their `BatchColumns`."""

    def __call__(
        self, rows: list[dict[str, Any]], batch_id: int, columns: BatchColumns | None = None, /
    ) -> None: ...


# The score columns, named and ordered as the lake's (score_columns builds them in this order).
_SCORES = tuple(field.name for field in SCORE_COLUMNS)
_FEATURES_OF = operator.itemgetter(*FEATURE_NAMES)


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
    text = read_text(spark, f"{checkpoint_location.rstrip('/')}/metadata")
    return str(json.loads(text.splitlines()[0])["id"])


@dataclass
class BatchCounts:
    """What the last batch wrote and decided; the metrics listener reads it."""

    batch_id: int = -1
    rows_in: int = 0  # the batch's records, as the sink got them
    # Whether they came from the driver's spool (ADR 0048): Spark then read nothing, and its
    # progress counts no input rows.
    spooled: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    late: int = 0  # events behind the watermark (scored and written all the same)
    duplicates: int = 0  # re-sent copies dropped
    watermark_ms: int | None = None
    # Terminal events waiting for a backlogged shard to catch up (processor/engine/ordering.py).
    held: int = 0
    state_bytes: int = 0  # the engine's changelog or snapshot for this batch
    # Entries in the engine's state after the batch, by kind: it lives in driver memory, and
    # the dedupe ids grow with the rate times `dedupe_retention` (README, "Limits").
    state_entries: dict[str, int] = field(default_factory=dict)
    # Where the batch's time went: heap, collect, engine, score, alerts, delta, state (ms).
    timings_ms: dict[str, int] = field(default_factory=dict)
    # Per transaction of the last batch: Kinesis arrival -> the batch's alerts written (ms), the
    # time its alert took or would have taken; replaced each batch.
    arrival_to_alerts_ms: list[int] = field(default_factory=list)
    # Per event of the last batch: Kinesis arrival -> its lake commit (ms); replaced each batch.
    arrival_to_commit_ms: list[int] = field(default_factory=list)
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)  # of the last batch
    # PSI per feature and of the score over the recent window (processor/drift.py).
    psi: dict[str, float] = field(default_factory=dict)


def feature_matrix(rows: list[dict[str, Any]]) -> np.ndarray:
    """The features of rows that carry them as columns, as one float matrix (`FEATURE_NAMES`
    order, None -> NaN), each row's read by one `itemgetter` call. The job's rows do not carry
    them: the engine hands their matrix over (`BatchResult.features`)."""
    return values_matrix(list(map(_FEATURES_OF, rows)), len(FEATURE_NAMES))


def score_columns(
    score: FrameScorer, transaction_ids: list[str], features: np.ndarray
) -> dict[str, list[Any]]:
    """The score columns of a batch's transactions (`_SCORES` names -> a value per
    transaction), from their feature matrix, with one vectorised call.

    The challenger's columns are null unless the scorer shadows one (processor/scoring.py);
    the decision is always the champion's.
    """
    # A copy: the lake's feature columns are read from `features`, whatever the scorer does.
    frame = pd.DataFrame(features, columns=FEATURE_NAMES, copy=True)
    frame.insert(0, "transaction_id", transaction_ids)
    scored = score(frame)
    values = np.asarray(scored["fraud_score"], dtype=float).tolist()
    reasons = [[] if codes is None else list(codes) for codes in scored["reason_codes"]]
    columns = [values, scored["model_version"].tolist(), scored["decision"].tolist(), reasons]
    if all(name in scored.columns for name in CHALLENGER_COLUMNS):
        shadow, versions = (scored[name].tolist() for name in CHALLENGER_COLUMNS)
        columns.append([None if v is None or v != v else float(v) for v in shadow])
        columns.append([None if v is None or pd.isna(v) else str(v) for v in versions])
    else:
        columns += [[None] * len(transaction_ids)] * 2
    return dict(zip(_SCORES, columns, strict=True))


def score_rows(
    score: FrameScorer, rows: list[dict[str, Any]], features: np.ndarray | None = None
) -> None:
    """Add the score columns to transaction rows (`score_columns`), for rows that go on as
    dicts whole (tests, tools); the job keeps them as columns. The frame is built from
    `features` (without it, read from the rows' keys by `feature_matrix`); the scores go back
    one `dict.update` per row: per-row pandas access cost more than the model itself, and a
    Python loop per score more than the rest (docs/benchmarks.md).
    """
    if features is None:
        features = feature_matrix(rows)
    columns = score_columns(score, [row["transaction_id"] for row in rows], features)
    for row, scores in zip(rows, zip(*columns.values(), strict=True), strict=True):
        row.update(zip(columns, scores, strict=True))


def _scores_into_acted_on_rows(rows: list[dict[str, Any]], scores: dict[str, list[Any]]) -> None:
    """Give the rows someone acts on (decision ALERT or REVIEW) their score columns as keys:
    the alerts are written from them. The others' scores stay in the columns only, which the
    lake and the drift monitor read."""
    for position, decision in enumerate(scores["decision"]):
        if decision != OK:
            rows[position].update((name, column[position]) for name, column in scores.items())


def _write_table(
    arrow: pa.Table,
    uri: str,
    table: str,
    writer_id: str,
    batch_id: int,
    options: dict[str, str] | None,
) -> int | None:
    return commit_batch(uri, arrow, partition_column(table), writer_id, batch_id, options)


def _compact_table(
    uri: str, options: dict[str, str] | None, aws: S3Access | None, holder: str
) -> bool:
    """Compact a table after the batch has landed, holding its compaction lease; False when
    someone else (the daily maintenance) holds it, so the next batch asks again.

    A failure (delta-rs's, or the storage's) is logged, not raised: the batch is already whole,
    and the next interval tries again."""
    try:
        with compaction_lease(uri, holder, aws, JOB_LEASE_SECONDS) as lease:
            if not lease.taken:
                logger.info("%s: %s is compacting it; the next batch asks again", uri,
                            lease.holder or "another holder")  # fmt: skip
                return False
            began = time.perf_counter()
            metrics = compact_table(uri, options)
            logger.info("%s: compacted %s files into %s in %.0f ms", uri,
                        metrics.get("numFilesRemoved", 0), metrics.get("numFilesAdded", 0),
                        (time.perf_counter() - began) * 1000)  # fmt: skip
    except (DeltaError, OSError, BotoCoreError, ClientError) as error:
        logger.warning("%s: compaction failed, the next interval retries: %s", uri, error)
    return True


def _rows_and_events(
    batch: pa.RecordBatch,
) -> tuple[list[dict[str, Any]], list[FeatureEvent | None]]:
    return rows_of(batch), from_arrow(batch)


class _Stopwatch:
    def __init__(self) -> None:
        self.laps: dict[str, int] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = int((now - self._last) * 1000)
        self._last = now


@dataclass
class LakeWriter:
    """The foreachBatch function: engine, scores, alerts, then the four Delta tables.

    Alerts are written before the lake: they are idempotent (keyed by transaction id), so if the
    lake commit then fails, the replay rewrites the same items; the other way round, an outage of
    the alert table would leave ALERT rows in the lake with no alert behind them. The engine's
    state (its changelog) is saved last; a big batch's is written by a forked child while the
    scores, alerts and tables are, and the batch ends only once it has landed. A replay of the
    batch reads the state the batch before left, never this one's (processor/engine/state.py).
    """

    lake_path: str
    checkpoint_location: str
    engine: FeatureEngine
    stats: BatchCounts = field(default_factory=BatchCounts)
    score: FrameScorer | None = None
    transaction_sinks: list[RowSink] = field(default_factory=list)
    # The checkpoint's query id (read at the first batch); names this query's Delta writes.
    query_id: str | None = None
    # Called after each side effect ("alerts", "delta", "state") with the batch id; tests use
    # it to crash a batch at an exact step and replay it.
    after_step: Callable[[str, int], None] | None = None
    heap: HeapKeeper = field(default_factory=HeapKeeper)
    # The driver spool the query's source writes each batch's parsed records to (ADR 0048); a
    # batch found there is not collected from Spark.
    spool: BatchSpool | None = None
    _compactor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="delta-compact"),
        init=False,
        repr=False,
    )
    _compaction: Future[list[bool]] | None = field(default=None, init=False, repr=False)
    # The tables the running compaction covers.
    _compacting: list[str] = field(default_factory=list, init=False, repr=False)
    # Tables to compact when no compaction runs: due at an interval while one ran, or refused
    # (the maintenance held the lease); the next batch that finds none running starts them.
    _due: set[str] = field(default_factory=set, init=False, repr=False)

    def _done(self, step: str, batch_id: int) -> None:
        if self.after_step is not None:
            self.after_step(step, batch_id)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        clock = _Stopwatch()
        with self.heap.during_batch():
            clock.lap("heap")
            self._write_batch(batch, batch_id, clock)

    def _write_batch(self, batch: DataFrame, batch_id: int, clock: _Stopwatch) -> None:
        spark = batch.sparkSession
        if self.query_id is None:
            self.query_id = checkpoint_query_id(spark, self.checkpoint_location)
        offset = batch_source_offset(self.engine.store.files, batch_id)
        spooled = None if self.spool is None or offset is None else self.spool.take(offset)
        if spooled is not None:  # the source's parsed records, without Spark (ADR 0048)
            table, parts = spooled_converted(batch, spooled, _rows_and_events)
        else:  # each record batch becomes rows and feature events as it arrives (ADR 0043)
            table, parts = collect_converted(batch, _rows_and_events)
        rows = [row for part_rows, _ in parts for row in part_rows]
        events = [event for _, part_events in parts for event in part_events]
        collected = CollectedBatch(table, rows)
        clock.lap("collect")
        backlogged = backlogged_shards(offset)
        result = self.engine.process(rows, batch_id, backlogged, events)
        self.engine.start_commit()  # the state's changelog is written while the sinks run
        clock.lap("engine")
        transactions, features = result.transactions, result.features
        schema = TRANSACTION_TABLE
        scores: dict[str, list[Any]] = {}
        if self.score is not None and transactions:
            ids = [row["transaction_id"] for row in transactions]
            scores = score_columns(self.score, ids, features)
            _scores_into_acted_on_rows(transactions, scores)
            schema = SCORED_TRANSACTION_TABLE
        clock.lap("score")
        tables: dict[str, pa.Table] = {
            "transactions": event_table(transactions, schema, collected, features, scores),
            "auth_events": event_table(result.auth_events, EVENT_TABLE, collected),
            "labels": event_table(result.labels, EVENT_TABLE, collected),
            "dead_letters": dead_letter_table(result.dead_letters),
        }
        clock.lap("tables")
        if transactions:
            for sink in self.transaction_sinks:
                sink(transactions, batch_id, BatchColumns(features, scores))
        alerted_ms = int(time.time() * 1000)
        written = (*transactions, *result.auth_events, *result.labels)  # transactions first
        arrivals = [to_epoch_ms(row["approximateArrivalTimestamp"]) for row in written]
        self.stats.arrival_to_alerts_ms = [alerted_ms - ms for ms in arrivals[: len(transactions)]]
        clock.lap("alerts")
        self._done("alerts", batch_id)
        versions = self._write_tables(tables, batch_id)
        clock.lap("delta")
        self._done("delta", batch_id)
        committed_ms = int(time.time() * 1000)
        self.stats.arrival_to_commit_ms = [committed_ms - ms for ms in arrivals]
        state_bytes = self.engine.commit()
        clock.lap("state")
        self._done("state", batch_id)
        self._start_compaction(versions)
        counts = {table: arrow.num_rows for table, arrow in tables.items()}
        self.stats.batch_id = batch_id
        self.stats.rows_in = len(rows)
        self.stats.spooled = spooled is not None
        self.stats.counts = counts
        self.stats.late = result.late
        self.stats.duplicates = result.duplicates
        self.stats.watermark_ms = result.watermark_ms
        self.stats.held = result.held
        self.stats.state_bytes = state_bytes
        self.stats.state_entries = self.engine.state_entries()
        self.stats.timings_ms = clock.laps
        self.stats.dead_letter_reasons = dict(
            Counter(str(row["dead_letter_reason"]) for row in result.dead_letters)
        )
        for table, count in counts.items():
            self.stats.totals[table] = self.stats.totals.get(table, 0) + count
        # For the run report, which reads it after the job has ended (processor/batch_progress).
        record_batch(self.engine.store.files, batch_id, len(rows), self.stats)
        logger.debug("batch %d wrote %s", batch_id, counts)

    def _write_tables(self, tables: dict[str, pa.Table], batch_id: int) -> dict[str, int | None]:
        """The non-empty tables, each its own Delta commit with delta-rs from the driver's
        Arrow tables, at the same time (delta-rs works outside the GIL); the version each made
        (None: committed before).

        About 0.1 s for all four of a 20k batch (ADR 0016). Each is idempotent on its own
        (processor/lake_commit.py); a failure of any fails the batch, which is then replayed.
        The lake is reached with the profile's AWS settings, which the state store holds too.
        """
        assert self.query_id is not None
        aws = self.engine.store.files
        jobs = {}
        for table, arrow in tables.items():
            if arrow.num_rows:
                uri = delta_uri(self.lake_path, table)
                jobs[table] = (arrow, uri, table, app_id(self.query_id, table), batch_id,
                               commit_options_for(uri, aws))  # fmt: skip
        return dict(zip(jobs, _at_once(_write_table, list(jobs.values())), strict=True))

    def _start_compaction(self, versions: dict[str, int | None]) -> None:
        """Compact the tables whose commit this batch reached the interval (ADR 0028), and
        those still due, on a thread of its own, one table after another. The next batches
        commit beside it (delta-rs lands a blind append and a compaction both, ADR 0031): a
        batch that waited for it held back every event behind it. One compaction at a time;
        tables due while one runs are started by the first batch that finds it ended."""
        aws = self.engine.store.files
        due = (table for table, version in versions.items() if compaction_due(version))
        self._due |= {delta_uri(self.lake_path, table) for table in due}
        if self._compaction is not None:
            if not self._compaction.done():
                return
            self.wait_for_compaction()
        if self._due:
            self._compacting, self._due = sorted(self._due), set()
            holder = f"processor.job query {self.query_id}"
            jobs = [(uri, commit_options_for(uri, aws), aws, holder) for uri in self._compacting]
            self._compaction = self._compactor.submit(_one_by_one, _compact_table, jobs)

    def wait_for_compaction(self) -> None:
        """Return once the running compaction (if any) has ended; tables it was refused stay
        due. The job calls it before it exits, so no compaction is cut short."""
        compaction, self._compaction = self._compaction, None
        if compaction is not None:
            done = compaction.result()
            self._due |= {uri for uri, ok in zip(self._compacting, done, strict=True) if not ok}


def _one_by_one(call: Callable[..., T], jobs: list[tuple[Any, ...]]) -> list[T]:
    """`call(*args)` for each of `jobs` in turn: a compaction takes one core at most, the
    batches running beside it the other."""
    return [call(*args) for args in jobs]


def _at_once(call: Callable[..., T], jobs: list[tuple[Any, ...]]) -> list[T]:
    """`call(*args)` for each of `jobs`, in threads when there are several (delta-rs releases
    the GIL); the first failure is raised."""
    if len(jobs) <= 1:
        return [call(*args) for args in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="delta") as pool:
        futures = [pool.submit(call, *args) for args in jobs]
        return [future.result() for future in futures]
