"""The embedded emulator and idempotent resource setup, against a real moto server."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from config.aws import make_client
from config.settings import Settings, load_config
from scripts.local_aws import LocalAws, free_port, is_healthy, start, stop
from scripts.setup_aws import ensure_alerts_table, ensure_bucket, ensure_stream, setup_resources

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


def test_a_persistent_emulator_keeps_streams_tables_and_buckets_across_a_restart(
    tmp_path: Path,
) -> None:
    emulator = LocalAws("127.0.0.1", free_port(), tmp_path)
    settings = load_config("local").with_overrides(aws={"endpoint_url": emulator.endpoint_url})
    start(emulator, persist=True)
    try:
        kinesis = make_client("kinesis", settings.aws)
        ensure_stream(kinesis, "kept", 2)
        kinesis.put_records(
            StreamName="kept",
            Records=[{"PartitionKey": str(i), "Data": f"r{i}".encode()} for i in range(20)],
        )
        dynamodb = make_client("dynamodb", settings.aws)
        ensure_alerts_table(dynamodb, "kept-alerts")
        dynamodb.put_item(TableName="kept-alerts", Item={"transaction_id": {"S": "tx-1"}})
        s3 = make_client("s3", settings.aws)
        ensure_bucket(s3, "kept-bucket", settings.aws.region)
        s3.put_object(Bucket="kept-bucket", Key="a/b", Body=b"kept")
        before = {
            shard["ShardId"]: [r["SequenceNumber"] for r in records]
            for shard, records in _shard_records(kinesis, "kept")
        }
    finally:
        stop(emulator)
    assert emulator.state_file.exists()

    start(emulator, persist=True)
    try:
        after = {
            shard["ShardId"]: [r["SequenceNumber"] for r in records]
            for shard, records in _shard_records(kinesis, "kept")
        }
        assert after == before and sum(len(v) for v in after.values()) == 20
        ensure_stream(kinesis, "kept", 2)  # already there: setup stays idempotent
        kinesis.put_record(StreamName="kept", PartitionKey="0", Data=b"new")
        item = dynamodb.get_item(TableName="kept-alerts", Key={"transaction_id": {"S": "tx-1"}})
        assert "Item" in item
        assert s3.get_object(Bucket="kept-bucket", Key="a/b")["Body"].read() == b"kept"
    finally:
        stop(emulator)

    start(emulator)  # without persist: a clean slate
    try:
        assert "kept" not in kinesis.list_streams()["StreamNames"]
    finally:
        stop(emulator)


def _shard_records(client: Any, stream: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    out = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        out.append((shard, client.get_records(ShardIterator=iterator, Limit=1000)["Records"]))
    return out


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


# --- GetRecords written directly (scripts/moto_server.py, ADR 0040) -------------------------


def _kinesis_call(endpoint: str, target: str, body: dict[str, Any]) -> tuple[int, str, Any]:
    """A raw Kinesis JSON call: (status, content type, parsed body or text)."""
    request = urllib.request.Request(
        endpoint + "/",
        data=json.dumps(body).encode(),
        headers={
            "X-Amz-Target": f"Kinesis_20131202.{target}",
            "Content-Type": "application/x-amz-json-1.1",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/kinesis/"
            "aws4_request, SignedHeaders=host, Signature=0",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, error.headers, error.read()
    assert headers.get("x-amzn-requestid")  # moto's request id, on every answer
    kind = headers.get("Content-Type", "")
    return status, kind, json.loads(raw) if "json" in kind else raw.decode()


def _arrival_checked(answer: Any) -> Any:
    """The answer with each record's arrival time checked (epoch seconds, at most ms) and
    blanked: two servers stamp their own puts."""
    if isinstance(answer, dict):
        for record in answer.get("Records", []):
            stamp = record["ApproximateArrivalTimestamp"]
            assert isinstance(stamp, int | float) and stamp > 1.7e9
            assert round(stamp, 3) == stamp
            record["ApproximateArrivalTimestamp"] = None
    return answer


def _get_records_answers(endpoint: str, stream: str) -> list[tuple[int, str, Any]]:
    """What GetRecords answers on a stream of odd payloads: part of it, the rest, the tip, and
    an iterator whose stream is gone."""
    put = [(b"", "empty"), (b"\x00\xff\x10", "binary"), ('\u00e9t\u00e9 "q"'.encode(), "text")]
    put += [(bytes(range(256)) * (i + 1), f"long-{i}") for i in range(3)]
    _kinesis_call(endpoint, "CreateStream", {"StreamName": stream, "ShardCount": 1})
    for data, key in put:
        _kinesis_call(
            endpoint,
            "PutRecord",
            {"StreamName": stream, "Data": base64.b64encode(data).decode(), "PartitionKey": key},
        )
        time.sleep(0.005)  # apart in time, so a partial read is behind the tip on any machine
    shard = _kinesis_call(endpoint, "ListShards", {"StreamName": stream})[2]["Shards"][0]
    status, _, started = _kinesis_call(
        endpoint,
        "GetShardIterator",
        {"StreamName": stream, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"},
    )
    assert status == 200
    answers = [
        _kinesis_call(
            endpoint, "GetRecords", {"ShardIterator": started["ShardIterator"], "Limit": 4}
        )
    ]
    rest = answers[0][2]["NextShardIterator"]
    answers.append(_kinesis_call(endpoint, "GetRecords", {"ShardIterator": rest}))
    answers.append(
        _kinesis_call(endpoint, "GetRecords", {"ShardIterator": answers[1][2]["NextShardIterator"]})
    )
    _kinesis_call(endpoint, "DeleteStream", {"StreamName": stream})
    answers.append(_kinesis_call(endpoint, "GetRecords", {"ShardIterator": rest}))
    # How far the partial read is behind depends on when each server took the puts: checked,
    # then blanked. The reads to the tip are 0 behind on both, and compared as they are.
    partial = answers[0][2]
    assert isinstance(partial["MillisBehindLatest"], int) and partial["MillisBehindLatest"] > 0
    partial["MillisBehindLatest"] = None
    return [(status, kind, _arrival_checked(body)) for status, kind, body in answers]


def test_get_records_answers_as_moto_itself_does(moto_endpoint: str, unique_name: str) -> None:
    plain_port = free_port()
    plain = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(plain_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    plain_url = f"http://127.0.0.1:{plain_port}"
    try:
        deadline = time.monotonic() + 60
        while not is_healthy(plain_url):
            assert plain.poll() is None and time.monotonic() < deadline, "moto did not start"
            time.sleep(0.2)
        expected = _get_records_answers(plain_url, unique_name)
    finally:
        plain.terminate()
        plain.wait(timeout=30)
    answers = _get_records_answers(moto_endpoint, unique_name)
    assert [len(body["Records"]) for _, _, body in answers[:3]] == [4, 2, 0]
    assert answers[3][0] == 400 and "ResourceNotFound" in str(answers[3][2])
    assert answers == expected
