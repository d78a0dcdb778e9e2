"""The embedded emulator and idempotent resource setup, against a real moto server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.aws import make_client
from config.settings import Settings
from scripts.local_aws import LocalAws, free_port, is_healthy, start, stop
from scripts.setup_aws import setup_resources

pytestmark = pytest.mark.integration


def test_start_status_stop_cycle(tmp_path: Path) -> None:
    emulator = LocalAws("127.0.0.1", free_port(), tmp_path)
    pid = start(emulator)
    try:
        assert pid is not None and emulator.pid_file.read_text() == str(pid)
        assert is_healthy(emulator.endpoint_url)
        assert start(emulator) == pid  # idempotent: the running server is reused
    finally:
        assert stop(emulator) is True
    assert not is_healthy(emulator.endpoint_url)
    assert not emulator.pid_file.exists()
    assert stop(emulator) is False


def test_cli_status_reports_down_with_exit_code(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scripts.local_aws", "status", "--port", str(free_port())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "down" in result.stdout


def test_setup_creates_stream_table_and_bucket_idempotently(settings: Settings) -> None:
    first = setup_resources(settings)
    second = setup_resources(settings)  # running again changes nothing and does not fail
    assert first == second

    kinesis = make_client("kinesis", settings.aws)
    summary = kinesis.describe_stream_summary(StreamName=settings.kinesis.stream_name)
    assert summary["StreamDescriptionSummary"]["OpenShardCount"] == settings.kinesis.shard_count

    table = make_client("dynamodb", settings.aws).describe_table(
        TableName=settings.dynamodb.alerts_table
    )["Table"]
    assert table["KeySchema"] == [{"AttributeName": "transaction_id", "KeyType": "HASH"}]

    buckets = make_client("s3", settings.aws).list_buckets()["Buckets"]
    assert settings.s3.bucket in {bucket["Name"] for bucket in buckets}


def test_setup_cli_uses_the_profile_and_environment(moto_endpoint: str, unique_name: str) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "FRAUD_ENDPOINT_URL": moto_endpoint,
        "FRAUD_STREAM_NAME": f"{unique_name}-cli",
        "FRAUD_ALERTS_TABLE": f"{unique_name}-cli",
        "FRAUD_BUCKET": f"{unique_name}-cli",
    }
    result = subprocess.run(
        [sys.executable, "-m", "scripts.setup_aws", "--profile", "local", "--shards", "3"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr
    assert f"stream/{unique_name}-cli" in result.stdout
