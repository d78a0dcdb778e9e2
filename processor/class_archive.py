"""A class-data-sharing archive for the driver's JVM, so that it starts without parsing and
verifying Spark's classes again.

Every start of the job (and of each Spark test process, the demo's summary, the benchmarks)
loads the same few thousand classes from Spark's, Delta's and the AWS SDK's JARs. A dynamic
AppCDS archive (JDK 13+: `-XX:ArchiveClassesAtExit`) holds them already parsed and verified;
a JVM given it with `-XX:SharedArchiveFile` maps it instead (ADR 0038: a session and its first
Delta write and read 14.9-16.8 -> 10.5-12.0 s).

`python -m processor.class_archive` (`make class-archive`, which `make test` and `make bench`
run; `make demo` only uses an archive already built) builds it once. A child process starts a
session with the job's classpath and runs a small workload shaped like the job (a Python
streaming source, `mapInArrow`, `foreachBatch` into Arrow, a Delta write and read); its JVM
writes the archive as it exits. The archive is only valid for the JVM and the classpath it was
built with, so its name holds a digest of both (`archive_path`): a new JDK or other JARs look
for another file, and the JVM starts as before until that one is built.
`FRAUD_SPARK_CLASS_ARCHIVE=off` leaves it out.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

SWITCH_ENV = "FRAUD_SPARK_CLASS_ARCHIVE"
ARCHIVE_PREFIX = "spark-classes-"
ARCHIVE_SUFFIX = ".jsa"
# How long the workload's JVM may take to start, run and write the archive before we give up.
BUILD_TIMEOUT_S = 600


def java_home() -> Path | None:
    """The JDK Spark's launcher runs: JAVA_HOME's, else the `java` on PATH (as bin/spark-class)."""
    if os.environ.get("JAVA_HOME"):
        return Path(os.environ["JAVA_HOME"]).resolve()
    java = shutil.which("java")
    return Path(java).resolve().parent.parent if java else None


def _spark_jars() -> list[Path]:
    """The JARs of the installed pyspark: the driver's classpath after ours."""
    spec = find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(Path(next(iter(spec.submodule_search_locations)), "jars").glob("*.jar"))


def _identity(path: Path) -> str:
    # The JVM rejects an archive when a JAR on its classpath changed size or time; the JDK's
    # own files change with an upgrade.
    try:
        stat = path.stat()
    except OSError:
        return f"{path} missing"
    return f"{path} {stat.st_size} {stat.st_mtime_ns}"


def archive_key(jars: Sequence[str]) -> str | None:
    """A digest of what the archive depends on: the JDK's VM and base archive, our JARs and
    Spark's. None without a JDK."""
    home = java_home()
    if home is None:
        return None
    parts = [str(home)]
    parts += [_identity(home / "lib" / "server" / name) for name in ("libjvm.so", "classes.jsa")]
    parts += [_identity(Path(jar)) for jar in jars]
    parts += [_identity(jar) for jar in _spark_jars()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def archive_path(jars: Sequence[str]) -> Path | None:
    """Where this JDK's archive for `jars` lives (beside them), or None when there is none to
    have: no JARs of ours (the image has them in Spark's own folder), no JDK, or switched off."""
    if not jars or os.environ.get(SWITCH_ENV, "").lower() == "off":
        return None
    key = archive_key(jars)
    if key is None:
        return None
    return Path(jars[0]).parent / f"{ARCHIVE_PREFIX}{key}{ARCHIVE_SUFFIX}"


def sharing_options(jars: Sequence[str]) -> list[str]:
    """The driver's JVM options that map the archive, when it has been built. Without one, no
    option: a JVM given a missing archive starts without the JDK's own shared classes too."""
    path = archive_path(jars)
    return [f"-XX:SharedArchiveFile={path}"] if path is not None and path.is_file() else []


# ---------------------------------------------------------------------------- the workload


def _pass_through(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield from batches


def run_workload(spark: SparkSession, work: Path) -> None:
    """What the job's JVM does, in small: a Python streaming source read to its end,
    `mapInArrow`, each batch collected as Arrow; then a Delta table written and read, as the
    demo's summary and the tests do. The classes it loads are those the archive holds."""
    from processor.class_archive_source import SOURCE_NAME, CountingSource

    spark.dataSource.register(CountingSource)
    collected: list[int] = []

    def collect(batch: DataFrame, _batch_id: int) -> None:
        collected.append(batch.toArrow().num_rows)

    query = (
        spark.readStream.format(SOURCE_NAME)
        .load()
        .mapInArrow(_pass_through, "n long, text string")
        .writeStream.foreachBatch(collect)
        .option("checkpointLocation", str(work / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    if sum(collected) == 0:
        raise RuntimeError("the class archive's workload read no rows")
    table = str(work / "delta")
    spark.createDataFrame([(n, str(n)) for n in range(10)], "n long, text string").write.format(
        "delta"
    ).save(table)
    spark.read.format("delta").load(table).count()


def _dump(target: Path) -> None:
    """In the child: a session whose JVM writes its loaded classes to `target` as it exits."""
    from config.settings import load_config
    from processor.spark_session import JAVA_OPTIONS, build_spark

    os.environ[SWITCH_ENV] = "off"  # this JVM writes an archive: it must not map one as well
    spark = build_spark(
        load_config("local"),
        app_name="class-archive",
        master="local[2]",
        extra={
            "spark.driver.host": "127.0.0.1",
            JAVA_OPTIONS: f"-XX:ArchiveClassesAtExit={target}",
        },
    )
    with tempfile.TemporaryDirectory(prefix="class-archive-") as work:
        run_workload(spark, Path(work))
    gateway: Any = spark.sparkContext._gateway  # noqa: SLF001 - the JVM process we started
    spark.stop()
    # The JVM writes the archive while it exits, which it does when its stdin closes; wait for
    # it, or the parent would find a half-written file.
    process = gateway.proc
    gateway.shutdown()
    process.stdin.close()
    process.wait(timeout=BUILD_TIMEOUT_S)


def remove_stale(path: Path) -> None:
    """Remove the other archives beside `path`: built for JARs or a JDK since replaced."""
    for other in path.parent.glob(f"{ARCHIVE_PREFIX}*{ARCHIVE_SUFFIX}"):
        if other != path:
            other.unlink(missing_ok=True)


def build_archive(jars: Sequence[str]) -> Path:
    """Build the archive for `jars` unless it exists; stale archives beside it are removed."""
    path = archive_path(jars)
    if path is None:
        raise RuntimeError(f"no archive to build (no JARs, no JDK, or {SWITCH_ENV}=off)")
    if path.is_file():
        logger.info("class archive up to date: %s", path)
        return path
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    began = time.monotonic()
    try:
        child = subprocess.run(
            [sys.executable, "-m", "processor.class_archive", "--dump-to", str(partial)],
            timeout=BUILD_TIMEOUT_S,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if child.returncode != 0:
            last = child.stderr.strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"its workload exited {child.returncode}: {last[0]}")
        if not partial.is_file() or partial.stat().st_size == 0:
            raise RuntimeError("the JVM exited without writing the class archive")
        partial.replace(path)  # atomic: a JVM starting now maps a whole archive or none
    finally:
        partial.unlink(missing_ok=True)
    remove_stale(path)
    logger.info("class archive built in %.0f s: %s (%.0f MB)", time.monotonic() - began, path,
                path.stat().st_size / 1e6)  # fmt: skip
    return path


def main(argv: list[str] | None = None) -> int:
    # Imported here: `build_spark` reads this module on every session, and needs none of it.
    from config.cli import configure_logging, new_parser

    parser = new_parser(
        "processor.class_archive",
        __doc__,
        profile=False,
    )
    parser.add_argument("--dump-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    if args.dump_to is not None:
        _dump(args.dump_to)
        return 0
    from processor.spark_session import jar_paths

    try:
        build_archive(jar_paths())
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        # Only a faster start: without the archive the JVM starts as it always did.
        logger.warning("no class archive (the JVM starts without one): %s", error)
    return 0


if __name__ == "__main__":
    from config.cli import run_cli

    sys.exit(run_cli(main))
