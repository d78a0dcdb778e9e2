"""A Kinesis streaming source for Spark 4.2, written with the Python data source API."""

from __future__ import annotations

from typing import TYPE_CHECKING

from processor.kinesis_source.options import SourceOptions, parse_options
from processor.kinesis_source.source import SCHEMA, KinesisDataSource

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def register(spark: SparkSession) -> None:
    """Make `format("kinesis")` available in this session."""
    spark.dataSource.register(KinesisDataSource)


__all__ = ["SCHEMA", "KinesisDataSource", "SourceOptions", "parse_options", "register"]
