"""The Kinesis producer against moto's server: exact delivery, order, retries, CLI, replay, API."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from config.aws import make_client
from config.settings import Settings
from producer.contract import parse_event_time, validate_event
from producer.generator import GeneratorOptions, TransactionGenerator
from producer.kinesis_writer import MAX_REORDER_MS, KinesisWriter
from producer.stats import SendStats
from scripts.local_aws import free_port
from scripts.setup_aws import ensure_stream

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent


def read_all(client: Any, stream: str) -> dict[str, list[dict[str, Any]]]:
    """Every record of every shard, in shard order, with boto3."""
    shards = client.list_shards(StreamName=stream)["Shards"]
    out: dict[str, list[dict[str, Any]]] = {}
    for shard in shards:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records: list[dict[str, Any]] = []
        while iterator:
            response = client.get_records(ShardIterator=iterator, Limit=10_000)
            records.extend(response["Records"])
            if not response["Records"]:
                break
            iterator = response.get("NextShardIterator")
        out[shard["ShardId"]] = records
    return out


class FlakyKinesis:
    """A real client whose PutRecords fails some entries and throttles some whole calls.

    Failing entries are not forwarded to the server; the others are, so the server holds
    exactly what the writer believes it wrote.
    """

    def __init__(self, client: Any, fail_every: int, throttle_every_call: int) -> None:
        self._client = client
        self._fail_every = fail_every
        self._throttle_every = throttle_every_call
        self.calls = 0
        self.entries_failed = 0
        self._seen = 0

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls += 1
        if self._throttle_every and self.calls % self._throttle_every == 0:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                "PutRecords",
            )
        verdicts = []
        for _ in Records:
            self._seen += 1
            verdicts.append(self._seen % self._fail_every == 0)
        forward = [entry for entry, fail in zip(Records, verdicts, strict=True) if not fail]
        real = iter(
            self._client.put_records(StreamName=StreamName, Records=forward)["Records"]
            if forward
            else []
        )
        results = []
        for fail in verdicts:
            if fail:
                self.entries_failed += 1
                code = "ProvisionedThroughputExceededException"
                results.append({"ErrorCode": code, "ErrorMessage": "Rate exceeded"})
            else:
                results.append(next(real))
        return {"FailedRecordCount": sum(verdicts), "Records": results}


def generate(n: int, **options: Any) -> tuple[TransactionGenerator, list[Any]]:
    gen = TransactionGenerator(GeneratorOptions(num_transactions=n, **options))
    return gen, list(gen.records())


def test_ten_thousand_events_arrive_exactly_once_in_card_order(settings: Settings) -> None:
    client = make_client("kinesis", settings.aws)
    stream = settings.kinesis.stream_name
    ensure_stream(client, stream, 3)
    gen, records = generate(10_000, seed=21, fraud_rate=0.02, anomaly_rate=0.01)
    stats = SendStats()
    writer = KinesisWriter(client, stream, stats, settings.producer.failed_records_path)
    writer.put(records)
    writer.flush()

    shards = read_all(client, stream)
    received = [r for rs in shards.values() for r in rs]
    assert len(received) == len(records) == stats.sent
    assert Counter(r["Data"] for r in received) == Counter(r.data for r in records)
    assert sum(stats.per_shard.values()) == len(records) and len(stats.per_shard) == 3

    bad = 0
    txs = 0
    fraud = 0
    for shard_records in shards.values():
        last_time: dict[str, str] = {}
        for record in shard_records:
            try:
                event = json.loads(record["Data"])
            except ValueError:
                bad += 1
                continue
            if validate_event(event, now=parse_event_time("2026-06-01T00:00:00Z")) is not None:
                bad += 1
                continue
            # Per card, within a shard, records keep the generator's (event-time) order.
            key = record["PartitionKey"]
            assert event["event_time"] >= last_time.get(key, ""), key
            last_time[key] = event["event_time"]
            if event["event_type"] == "transaction":
                txs += 1
                fraud += event["label"]["is_fraud"]
    broken = [a for a in gen.anomalies if a.kind != "duplicate"]
    assert bad == len(broken)
    assert fraud / txs == pytest.approx(0.02, abs=0.006)
    for anomaly in gen.anomalies:
        assert any(r["Data"] == anomaly.data for r in received), anomaly.kind


def test_partial_failures_and_throttling_lose_nothing_and_keep_order(settings: Settings) -> None:
    real = make_client("kinesis", settings.aws)
    stream = settings.kinesis.stream_name
    ensure_stream(real, stream, 2)
    flaky = FlakyKinesis(real, fail_every=7, throttle_every_call=4)
    _, records = generate(2_000, seed=4)
    stats = SendStats()
    writer = KinesisWriter(
        flaky, stream, stats, settings.producer.failed_records_path, base_backoff_s=0.001
    )
    writer.put(records)
    writer.flush()

    assert flaky.entries_failed > 0 and stats.retried > 0 and stats.failed == 0
    received = [r for rs in read_all(real, stream).values() for r in rs]
    assert Counter(r["Data"] for r in received) == Counter(r.data for r in records)
    sent_order: dict[str, list[bytes]] = defaultdict(list)
    for record in records:
        sent_order[record.partition_key].append(record.data)
    got_order: dict[str, list[bytes]] = defaultdict(list)
    for record in received:
        got_order[record["PartitionKey"]].append(record["Data"])
    assert got_order == sent_order


def test_a_fast_replay_is_not_shuffled_inside_a_shard(settings: Settings) -> None:
    # Days of event time written at once, few cards: a record waiting for its card's turn may
    # be passed only by records sent within MAX_REORDER_MS of it, or the processor would see
    # it hours late.
    real = make_client("kinesis", settings.aws)
    stream = settings.kinesis.stream_name
    ensure_stream(real, stream, 2)
    generator = TransactionGenerator(
        GeneratorOptions(seed=12, num_transactions=3_000, num_customers=60, anomaly_rate=0.0)
    )
    records = list(generator.records())
    send_ms = {r.data: r.send_time_ms for r in records}
    assert max(send_ms.values()) - min(send_ms.values()) > 100 * MAX_REORDER_MS
    writer = KinesisWriter(real, stream, SendStats(), settings.producer.failed_records_path)
    writer.put(records)
    writer.flush()

    for shard_records in read_all(real, stream).values():
        newest = 0
        for record in shard_records:
            moment = send_ms[record["Data"]]
            assert moment > newest - MAX_REORDER_MS - 1
            newest = max(newest, moment)


def test_exhausted_retry_budget_writes_the_failed_file(settings: Settings, tmp_path: Path) -> None:
    real = make_client("kinesis", settings.aws)
    stream = settings.kinesis.stream_name
    ensure_stream(real, stream, 1)
    always = FlakyKinesis(real, fail_every=1, throttle_every_call=0)
    _, records = generate(20, seed=8)
    failed_path = tmp_path / "failed.jsonl"
    stats = SendStats()
    writer = KinesisWriter(always, stream, stats, failed_path, max_attempts=3, base_backoff_s=0)
    writer.put(records)
    writer.flush()
    assert stats.failed == len(records) and stats.sent == 0
    lines = [json.loads(line) for line in failed_path.read_text().splitlines()]
    assert len(lines) == len(records)
    assert {line["error_code"] for line in lines} == {"ProvisionedThroughputExceededException"}
    assert oct(failed_path.stat().st_mode & 0o777) == oct(0o600)


def run_cli(*args: str, settings: Settings | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    if settings is not None:
        env["FRAUD_ENDPOINT_URL"] = str(settings.aws.endpoint_url)
        env["FRAUD_STREAM_NAME"] = settings.kinesis.stream_name
    return subprocess.run(
        [sys.executable, "-m", "producer.main", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
        timeout=120,
    )


def test_cli_sends_and_summarises(settings: Settings) -> None:
    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, 2)
    result = run_cli(
        "--num-transactions", "300", "--batch-size", "10", "--seed", "5", settings=settings
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])["summary"]
    received = sum(len(r) for r in read_all(client, settings.kinesis.stream_name).values())
    assert summary["sent"] == received >= 300
    assert summary["failed"] == 0


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["--num-transactions", "0"], "--num-transactions"),
        (["--batch-size", "501"], "--batch-size"),
        (["--fraud-rate", "1.5"], "--fraud-rate"),
        (["--network", "dialup"], "--network"),
        (["--sink", "file"], "--output"),
        (["--replay", "/no/such/file.jsonl"], "--replay"),
        (["--stream-name", "no-such-stream", "--num-transactions", "5"], "--stream-name"),
    ],
)
def test_cli_bad_argument_exits_2_naming_it(args: list[str], name: str, moto_endpoint: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "producer.main", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "FRAUD_ENDPOINT_URL": moto_endpoint},
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert name in result.stderr


def test_file_sink_is_reproducible_and_replays_into_kinesis(
    settings: Settings, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path in (first, second):
        result = run_cli(
            "--sink", "file", "--output", str(path), "--num-transactions", "200",
            "--seed", "77", "--anomaly-rate", "0.05",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert first.read_bytes() == second.read_bytes()

    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, 2)
    result = run_cli("--replay", str(first), "--rate", "5000", settings=settings)
    assert result.returncode == 0, result.stderr
    lines = first.read_bytes().splitlines()
    received = [
        r["Data"] for rs in read_all(client, settings.kinesis.stream_name).values() for r in rs
    ]
    assert Counter(received) == Counter(lines)


def test_test_subcommand_reports_the_stream(settings: Settings) -> None:
    ensure_stream(make_client("kinesis", settings.aws), settings.kinesis.stream_name, 2)
    result = run_cli("test", settings=settings)
    assert result.returncode == 0, result.stderr
    assert "ACTIVE, 2 open shards" in result.stdout


def test_control_api_over_real_http(settings: Settings) -> None:
    import uvicorn

    from producer.api import create_app

    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, 2)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            for _ in range(100):
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            events = http.post("/transactions/generate", params={"count": 5}).json()
            assert sum(e["event_type"] == "transaction" for e in events) == 5
            assert all(validate_event(e) is None for e in events)

            assert http.put("/config", json={"fraud_rate": 0.9}).status_code == 422
            bad_mix = http.put("/config", json={"scenario_mix": {"phishing": 1}})
            assert bad_mix.status_code == 422 and "scenario_mix" in bad_mix.text
            updated = http.put("/config", json={"fraud_rate": 0.1, "rate": 0})
            assert updated.status_code == 200 and updated.json()["fraud_rate"] == 0.1

            assert http.post("/stream/start", json={"num_transactions": 500}).status_code == 202
            for _ in range(200):
                status = http.get("/status").json()
                if not status["streaming"]:
                    break
                time.sleep(0.1)
            assert status["error"] is None
            assert status["counters"]["sent"] >= 500
            assert http.get("/docs").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    received = sum(len(r) for r in read_all(client, settings.kinesis.stream_name).values())
    assert received == status["counters"]["sent"]


class RecordingStop(threading.Event):
    """A stop event that records how long the runner asked to wait, without waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0.0))
        return False


def test_replay_is_paced_by_event_time(tmp_path: Path) -> None:
    from producer.replay import read_replay_file
    from producer.runner import Pacing, run
    from producer.sinks import file_sink

    path = tmp_path / "paced.jsonl"
    _, records = generate(1, seed=1)
    lines = []
    for moment in ("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:10.000Z"):
        event = json.loads(records[0].data)
        event["event_time"] = moment
        lines.append(json.dumps(event))
    path.write_text("\n".join(lines) + "\n")
    stop = RecordingStop()
    sink = file_sink(tmp_path / "out.jsonl")
    run(read_replay_file(path), sink, Pacing(by_event_time=True, speedup=5.0), stop=stop)
    # Ten seconds of event time at 5x: the runner waits about two seconds before the second.
    assert len(stop.waits) == 1 and stop.waits[0] == pytest.approx(2.0, abs=0.2)
    assert (tmp_path / "out.jsonl").read_text().splitlines() == lines
