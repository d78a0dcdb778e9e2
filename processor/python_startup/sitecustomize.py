"""Start-up of the Python processes the job's JVM starts on the driver: pyspark from the
installed package, not from Spark's zip.

Spark's query planning runs Python in processes of its own (looking up, creating and planning
the `kinesis` data source; the streaming source's runner). They start from `pyspark.daemon` or
as plain processes, never from `spark.python.daemon.module`, so ADR 0035's daemon does not reach
them, and each compiled pyspark from the zip again at every query's start (ADR 0037).
processor/spark_session.py puts this folder on the JVM's PYTHONPATH; Python imports a
`sitecustomize` module from its path at start-up, before any of Spark's code runs.
"""

from __future__ import annotations

import sys
from importlib.machinery import PathFinder
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _drop_spark_zips() -> None:
    # Loaded from its file, not imported as `processor.python_daemon`: importing the package
    # here would fix which `processor` this process sees before its own path is complete.
    spec = spec_from_file_location("_spark_zips", HERE.parent / "python_daemon.py")
    if spec is None or spec.loader is None:
        return
    daemon = module_from_spec(spec)
    spec.loader.exec_module(daemon)
    sys.path[:] = daemon.without_spark_zips(sys.path)


def _run_the_shadowed_sitecustomize() -> None:
    """Run the `sitecustomize` this one hides (Debian's Python has one), as Python would have."""
    others = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]
    spec = PathFinder.find_spec("sitecustomize", others)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(module_from_spec(spec))


_drop_spark_zips()
_run_the_shadowed_sitecustomize()
