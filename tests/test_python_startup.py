"""The Python processes Spark starts on the driver import the installed pyspark, not Spark's zip
(processor/python_startup/sitecustomize.py, processor/spark_session.py, ADR 0037)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pyspark
import pytest

from processor.spark_session import PYTHON_STARTUP, python_startup_on_path

INSTALLED_PYSPARK = pyspark.__file__
SPARK_ZIPS = [
    str(Path(INSTALLED_PYSPARK).parent / "python" / "lib" / name)
    for name in ("pyspark.zip", f"py4j-{version('py4j')}-src.zip")
]


def _python(script: str, *path: str) -> str:
    """What `script` prints in a new interpreter whose PYTHONPATH is `path`, as Spark builds it
    for the processes it starts. It must exit 0, and any sitecustomize must have run cleanly."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Error in sitecustomize" not in done.stderr, done.stderr
    return done.stdout.strip()


def _where_pyspark_imports_from(*extra_path: str) -> str:
    """pyspark's module file with Spark's zips first on the path, then `extra_path`."""
    return _python("import pyspark; print(pyspark.__file__)", *SPARK_ZIPS, *extra_path)


def test_the_zips_alone_give_the_zipped_pyspark() -> None:
    """The premise: without the start-up folder, Spark's path imports pyspark from the zip."""
    assert _where_pyspark_imports_from() == f"{SPARK_ZIPS[0]}/pyspark/__init__.py"


def test_the_startup_folder_gives_the_installed_pyspark() -> None:
    assert _where_pyspark_imports_from(str(PYTHON_STARTUP)) == INSTALLED_PYSPARK


def test_a_sitecustomize_later_on_the_path_still_runs(tmp_path: Path) -> None:
    """Debian's Python has a sitecustomize of its own; ours hides it, so it must run it."""
    (tmp_path / "sitecustomize.py").write_text("import os\nos.environ['SHADOWED_RAN'] = 'yes'\n")
    script = "import os; print(os.environ.get('SHADOWED_RAN'))"
    assert _python(script, str(PYTHON_STARTUP), str(tmp_path)) == "yes"


def test_the_folder_is_on_pythonpath_only_while_the_jvm_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)
    with python_startup_on_path():
        assert os.environ["PYTHONPATH"] == str(PYTHON_STARTUP)
    assert "PYTHONPATH" not in os.environ


def test_a_pythonpath_of_the_caller_is_kept_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/opt/libs")
    with python_startup_on_path():
        assert os.environ["PYTHONPATH"] == os.pathsep.join(["/opt/libs", str(PYTHON_STARTUP)])
    assert os.environ["PYTHONPATH"] == "/opt/libs"


@pytest.mark.integration
def test_spark_plans_a_python_data_source_with_the_installed_pyspark(spark: Any) -> None:
    """A data source's `partitions()` runs in a planning process Spark starts from
    `pyspark.daemon`, not from `spark.python.daemon.module`: it reports where its pyspark is."""
    from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

    # Classes defined here are pickled by value, so Spark's processes need not import tests/.
    class PysparkOrigin(InputPartition):
        def __init__(self, origin: str) -> None:
            self.origin = origin

    class WherePysparkIsReader(DataSourceReader):
        def partitions(self) -> list[InputPartition]:
            import pyspark

            return [PysparkOrigin(pyspark.__file__)]

        def read(self, partition: Any) -> Iterator[tuple[str]]:
            yield (partition.origin,)

    class WherePysparkIs(DataSource):
        @classmethod
        def name(cls) -> str:
            return "where_pyspark_is"

        def schema(self) -> str:
            return "planner_pyspark string"

        def reader(self, schema: Any) -> DataSourceReader:
            return WherePysparkIsReader()

    spark.dataSource.register(WherePysparkIs)
    rows = spark.read.format("where_pyspark_is").load().collect()
    assert [row.planner_pyspark for row in rows] == [INSTALLED_PYSPARK]
