"""The sink takes each batch from the driver's spool instead of collecting it (ADR 0048)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from config.settings import Settings
from processor.job import ingest, lake_writer, write
from processor.kinesis_source.spool import BatchSpool
from processor.sinks import TABLES, LakeWriter, table_path
from tests.test_processor_job import produce

pytestmark = [pytest.mark.integration]


class SpoolWithHoles(BatchSpool):
    """A spool without the batches whose take is numbered in `missing` (1 = the first)."""

    def __init__(self, directory: Path, missing: set[int]) -> None:
        super().__init__(directory)
        self.missing = missing
        self.takes = 0

    def take(self, offset: Mapping[str, Any]) -> list[pa.RecordBatch] | None:
        self.takes += 1
        return None if self.takes in self.missing else super().take(offset)


def run(spark: Any, settings: Settings, spool: BatchSpool | None) -> tuple[LakeWriter, list[bool]]:
    """The stream drained in batches of at most 150 records a shard; whether each data batch
    came from the spool."""
    writer = lake_writer(settings)
    writer.spool = spool
    spooled: list[bool] = []

    def sink(batch: Any, batch_id: int) -> None:
        writer(batch, batch_id)
        if writer.stats.rows_in:
            spooled.append(writer.stats.spooled)

    extra = {"maxRecordsPerShard": "150", "firstBatchRecordsPerShard": "50"}
    query = write(ingest(spark, settings, extra, spool), settings, sink, True)
    query.awaitTermination()
    assert query.exception() is None
    return writer, spooled


def lake_rows(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, each as a tuple of its values in column order, sorted."""
    rows = {}
    for table in TABLES:
        path = table_path(settings.processor.lake_path, table)
        if Path(path).exists():
            data = DeltaTable(path).to_pyarrow_table().to_pylist()
            rows[table] = sorted(tuple(map(repr, row.values())) for row in data)
    return rows


def test_spooled_batches_write_what_collected_ones_do(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """The same stream through the spool (but for its third batch, which has no file and is
    collected from Spark) and through Spark alone: the same rows in every table, features,
    dead letters and duplicates included."""
    produce(settings, 1_200, seed=21, fraud_rate=0.02, anomaly_rate=0.04)
    spool = SpoolWithHoles(tmp_path / "spool", missing={3})
    writer, spooled = run(spark, settings, spool)
    assert len(spooled) >= 4
    assert spooled == [index != 2 for index in range(len(spooled))]
    assert writer.stats.totals["dead_letters"] > 0

    alone = settings.with_overrides(
        processor={
            "lake_path": str(tmp_path / "lake-collected"),
            "checkpoint_location": str(tmp_path / "checkpoints-collected"),
        }
    )
    collected_writer, collected = run(spark, alone, None)
    assert collected == [False] * len(spooled)
    assert collected_writer.stats.totals == writer.stats.totals
    assert lake_rows(settings) == lake_rows(alone)
