"""Resume a fresh checkpoint where the lake ends, instead of re-reading the stream.

Every record the job has read lands in exactly one lake table (an event in its table, a rejected
record in dead_letters), and each row keeps its Kinesis shard and sequence number. The largest
sequence number per shard is therefore where a new checkpoint may start without losing or
repeating a record. It feeds the source's `startingSequenceNumbers` option.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from processor.hadoop_files import exists
from processor.lake_tables import TABLES
from processor.sinks import table_path

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

# Kinesis sequence numbers are decimal strings of up to 128 digits: compare them padded.
_SEQUENCE_WIDTH = 128


def checkpoint_has_progress(spark: SparkSession, checkpoint_location: str) -> bool:
    """True once the query planned a batch here (its offset log exists)."""
    return exists(spark, f"{checkpoint_location.rstrip('/')}/offsets")


def lake_positions(spark: SparkSession, lake_path: str) -> dict[str, str]:
    """{shardId: the largest sequence number any lake table holds for it}."""
    frames: list[DataFrame] = []
    for table in TABLES:
        path = table_path(lake_path, table)
        if exists(spark, f"{path}/_delta_log"):
            frames.append(spark.read.format("delta").load(path).select("shardId", "sequenceNumber"))
    if not frames:
        return {}
    rows = frames[0]
    for frame in frames[1:]:
        rows = rows.unionByName(frame)
    padded = F.lpad("sequenceNumber", _SEQUENCE_WIDTH, "0")
    last = rows.groupBy("shardId").agg(F.max(padded).alias("last")).collect()
    return {row["shardId"]: row["last"].lstrip("0") or "0" for row in last}
