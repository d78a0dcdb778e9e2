"""Start Spark's Python workers while the query starts, not in its first batch's tasks.

A Python worker that Spark forks for a task imports pyspark, pyarrow and the parse step before
it reads a record: the first batch's first tasks ran 3.1-3.2 s against 0.8 s for the same work
in an already started worker (docs/benchmarks.md). Spark reuses idle workers
(`spark.python.worker.reuse`, on by default), so a tiny job that runs one task per core, each
importing what the source's tasks import, leaves them started for the first batch. It runs on
a background thread from `processor.job.ingest`, while Spark looks up and plans the source
one Python process at a time (docs/benchmarks.md: the first batch 0.9-1.2 s sooner than when
it started with the query). Only for a query without a driver spool: with one, no batch runs
tasks but a replay after a restart, which starts the workers itself (ADR 0048).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)


def _import_the_parse_step(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    import processor.kinesis_source.reader  # noqa: F401 - imported for the tasks that follow
    import processor.parse  # noqa: F401

    yield from batches


def _run(spark: SparkSession, cores: int) -> None:
    try:
        spark.range(cores, numPartitions=cores).mapInArrow(
            _import_the_parse_step, "id long"
        ).collect()
    except Exception as exc:  # noqa: BLE001 - only a head start: the batch starts them itself
        logger.warning("Python workers not started ahead of the first batch: %s", exc)


def start_python_workers(spark: SparkSession) -> threading.Thread:
    """Start one Python worker per core in the background; returns the thread doing it."""
    cores = spark.sparkContext.defaultParallelism
    thread = threading.Thread(
        target=_run, args=(spark, cores), name="start-python-workers", daemon=True
    )
    thread.start()
    return thread
