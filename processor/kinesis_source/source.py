"""The `kinesis` data source: `spark.readStream.format("kinesis").option(...).load()`."""

from __future__ import annotations

from pyspark.sql.datasource import DataSource, DataSourceStreamReader
from pyspark.sql.types import StructType

from processor.kinesis_source.options import parse_options
from processor.kinesis_source.reader import KinesisStreamReader
from processor.kinesis_source.record_parser import load_parser

SCHEMA = (
    "data BINARY, streamName STRING, shardId STRING, partitionKey STRING, "
    "sequenceNumber STRING, subSequenceNumber BIGINT, approximateArrivalTimestamp TIMESTAMP"
)


class KinesisDataSource(DataSource):
    """Reads a Kinesis data stream; options follow AWS's Scala connector (streamName, ...)."""

    def __init__(self, options: dict[str, str]) -> None:
        super().__init__(options)
        # Checked here, once, so a bad option fails when the query is defined.
        self.parsed = parse_options(options)

    @classmethod
    def name(cls) -> str:
        return "kinesis"

    def schema(self) -> str | StructType:
        """The raw records', or the `recordParser`'s (ADR 0023)."""
        if self.parsed.record_parser is None:
            return SCHEMA
        return load_parser(self.parsed.record_parser, self.parsed.record_parser_argument).schema()

    def streamReader(self, schema: StructType) -> DataSourceStreamReader:
        return KinesisStreamReader(self.parsed)
