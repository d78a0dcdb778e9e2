"""Files read through Spark's Hadoop FileSystem, so local paths and s3a:// behave alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def _file(spark: SparkSession, path: str) -> tuple[Any, Any]:
    jvm = spark._jvm  # noqa: SLF001 - the Hadoop FileSystem API has no Python binding
    assert jvm is not None
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path.getFileSystem(spark._jsc.hadoopConfiguration()), hadoop_path  # noqa: SLF001


def exists(spark: SparkSession, path: str) -> bool:
    fs, hadoop_path = _file(spark, path)
    return bool(fs.exists(hadoop_path))


def read_text(spark: SparkSession, path: str) -> str:
    fs, hadoop_path = _file(spark, path)
    stream = fs.open(hadoop_path)
    try:
        jvm = spark._jvm  # noqa: SLF001
        assert jvm is not None
        return str(jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()
