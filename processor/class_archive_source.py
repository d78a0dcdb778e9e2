"""The streaming source of the class archive's workload (processor/class_archive.py): ten rows,
read in one micro-batch, through the same Python data source API as the `kinesis` source.

A module of its own because Spark's Python processes import it by name to run the reader.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadLimit, SupportsTriggerAvailableNow
from pyspark.sql.types import StructType

SOURCE_NAME = "class_archive_rows"
ROWS = 10


class CountingReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    def prepareForTriggerAvailableNow(self) -> None:
        pass  # everything it has is there from the start

    def initialOffset(self) -> dict[str, int]:
        return {"n": 0}

    def latestOffset(self, start: dict[str, int], limit: ReadLimit) -> dict[str, int]:
        return {"n": ROWS}

    def partitions(self, start: dict[str, int], end: dict[str, int]) -> Sequence[InputPartition]:
        return [InputPartition((start["n"], end["n"]))]

    def read(self, partition: InputPartition) -> Iterator[tuple[int, str]]:
        first, end = partition.value
        for n in range(first, end):
            yield n, str(n)


class CountingSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> str:
        return "n long, text string"

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return CountingReader()
