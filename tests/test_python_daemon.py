"""Spark's Python workers import the installed pyspark, not Spark's zip of it
(processor/python_daemon.py)."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from processor.python_daemon import without_spark_zips

PY4J_ZIP = f"py4j-{version('py4j')}-src.zip"


def _installed_pyspark(site: Path) -> Path:
    """A pip-style layout: `site/pyspark/` with its zips in `site/pyspark/python/lib/`."""
    package = site / "pyspark"
    (package / "python" / "lib").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    return package / "python" / "lib"


def test_the_zips_of_an_installed_pyspark_are_dropped(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    lib = _installed_pyspark(site)
    path = [str(tmp_path), str(lib / "pyspark.zip"), str(lib / PY4J_ZIP), "/x/core.jar", str(site)]
    assert without_spark_zips(path) == [str(tmp_path), "/x/core.jar", str(site)]


def test_a_spark_distribution_without_an_installed_pyspark_keeps_its_zips(tmp_path: Path) -> None:
    spark_home = tmp_path / "spark"
    (spark_home / "python" / "lib").mkdir(parents=True)
    lib = spark_home / "python" / "lib"
    path = [str(lib / "pyspark.zip"), str(lib / PY4J_ZIP), str(tmp_path / "empty-site")]
    assert without_spark_zips(path) == path


def test_zips_of_another_pyspark_than_the_installed_one_are_kept(tmp_path: Path) -> None:
    """SPARK_HOME names a distribution while some other pyspark is installed: the zip is the
    version the JVM runs, so it stays first."""
    installed = tmp_path / "site-packages"
    _installed_pyspark(installed)
    lib = tmp_path / "spark" / "python" / "lib"
    lib.mkdir(parents=True)
    path = [str(lib / "pyspark.zip"), str(lib / PY4J_ZIP), str(installed)]
    assert without_spark_zips(path) == path


def test_a_py4j_zip_of_another_version_than_the_installed_py4j_is_kept(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    lib = _installed_pyspark(site)
    other = str(lib / "py4j-0.0.1-src.zip")
    path = [str(lib / "pyspark.zip"), other, str(site)]
    assert without_spark_zips(path) == [other, str(site)]


@pytest.mark.integration
def test_the_sessions_python_workers_import_pyspark_from_the_installed_package(
    spark: Any,
) -> None:
    import pyspark

    def where_pyspark_is(_: Any) -> list[str]:
        import sys

        import pyspark

        return [pyspark.__file__, *(entry for entry in sys.path if entry.endswith(".zip"))]

    seen = spark.sparkContext.parallelize([0], 1).map(where_pyspark_is).collect()
    module, *zips = seen[0]
    assert module == pyspark.__file__, "the worker compiled pyspark from Spark's zip"
    assert not [entry for entry in zips if entry.endswith(("pyspark.zip", PY4J_ZIP))]
