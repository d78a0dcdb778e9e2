"""The streamed collect: toArrow()'s table, and each record batch converted as it arrives."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from processor.arrow_collect import collect_converted
from processor.arrow_rows import rows_of


def _frame(spark: SparkSession, rows: int, partitions: int) -> DataFrame:
    return spark.range(0, rows, numPartitions=partitions).select(
        F.col("id"),
        (F.col("id") % 7).cast("string").alias("shard"),
        F.timestamp_seconds(F.col("id") * 60).alias("arrival"),
        F.when(F.col("id") % 5 == 0, None).otherwise(F.col("id") / 3).alias("amount"),
    )


def test_the_table_and_its_parts_are_what_to_arrow_gives(spark: SparkSession) -> None:
    frame = _frame(spark, 45_000, 4)  # 11,250 rows a partition: two record batches each
    table, parts = collect_converted(frame, rows_of)
    expected = frame.toArrow()
    assert table.equals(expected)
    assert table.schema == expected.schema
    assert [row for part in parts for row in part] == rows_of(expected)
    assert len(parts) == len(table.to_batches()) == 8


def test_an_empty_frame_gives_an_empty_table_of_its_schema(spark: SparkSession) -> None:
    frame = _frame(spark, 10, 2).where("id < 0")
    table, parts = collect_converted(frame, rows_of)
    assert table.num_rows == 0 and parts == []
    assert table.schema == frame.toArrow().schema


def test_a_batch_is_converted_while_later_partitions_still_run(
    spark: SparkSession, tmp_path: Path
) -> None:
    """Partition 1 waits until the driver has converted partition 0's batch: only a collect that
    converts batches as they arrive lets it go on before its timeout."""
    flag = tmp_path / "converted"
    schema = "id long, waited_s double"

    def wait_in_second_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        waited = 0.0
        if TaskContext.get().partitionId() == 1:  # type: ignore[union-attr]
            began = time.monotonic()
            while not flag.exists() and time.monotonic() - began < 30:
                time.sleep(0.05)
            waited = -1.0 if not flag.exists() else time.monotonic() - began
        for batch in batches:
            ids = batch.column("id")
            yield pa.RecordBatch.from_arrays(
                [ids, pa.array([waited] * len(ids), pa.float64())], ["id", "waited_s"]
            )

    def convert(batch: pa.RecordBatch) -> int:
        flag.touch()
        return batch.num_rows

    # Record batches of 160 KB: Spark's socket buffers a batch smaller than its buffer.
    frame = spark.range(0, 40_000, numPartitions=2).mapInArrow(wait_in_second_partition, schema)
    table, parts = collect_converted(frame, convert)
    assert sum(parts) == table.num_rows == 40_000
    waits = set(table.column("waited_s").to_pylist())
    assert -1.0 not in waits, "partition 1 timed out: nothing was converted before the end"


def test_a_failed_task_fails_the_collect(spark: SparkSession) -> None:
    def fail(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for _ in batches:
            raise ValueError("bad partition")
        yield from ()

    frame = spark.range(0, 100, numPartitions=2).mapInArrow(fail, "id long")
    with pytest.raises(PySparkException, match="bad partition"):
        collect_converted(frame, rows_of)


def test_a_failed_conversion_is_raised_and_the_session_goes_on(spark: SparkSession) -> None:
    def convert(batch: pa.RecordBatch) -> int:
        raise RuntimeError("cannot convert")

    with pytest.raises(RuntimeError, match="cannot convert"):
        collect_converted(_frame(spark, 30_000, 3), convert)
    table, parts = collect_converted(_frame(spark, 100, 2), rows_of)
    assert table.num_rows == 100 == sum(len(part) for part in parts)
