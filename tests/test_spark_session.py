"""The shared SparkSession: JARs on the driver's classpath, not copied per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration]


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
