"""Spark's Python daemon, importing pyspark from the installed package instead of its zip.

Spark puts `SPARK_HOME/python/lib/pyspark.zip` and py4j's source zip first on the path of
every Python process it starts. When pyspark is installed with pip, SPARK_HOME is that installed
package, so the zip holds the same modules as the folder it sits in. Python caches no bytecode
for a zip, though: every daemon, and every worker it forks (the worker imports its module after
the fork), compiled pyspark's modules from source, ~0.5 s of CPU each and several seconds at
each query's start on two cores (docs/decisions/0035-python-workers-import-compiled-pyspark.md).

Set as `spark.python.daemon.module` (processor/spark_session.py), this module takes those zips
off `sys.path` when the package they belong to is importable without them, then runs
`pyspark.daemon` as Spark would have. Anywhere else (a Spark distribution whose pyspark exists
only as the zip), the path is left as it is.
"""

from __future__ import annotations

import runpy
import sys
from importlib.machinery import PathFinder
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _installed_here(package: str, folder: Path, path: list[str]) -> bool:
    """Whether `package` imports from `folder` (its own directory) with `path` alone."""
    spec = PathFinder.find_spec(package, path)
    origin = spec.origin if spec is not None else None
    return origin is not None and Path(origin).parent.resolve() == folder.resolve()


def without_spark_zips(path: list[str]) -> list[str]:
    """`path` less the zips Spark adds, where the installed packages give the same modules:

    - `<pyspark>/python/lib/pyspark.zip` when `<pyspark>` itself is importable from the rest;
    - `py4j-<version>-src.zip` beside it when that py4j version is installed.
    """
    spark_zips = [entry for entry in path if entry.endswith("/python/lib/pyspark.zip")]
    rest = [entry for entry in path if entry not in spark_zips]
    lib_folders = {
        Path(entry).parent
        for entry in spark_zips
        if _installed_here("pyspark", Path(entry).parents[2], rest)
    }
    names = {"pyspark.zip"}
    try:
        names.add(f"py4j-{version('py4j')}-src.zip")
    except PackageNotFoundError:
        pass
    return [
        entry
        for entry in path
        if not (Path(entry).parent in lib_folders and Path(entry).name in names)
    ]


def main() -> None:
    sys.path[:] = without_spark_zips(sys.path)
    # As `python -m pyspark.daemon <worker module>`: sys.argv[1] stays the worker module.
    runpy.run_module("pyspark.daemon", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
