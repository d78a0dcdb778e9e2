"""One way to build the SparkSession: Delta, s3a against the profile's endpoint, local JARs.

The JARs come from `.jars/` (filled by `make jars` from infrastructure/jars/pom.xml) or from
`FRAUD_SPARK_JARS_DIR`; in the container image they are already in Spark's own jars folder,
which `FRAUD_SPARK_JARS_DIR=none` signals.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from config.exceptions import ConfigError
from processor.class_archive import sharing_options

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from config.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
JARS_DIR_ENV = "FRAUD_SPARK_JARS_DIR"
FILE_SYSTEM_CHECKPOINTS = (
    "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"
)
# Holds the `sitecustomize` of the Python processes the JVM starts (ADR 0037).
PYTHON_STARTUP = Path(__file__).resolve().parent / "python_startup"
JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def jar_paths() -> list[str]:
    """The JARs to pass as spark.jars; empty when the runtime already has them."""
    configured = os.environ.get(JARS_DIR_ENV)
    if configured == "none":
        return []
    jars_dir = Path(configured) if configured else PROJECT_ROOT / ".jars"
    jars = sorted(str(path) for path in jars_dir.glob("*.jar"))
    if not jars:
        raise ConfigError(
            f"no JARs in {jars_dir}: run `make jars` (or set {JARS_DIR_ENV} to a folder holding "
            "the Delta and hadoop-aws JARs)"
        )
    return jars


def s3a_options(settings: Settings) -> dict[str, str]:
    """hadoop-aws options for the profile: endpoint override and path-style access off AWS."""
    aws = settings.aws
    options = {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint.region": aws.region,
    }
    if aws.endpoint_url:
        options.update(
            {
                "spark.hadoop.fs.s3a.endpoint": aws.endpoint_url,
                "spark.hadoop.fs.s3a.path.style.access": "true",
                "spark.hadoop.fs.s3a.connection.ssl.enabled": str(
                    aws.endpoint_url.startswith("https")
                ).lower(),
                "spark.hadoop.fs.s3a.change.detection.mode": "none",
            }
        )
    if aws.access_key_id and aws.secret_access_key:
        options.update(
            {
                "spark.hadoop.fs.s3a.access.key": aws.access_key_id,
                "spark.hadoop.fs.s3a.secret.key": aws.secret_access_key,
                "spark.hadoop.fs.s3a.aws.credentials.provider": (
                    "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
                ),
            }
        )
    return options


def checkpoint_options(location: str) -> dict[str, str]:
    """The checkpoint file manager for a checkpoint at `location` (a path or URI).

    Spark's default renames through Hadoop's FileContext, which on a local disk without Hadoop's
    native library forks `readlink` and `chmod` for its checks: ~20 processes and ~60 ms a
    micro-batch. The FileSystem manager writes the same temporary file and renames it; on a
    local disk both check the target, then rename (ADR 0036). S3 keeps Spark's default.
    """
    if urlparse(location).scheme in ("", "file"):
        return {"spark.sql.streaming.checkpointFileManagerClass": FILE_SYSTEM_CHECKPOINTS}
    return {}


def joined_java_options(*groups: Sequence[str] | str | None) -> str:
    """JVM options from several sources as one `extraJavaOptions` value."""
    parts: list[str] = []
    for group in groups:
        if isinstance(group, str):
            parts.append(group)
        elif group:
            parts.extend(group)
    return " ".join(part for part in parts if part)


@contextmanager
def python_startup_on_path() -> Iterator[None]:
    """PYTHONPATH with processor/python_startup/ while the JVM is launched, restored after.

    The JVM keeps the environment it started with and adds its PYTHONPATH to every Python
    process it starts, so Spark's planning and streaming-source processes run that folder's
    `sitecustomize` and import the installed pyspark (ADR 0037). The driver's own path does
    not change.
    """
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [before, str(PYTHON_STARTUP)]))
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def build_spark(
    settings: Settings,
    app_name: str = "fraud-processor",
    master: str | None = None,
    extra: dict[str, str] | None = None,
) -> SparkSession:
    """Get or create the session with Delta and the profile's s3a settings.

    No Spark state store is configured: the job has no stateful Spark operator (the feature
    engine keeps its state itself, ADR 0009).
    """
    from pyspark.sql import SparkSession

    # Python workers must run this interpreter, or they cannot import pyarrow and the project.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    # Under spark-submit (which sets PYSPARK_GATEWAY_PORT) the master comes from its --master.
    if master or "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(master or os.environ.get("FRAUD_SPARK_MASTER", "local[2]"))
    options = {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(settings.processor.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        # Delta rebuilds a table's snapshot before every write in this many tasks (default 50).
        # Our tables' logs are small, so 50 tasks were pure scheduling overhead on each of the
        # four writes of every batch (docs/benchmarks.md: before/after).
        "spark.databricks.delta.snapshotPartitions": str(settings.processor.shuffle_partitions),
        # Python workers import the installed pyspark (compiled once) instead of compiling it
        # from Spark's zip in every process (processor/python_daemon.py, ADR 0035).
        "spark.python.daemon.module": "processor.python_daemon",
        **s3a_options(settings),
    }
    options.update(checkpoint_options(settings.processor.checkpoint_location))
    jars = jar_paths()
    launching = "PYSPARK_GATEWAY_PORT" not in os.environ
    if jars and launching:
        # We start the JVM ourselves: put the JARs on its classpath. `spark.jars` would copy
        # them (655 MB of AWS SDK) into Spark's temp folder for every session, and a killed
        # job leaves that copy behind. In local mode the executors share this JVM.
        options["spark.driver.extraClassPath"] = os.pathsep.join(jars)
    elif jars:
        options["spark.jars"] = ",".join(jars)
    options.update(extra or {})
    if launching:
        # The JVM's options: the class archive once `python -m processor.class_archive` has
        # built it for this JDK and these JARs (ADR 0038), the profile's (ADR 0039), a caller's.
        java_options = joined_java_options(
            sharing_options(jars),
            settings.processor.driver_java_options.split(),
            (extra or {}).get(JAVA_OPTIONS),
        )
        if java_options:
            options[JAVA_OPTIONS] = java_options
    for key, value in options.items():
        builder = builder.config(key, value)
    with python_startup_on_path():
        return builder.getOrCreate()
