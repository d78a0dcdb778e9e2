"""Session fixtures: one moto server on a free loopback port, one local[2] SparkSession.

Every test that touches AWS uses unique resource names (`unique_name`), so tests share the
server without seeing each other's data.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from config import cli
from config.settings import Settings, load_config
from scripts.local_aws import LocalAws, free_port, start, stop

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
# Tests never read a real key; the processor needs one to tokenise card numbers.
os.environ.setdefault("CARD_TOKEN_KEY", "test-only-tokenisation-key")
# No test may reach real AWS by accident.
for _var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
    os.environ.pop(_var, None)
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's server in its own process on a free loopback port, for the whole session."""
    emulator = LocalAws("127.0.0.1", free_port(), tmp_path_factory.mktemp("moto"))
    start(emulator)
    yield emulator.endpoint_url
    stop(emulator)


@pytest.fixture(autouse=True)
def unfrozen_heap() -> Iterator[None]:
    """A job's batches freeze the heap they leave (processor/heap.py); a test's leftovers go
    back to the collector when it ends, so one test's cycles cannot outlive it."""
    yield
    gc.unfreeze()


@pytest.fixture
def unique_name() -> str:
    """A fresh resource name (valid for streams, tables and buckets)."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(moto_endpoint: str, unique_name: str, tmp_path: Path) -> Settings:
    """The `local` profile pointed at the session's moto server, with unique names and paths."""
    base = load_config("local")
    return base.with_overrides(
        aws={"endpoint_url": moto_endpoint},
        kinesis={"stream_name": f"{unique_name}-stream", "shard_count": 2},
        dynamodb={"alerts_table": f"{unique_name}-alerts"},
        s3={"bucket": f"{unique_name}-bucket"},
        processor={
            "lake_path": str(tmp_path / "lake"),
            "checkpoint_location": str(tmp_path / "checkpoints"),
            "shuffle_partitions": 2,
            "metrics_port": 0,
        },
        producer={"failed_records_path": str(tmp_path / "failed_records.jsonl")},
        model={"path": str(tmp_path / "model")},
    )


@pytest.fixture(scope="session")
def spark(moto_endpoint: str) -> Iterator[SparkSession]:
    """The one SparkSession of the test run: local[2], two shuffle partitions, Delta, s3a->moto."""
    from processor.spark_session import build_spark

    base = load_config("local").with_overrides(
        aws={"endpoint_url": moto_endpoint}, processor={"shuffle_partitions": 2}
    )
    session = build_spark(
        base,
        app_name="fraud-tests",
        master="local[2]",
        extra={
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.sql.streaming.minBatchesToRetain": "10",
        },
    )
    session.sparkContext.setLogLevel("WARN")
    yield session
    session.stop()


# Small enough to train in seconds, big enough for every split period to hold fraud.
SMALL_TRAINING = [
    "--days", "16", "--customers", "300", "--terminals", "120", "--fraud-rate", "0.03",
    "--warmup-days", "3", "--gap-days", "1", "--validation-days", "4", "--test-days", "4",
    "--no-search",  # 16 days are too few for the model selection's folds (ADR 0014)
]  # fmt: skip


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained once per session by `python -m ml_model.train` on generated history."""
    from ml_model.train import main as train_main

    folder = tmp_path_factory.mktemp("model")
    assert train_main([*SMALL_TRAINING, "--output", str(folder)], load_config("local")) == 0
    return folder


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging replaces the root logger's handlers: put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level, json_logging = root.handlers[:], root.level, cli._json_logging
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    cli._json_logging = json_logging
