"""The driver JVM's class-data-sharing archive (processor/class_archive.py, ADR 0038)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from processor import class_archive
from processor.class_archive import (
    ARCHIVE_PREFIX,
    ARCHIVE_SUFFIX,
    SWITCH_ENV,
    archive_path,
    build_archive,
    remove_stale,
    sharing_options,
)
from processor.spark_session import jar_paths

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def jars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.delenv(SWITCH_ENV, raising=False)
    folder = tmp_path / "jars"
    folder.mkdir()
    paths = [folder / "a.jar", folder / "b.jar"]
    for path in paths:
        path.write_bytes(b"jar")
    return [str(path) for path in paths]


@pytest.fixture
def fake_jdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "jdk"
    (home / "lib" / "server").mkdir(parents=True)
    (home / "lib" / "server" / "libjvm.so").write_bytes(b"vm")
    monkeypatch.setenv("JAVA_HOME", str(home))
    return home


def test_the_archive_lives_beside_the_jars_named_by_their_digest(
    jars: list[str], fake_jdk: Path
) -> None:
    path = archive_path(jars)
    assert path is not None
    assert path.parent == Path(jars[0]).parent
    assert path.name.startswith(ARCHIVE_PREFIX) and path.name.endswith(ARCHIVE_SUFFIX)
    assert archive_path(list(jars)) == path  # the same inputs, the same file


def test_other_jars_or_another_jdk_look_for_another_archive(
    jars: list[str], fake_jdk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = archive_path(jars)
    Path(jars[1]).write_bytes(b"a longer jar")  # the JVM would reject the old archive
    changed_jar = archive_path(jars)
    assert changed_jar != first
    (fake_jdk / "lib" / "server" / "libjvm.so").write_bytes(b"an upgraded vm")
    upgraded_vm = archive_path(jars)
    assert upgraded_vm not in (first, changed_jar)
    other = tmp_path / "other-jdk"
    (other / "lib" / "server").mkdir(parents=True)
    monkeypatch.setenv("JAVA_HOME", str(other))
    assert archive_path(jars) not in (first, changed_jar, upgraded_vm)


def test_no_archive_without_jars_without_a_jdk_or_switched_off(
    jars: list[str], fake_jdk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert archive_path([]) is None  # the image: the JARs are in Spark's own folder
    monkeypatch.setenv(SWITCH_ENV, "off")
    assert archive_path(jars) is None
    monkeypatch.delenv(SWITCH_ENV)
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setenv("PATH", "")
    assert archive_path(jars) is None


def test_the_jvm_is_pointed_at_the_archive_only_once_it_exists(
    jars: list[str], fake_jdk: Path
) -> None:
    # A JVM given a missing archive would also lose the JDK's own shared classes.
    assert sharing_options(jars) == []
    path = archive_path(jars)
    assert path is not None
    path.write_bytes(b"archive")
    assert sharing_options(jars) == [f"-XX:SharedArchiveFile={path}"]


def test_archives_for_replaced_jars_are_removed(jars: list[str], fake_jdk: Path) -> None:
    folder = Path(jars[0]).parent
    stale = folder / f"{ARCHIVE_PREFIX}0123456789abcdef{ARCHIVE_SUFFIX}"
    stale.write_bytes(b"old")
    current = archive_path(jars)
    assert current is not None
    current.write_bytes(b"new")
    remove_stale(current)
    assert current.exists() and not stale.exists()
    assert all(Path(jar).exists() for jar in jars)


def test_a_failed_build_leaves_no_archive_and_says_why(
    jars: list[str], fake_jdk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A child that fails as the workload would without a working JVM.
    monkeypatch.setattr(class_archive.sys, "executable", "/bin/false")
    with pytest.raises(RuntimeError, match="its workload exited 1"):
        build_archive(jars)
    assert list(Path(jars[0]).parent.glob(f"{ARCHIVE_PREFIX}*")) == []


def test_an_existing_archive_is_not_built_again(
    jars: list[str], fake_jdk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = archive_path(jars)
    assert path is not None
    path.write_bytes(b"archive")
    monkeypatch.setattr(class_archive.sys, "executable", "/bin/false")  # would fail if run
    assert build_archive(jars) == path


_SESSION_WITH_CLASS_LOG = textwrap.dedent(
    """
    import sys
    from config.settings import load_config
    from processor.spark_session import JAVA_OPTIONS, build_spark

    spark = build_spark(load_config("local"), app_name="class-archive-test", master="local[1]",
                        extra={"spark.driver.host": "127.0.0.1",
                               JAVA_OPTIONS: "-Xlog:class+load=info:file=" + sys.argv[1]})
    spark.range(3).count()
    spark.stop()
    """
)


@pytest.mark.slow
def test_the_driver_jvm_loads_sparks_classes_from_the_archive(tmp_path: Path) -> None:
    # `make test` builds the archive before the tests; built here if run without make.
    path = build_archive(jar_paths())
    log = tmp_path / "classes.log"
    env = {key: value for key, value in os.environ.items() if key != SWITCH_ENV}
    subprocess.run(
        [sys.executable, "-c", _SESSION_WITH_CLASS_LOG, str(log)],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        timeout=300,
        capture_output=True,
    )
    lines = log.read_text().splitlines()
    # The dynamic archive is the "top" layer over the JDK's own; a mismatched archive (its
    # classpath or JDK changed) would leave every Spark class loaded from its JAR instead.
    spark_context = [line for line in lines if " org.apache.spark.SparkContext " in line]
    assert spark_context and "source: shared objects file (top)" in spark_context[0], (
        spark_context or f"SparkContext not loaded; archive {path}"
    )
    from_archive = sum("shared objects file (top)" in line for line in lines)
    assert from_archive > 1000
