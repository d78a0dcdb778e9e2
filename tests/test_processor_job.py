"""The processor's spine end to end: Kinesis (moto) -> job -> Delta, exactly once."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from config.aws import make_client
from config.settings import Settings
from processor.alerts import scan_alerts
from processor.card_tokens import card_token, mask_pans
from processor.job import ingest, lake_writer, transform, write
from processor.scoring import frame_scorer
from processor.sinks import LakeWriter, table_path
from producer.contract import encode_event, format_epoch_ms, parse_payload
from producer.generator import GeneratorOptions, TransactionGenerator
from producer.kinesis_writer import KinesisWriter
from producer.records import OutgoingRecord
from producer.stats import SendStats
from scripts.setup_aws import ensure_alerts_table, ensure_bucket, ensure_stream

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.integration]


@dataclass
class Produced:
    generator: TransactionGenerator
    records: list[OutgoingRecord]

    @property
    def anomalies(self) -> list[Any]:
        return self.generator.anomalies


def produce(settings: Settings, n: int, **options: Any) -> Produced:
    """Generate `n` transactions (and what comes with them) and put them on the stream."""
    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, settings.kinesis.shard_count)
    generator = TransactionGenerator(GeneratorOptions(num_transactions=n, **options))
    writer = KinesisWriter(
        client, settings.kinesis.stream_name, SendStats(), settings.producer.failed_records_path
    )
    records = list(generator.records())
    writer.put(records)
    writer.flush()
    return Produced(generator, records)


def expected_transactions(produced: Produced) -> set[str]:
    """Ids of the valid transactions sent (a duplicate's first copy included)."""
    ids = set()
    for record in produced.records:
        event, problem = parse_payload(record.data)
        if problem is None and event is not None and record.anomaly in (None, "duplicate"):
            if event["event_type"] == "transaction" and not event["event_time"].startswith("2099"):
                ids.add(event["transaction_id"])
    return ids


def run_available_now(spark: Any, settings: Settings) -> LakeWriter:
    scored = Path(settings.model.path, "model_card.json").exists()
    writer = lake_writer(settings, frame_scorer(settings) if scored else None)
    query = write(transform(ingest(spark, settings), settings), settings, writer, True)
    query.awaitTermination()
    assert query.exception() is None
    return writer


def all_pans(produced: Produced) -> set[bytes]:
    return {pan.encode() for pan in produced.generator.population.card_number}


def assert_no_pan_under(folder: Path, pans: set[bytes]) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            leaked = [pan for pan in pans if pan in content]
            assert not leaked, f"full card number in {path}"


def test_tokenisation_and_masking() -> None:
    key = b"k" * 32
    token = card_token("4111111111111111", key)
    assert token == card_token("4111111111111111", key) != card_token("4111111111111111", b"x" * 32)
    masked = mask_pans(b'{"card_number":"4111111111111111","ts":"1767225600000"}', key)
    assert b"4111111111111111" not in masked and b"_1111" in masked
    assert b"1767225600000" in masked  # not Luhn-valid: not a card number, left as is


@pytest.mark.slow
def test_end_to_end_exactly_once_with_dead_letters(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    produced = produce(settings, 5_000, seed=13, fraud_rate=0.01, anomaly_rate=0.03)
    writer = run_available_now(spark, settings)
    lake = settings.processor.lake_path

    transactions = spark.read.format("delta").load(table_path(lake, "transactions"))
    ids = [row.transaction_id for row in transactions.select("transaction_id").collect()]
    assert len(ids) == len(set(ids))  # the duplicates were dropped
    assert set(ids) == expected_transactions(produced)
    assert "card_number" not in transactions.columns
    assert {"card_token", "card_last4", "label_is_fraud", "event_date"} <= set(transactions.columns)

    dead = spark.read.format("delta").load(table_path(lake, "dead_letters")).collect()
    broken = [a for a in produced.anomalies if a.kind != "duplicate"]
    assert Counter(row.reason for row in dead) == Counter(a.expected_reason for a in broken)
    assert all(row.shardId and row.sequenceNumber for row in dead)
    assert writer.stats.totals["dead_letters"] == len(broken)

    auth_rows = spark.read.format("delta").load(table_path(lake, "auth_events")).count()
    assert auth_rows == sum(r.event_type == "auth" for r in produced.records)

    pans = all_pans(produced)
    assert_no_pan_under(Path(lake), pans)
    assert_no_pan_under(Path(settings.processor.checkpoint_location), pans)


def job_env(settings: Settings) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "JAVA_HOME": os.environ.get("JAVA_HOME", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYSPARK_PYTHON": sys.executable,
        "CARD_TOKEN_KEY": os.environ["CARD_TOKEN_KEY"],
        "FRAUD_ENDPOINT_URL": str(settings.aws.endpoint_url),
        "FRAUD_STREAM_NAME": settings.kinesis.stream_name,
        "FRAUD_LAKE_PATH": settings.processor.lake_path,
        "FRAUD_CHECKPOINT_LOCATION": settings.processor.checkpoint_location,
        "FRAUD_MODEL_PATH": settings.model.path,
        "FRAUD_ALERTS_TABLE": settings.dynamodb.alerts_table,
    }


def start_job(settings: Settings, *args: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "processor.job", "--metrics-port", "0", *args],
        cwd=ROOT,
        env=job_env(settings),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def committed_batches(lake: str) -> int:
    log = Path(lake) / "transactions" / "_delta_log"
    return len(list(log.glob("*.json"))) if log.exists() else 0


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.mark.slow
def test_sigkill_loop_loses_duplicates_and_leaves_unscored_nothing(
    spark: Any, settings: Settings, tmp_path: Path, trained_model: Path
) -> None:
    # Synthetic history is compressed: hours of event time arrive in seconds (a stream produced
    # faster than real time), and one PutRecords call may reorder records of different cards.
    # Late or not, every valid transaction must be scored exactly once.
    settings = settings.with_overrides(model={"path": str(trained_model)})
    ensure_alerts_table(make_client("dynamodb", settings.aws), settings.dynamodb.alerts_table)
    produced = produce(
        settings, 3_000, seed=31, anomaly_rate=0.02, fraud_rate=0.03, num_customers=20_000
    )
    lake = settings.processor.lake_path
    log = tmp_path / "job.log"
    small = ("--trigger-interval", "1 second", "--max-records-per-shard", "150")

    # Three SIGKILLs: right after a batch committed, and twice at a random moment inside the
    # next batches; each time the job restarts on the same checkpoint.
    rng = random.Random(7)
    for kill in range(3):
        seen = committed_batches(lake)
        job = start_job(settings, *small, log=log)
        wait_for(
            lambda seen=seen, job=job: committed_batches(lake) > seen or job.poll() is not None,
            240,
            "a batch",
        )
        assert job.poll() is None, log.read_text()[-3000:]
        if kill:
            time.sleep(rng.uniform(0.2, 2.5))  # mid-batch, most likely
        job.send_signal(signal.SIGKILL)
        job.wait(30)

    # Restart once more; a SIGTERM now stops it cleanly after its batch.
    killed_at = committed_batches(lake)
    job = start_job(settings, *small, log=log)
    wait_for(
        lambda: committed_batches(lake) > killed_at or job.poll() is not None, 240, "a restart"
    )
    assert job.poll() is None, log.read_text()[-3000:]
    job.send_signal(signal.SIGTERM)
    assert job.wait(240) == 0, log.read_text()[-3000:]

    finish = start_job(settings, "--available-now", log=log)
    assert finish.wait(300) == 0, log.read_text()[-3000:]

    rows = spark.read.format("delta").load(table_path(lake, "transactions"))
    ids = [row.transaction_id for row in rows.select("transaction_id").collect()]
    assert len(ids) == len(set(ids))  # 0 duplicated
    assert set(ids) == expected_transactions(produced)  # 0 lost
    assert rows.where("fraud_score IS NULL").count() == 0  # 0 unscored
    # 0 in two tables: dead letters are the injected contract breaks only (no `late`, and the
    # generator's duplicates are exact copies, dropped rather than kept as conflicts).
    dead = spark.read.format("delta").load(table_path(lake, "dead_letters")).collect()
    broken = [a for a in produced.anomalies if a.kind != "duplicate"]
    assert Counter(r.reason for r in dead) == Counter(a.expected_reason for a in broken)
    # Alerts: exactly the ALERT rows of the table, each once (the key is the transaction id,
    # and a replayed batch rewrote its own items).
    alerted = {r.transaction_id for r in rows.where("decision = 'ALERT'").collect()}
    items = scan_alerts(settings)
    assert alerted, "the model should alert on some of the fraud"
    assert sorted(i["transaction_id"]["S"] for i in items) == sorted(alerted)
    assert_no_pan_under(tmp_path, all_pans(produced))


@pytest.mark.slow
def test_delta_on_s3a_against_moto(spark: Any, settings: Settings) -> None:
    """The lake on s3a:// (moto's S3). The checkpoint stays local: moto's HTTP server answers
    the AWS SDK v2's multipart uploads of RocksDB state files with a bare `100 Continue` that
    the SDK reports as an error, which real S3 and LocalStack do not."""
    ensure_bucket(make_client("s3", settings.aws), settings.s3.bucket, settings.aws.region)
    s3 = settings.with_overrides(processor={"lake_path": f"s3a://{settings.s3.bucket}/lake"})
    produced = produce(s3, 300, seed=5, anomaly_rate=0.05)
    run_available_now(spark, s3)
    rows = spark.read.format("delta").load(f"s3a://{settings.s3.bucket}/lake/transactions")
    assert {r.transaction_id for r in rows.collect()} == expected_transactions(produced)
    dead = spark.read.format("delta").load(f"s3a://{settings.s3.bucket}/lake/dead_letters")
    assert dead.count() == len([a for a in produced.anomalies if a.kind != "duplicate"])
    listing = make_client("s3", settings.aws).list_objects_v2(
        Bucket=settings.s3.bucket, Prefix="lake/transactions/_delta_log/"
    )
    assert listing["KeyCount"] >= 1


@pytest.mark.slow
def test_late_events_are_scored_once_and_flagged(
    spark: Any, settings: Settings, trained_model: Path
) -> None:
    settings = settings.with_overrides(model={"path": str(trained_model)})
    produced = produce(settings, 400, seed=17, anomaly_rate=0.0)
    run_available_now(spark, settings)
    lake = settings.processor.lake_path
    first = spark.read.format("delta").load(table_path(lake, "transactions"))
    newest = max(r.event_time for r in first.select("event_time").collect())
    newest_ms = int(newest.replace(tzinfo=UTC).timestamp() * 1000)

    # An hour and two days behind everything seen so far, one just inside the watermark; the
    # two-day-late one is sent twice.
    template = json.loads(next(r.data for r in produced.records if r.event_type == "transaction"))
    behind = {"tx-late-1h-0001": 3_600_000, "tx-late-2d-0001": 2 * 86_400_000, "tx-fresh-00001": 0}
    events = [
        dict(template, transaction_id=tx_id, event_time=format_epoch_ms(newest_ms - ms - 60_000))
        for tx_id, ms in behind.items()
    ]
    client = make_client("kinesis", settings.aws)
    client.put_records(
        StreamName=settings.kinesis.stream_name,
        Records=[
            {"PartitionKey": template["card_number"], "Data": encode_event(e)}
            for e in [*events, events[1]]
        ],
    )
    writer = run_available_now(spark, settings)
    assert writer.stats.late == 2 and writer.stats.duplicates == 1  # the metric counts these

    rows = {
        r.transaction_id: r
        for r in spark.read.format("delta").load(table_path(lake, "transactions")).collect()
    }
    assert len(rows) == len(expected_transactions(produced)) + 3
    assert rows["tx-late-1h-0001"].late and rows["tx-late-2d-0001"].late
    assert not rows["tx-fresh-00001"].late
    assert rows["tx-late-2d-0001"].lateness_ms > 2 * 86_400_000 - 10 * 60_000
    assert all(rows[tx_id].fraud_score is not None for tx_id in behind)
    assert not Path(table_path(lake, "dead_letters")).exists()  # dead letters: contract only


def _digits_only(data: bytes) -> bytes:
    """The bytes with JSON digit escapes decoded and everything but digits and letters gone."""
    decoded = re.sub(rb"\\u003([0-9])", rb"\1", data)
    return re.sub(rb"[^0-9A-Za-z]", b"", decoded)


@pytest.mark.slow
def test_poison_records_and_written_pans_stop_nothing_and_rest_nowhere(
    spark: Any, settings: Settings
) -> None:
    produced = produce(settings, 100, seed=23, anomaly_rate=0.0)
    template = json.loads(next(r.data for r in produced.records if r.event_type == "transaction"))
    pan = template["card_number"]
    groups = [pan[i : i + 4] for i in range(0, len(pan), 4)]
    escaped = "".join(f"\\u{ord(c):04x}" for c in pan).encode()
    poison: dict[bytes, str] = {
        b"[" * 10_000 + b"]" * 10_000: "not_json",
        encode_event({**template, "schema_version": [1]}): "unknown_schema_version",
        encode_event({**template, "event_type": {"x": 1}}): "unknown_event_type",
        encode_event({**template, "event_time": "9999-12-31T23:59:59-01:00"}): "invalid_value",
        encode_event({**template, "currency": " ".join(groups)}): "invalid_value",
        encode_event({**template, "channel": "-".join(groups)}): "invalid_value",
        encode_event({**template, "schema_version": pan}): "unknown_schema_version",
        encode_event({**template, "amount": "x"})[:-1] + b',"n":"' + escaped + b'"}': "wrong_type",
    }
    client = make_client("kinesis", settings.aws)
    client.put_records(
        StreamName=settings.kinesis.stream_name,
        Records=[{"PartitionKey": pan, "Data": data} for data in poison],
    )
    run_available_now(spark, settings)  # asserts the query ended without an exception

    lake = Path(settings.processor.lake_path)
    dead = spark.read.format("delta").load(table_path(str(lake), "dead_letters")).collect()
    assert Counter(row.reason for row in dead) == Counter(poison.values())
    prefix = pan[:12].encode()
    for row in dead:
        assert prefix not in _digits_only(row.raw_payload)
        assert prefix not in _digits_only((row.detail or "").encode())
    # Delta's log holds column statistics (min/max prefixes of strings): no PAN prefix there.
    for log in lake.rglob("_delta_log/*.json"):
        assert prefix not in _digits_only(log.read_bytes()), log
    assert {
        r.transaction_id
        for r in spark.read.format("delta").load(table_path(str(lake), "transactions")).collect()
    } == expected_transactions(produced)
