"""The shared SparkSession: JARs on the driver's classpath, not copied per session; local
checkpoints written without Hadoop's forked checks; the profile's JVM options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from processor.spark_session import (
    FILE_SYSTEM_CHECKPOINTS,
    checkpoint_options,
    joined_java_options,
)


@pytest.mark.integration
def test_jars_are_on_the_classpath_and_not_copied_into_the_temp_folder(
    spark: Any, tmp_path: Path
) -> None:
    from pyspark import SparkFiles

    assert not spark.conf.get("spark.jars", "")
    assert "delta-spark" in spark.conf.get("spark.driver.extraClassPath")
    spark.range(3).write.format("delta").save(str(tmp_path / "t"))  # Delta's classes load
    session_files = Path(SparkFiles.getRootDirectory())
    copied = sum(f.stat().st_size for f in session_files.rglob("*") if f.is_file())
    # A killed job leaves this folder behind: it must not hold the 655 MB AWS SDK bundle.
    assert copied < 10 * 1024 * 1024, f"{copied} bytes copied into {session_files}"


@pytest.mark.parametrize(
    ("location", "manager"),
    [
        ("data/checkpoints", FILE_SYSTEM_CHECKPOINTS),
        ("/var/lib/fraud/checkpoints", FILE_SYSTEM_CHECKPOINTS),
        ("file:///var/lib/fraud/checkpoints", FILE_SYSTEM_CHECKPOINTS),
        ("s3a://fraud-lake/checkpoints", None),
        ("s3://fraud-lake/checkpoints", None),
    ],
)
def test_a_local_checkpoint_is_written_without_hadoops_forked_checks(
    location: str, manager: str | None
) -> None:
    options = checkpoint_options(location)
    assert options.get("spark.sql.streaming.checkpointFileManagerClass") == manager


@pytest.mark.integration
def test_the_sessions_local_checkpoints_use_the_file_system_manager(
    spark: Any, tmp_path: Path
) -> None:
    """What Spark itself picks for a checkpoint folder under this session's settings."""
    jvm = spark.sparkContext._jvm
    hadoop_conf = spark._jsparkSession.sessionState().newHadoopConf()
    folder = jvm.org.apache.hadoop.fs.Path(tmp_path.as_uri())
    manager = jvm.org.apache.spark.sql.execution.streaming.checkpointing.CheckpointFileManager
    assert manager.create(folder, hadoop_conf).getClass().getName() == FILE_SYSTEM_CHECKPOINTS


@pytest.mark.integration
def test_the_jvm_runs_with_the_profiles_options(spark: Any) -> None:
    # config.yaml's driver_java_options: the C1 compiler only (ADR 0039), read back from the
    # running JVM rather than from Spark's configuration.
    jvm = spark.sparkContext._jvm
    bean_class = jvm.java.lang.Class.forName("com.sun.management.HotSpotDiagnosticMXBean")
    diagnostics = jvm.java.lang.management.ManagementFactory.getPlatformMXBean(bean_class)
    assert diagnostics.getVMOption("TieredStopAtLevel").getValue() == "1"


def test_java_options_from_several_sources_are_joined() -> None:
    assert joined_java_options(["-Xa", "-Xb"], "-Xc -Xd", None, []) == "-Xa -Xb -Xc -Xd"
    assert joined_java_options([], None) == ""
