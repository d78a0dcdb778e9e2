"""The alert console over real HTTP (uvicorn on a free loopback port, httpx) against moto.

Queue order, each filter and paging; 422s for bad or non-finite values; the token rule; the
card history from a Delta table read by delta-rs (local folder and s3:// on moto); verdicts:
first one wins, the same again is a no-op, another is a 409, the label event is on the stream
and names the card by token only, and the alert item records who and when.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import uvicorn
from deltalake import write_deltalake

from config.aws import make_client
from config.cli import run_cli
from config.lake import delta_uri, storage_options
from config.settings import Settings, load_config
from processor.alerts import AlertWriter, alert_item
from processor.card_tokens import card_token
from processor.console import ConsoleConfig, create_app
from processor.console.auth import RedactToken, is_loopback
from processor.console.cli import build_parser
from processor.console.cli import main as console_main
from processor.console.lake_view import card_transactions
from processor.console.verdicts import label_event, verdict_id
from processor.parse import parse_record
from producer.contract import (
    REASON_INVALID_VALUE,
    REASON_MISSING_FIELD,
    decode_event,
    encode_event,
    validate_event,
)
from scripts.local_aws import free_port
from scripts.setup_aws import ensure_alerts_table, ensure_bucket, ensure_stream

ROOT = Path(__file__).resolve().parent.parent
KEY = b"test-only-tokenisation-key"
CARD = card_token("4111111111111111", KEY)
OTHER_CARD = card_token("5555555555554444", KEY)
TOKEN = "console-test-token-0123456789"
DAY0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


# -- helpers --------------------------------------------------------------------------------


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """`app` served by uvicorn in a thread on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise AssertionError("the console did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def alert_row(tx: str, hours: float, score: float, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "transaction_id": tx,
        "card_token": CARD,
        "card_last4": "1111",
        "amount": 250.0,
        "currency": "EUR",
        "merchant_id": f"merch-{tx[-3:]}",
        "terminal_id": "term-000042",
        "event_time": DAY0 + timedelta(hours=hours),
        "approximateArrivalTimestamp": DAY0 + timedelta(hours=hours, seconds=1),
        "fraud_score": score,
        "reason_codes": ["card_tx_count_10m=6 (+0.41)", "amount_ratio_30d=9.1 (+0.20)"],
        "model_version": "model-v7",
        "decision": "ALERT",
        "label_fraud_scenario": None,
    }
    row.update(fields)
    return row


# Six alerts over six days; tx-000006 already has an analyst's verdict.
SEEDED = [
    alert_row("tx-000001", 0, 0.95, label_fraud_scenario="card_testing"),
    alert_row("tx-000002", 24, 0.70, label_fraud_scenario="account_takeover"),
    alert_row("tx-000003", 48, 0.88),
    alert_row("tx-000004", 72, 0.99, label_fraud_scenario="card_testing", decision="REVIEW"),
    alert_row("tx-000005", 96, 0.61, card_token=OTHER_CARD, card_last4="4444"),
    alert_row("tx-000006", 120, 0.91, label_fraud_scenario="structuring"),
]
NEWEST_FIRST = [f"tx-00000{i}" for i in (6, 5, 4, 3, 2, 1)]


def seed_alerts(settings: Settings, rows: list[dict[str, Any]]) -> None:
    ensure_alerts_table(make_client("dynamodb", settings.aws), settings.dynamodb.alerts_table)
    detected = int(datetime(2026, 1, 7, tzinfo=UTC).timestamp() * 1000)
    AlertWriter(settings).write_batch([alert_item(row, detected, 90, 0) for row in rows])


def transactions_table(rows: list[tuple[str, str, datetime, float]]) -> pa.Table:
    """A small transactions table with the lake's column names (id, card, time, score)."""
    return pa.table(
        {
            "transaction_id": [r[0] for r in rows],
            "card_token": [r[1] for r in rows],
            "event_time": pa.array([r[2] for r in rows], pa.timestamp("us", tz="UTC")),
            "amount": [12.5] * len(rows),
            "currency": ["EUR"] * len(rows),
            "merchant_id": ["merch-000777"] * len(rows),
            "terminal_id": ["term-000042"] * len(rows),
            "fraud_score": [r[3] for r in rows],
            "decision": ["ALERT" if r[3] >= 0.5 else "OK" for r in rows],
            "reason_codes": [["card_tx_count_10m=6 (+0.41)"]] * len(rows),
        }
    )


def shown(response: httpx.Response) -> list[str]:
    """Transaction ids of the queue's rows, in page order."""
    assert response.status_code == 200, response.text[:500]
    return re.findall(r'data-transaction="([^"]+)"', response.text)


def stream_records(settings: Settings) -> list[dict[str, Any]]:
    client = make_client("kinesis", settings.aws)
    stream = settings.kinesis.stream_name
    records: list[dict[str, Any]] = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records.extend(client.get_records(ShardIterator=iterator, Limit=1000)["Records"])
    return records


def item_of(settings: Settings, tx: str) -> dict[str, Any]:
    client = make_client("dynamodb", settings.aws)
    item = client.get_item(
        TableName=settings.dynamodb.alerts_table, Key={"transaction_id": {"S": tx}}
    )["Item"]
    return {k: next(iter(v.values())) for k, v in item.items()}


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One alerts table (SEEDED) and a local lake, shared by the read-only tests."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    lake = tmp_path_factory.mktemp("console-lake")
    settings = load_config("local").with_overrides(
        aws={"endpoint_url": moto_endpoint},
        dynamodb={"alerts_table": f"{name}-alerts"},
        kinesis={"stream_name": f"{name}-stream", "shard_count": 1},
        processor={"lake_path": str(lake)},
    )
    seed_alerts(settings, SEEDED)
    client = make_client("dynamodb", settings.aws)
    client.update_item(
        TableName=settings.dynamodb.alerts_table,
        Key={"transaction_id": {"S": "tx-000006"}},
        UpdateExpression="SET verdict = :v, verdict_by = :b, verdict_at = :a",
        ExpressionAttributeValues={
            ":v": {"S": "genuine"},
            ":b": {"S": "bob"},
            ":a": {"S": "2026-01-07T09:00:00.000Z"},
        },
    )
    rows = [("tx-000001", CARD, DAY0, 0.95)]
    rows += [(f"tx-h{i:05d}", CARD, DAY0 - timedelta(hours=i), 0.1) for i in range(1, 60)]
    rows += [("tx-000005", OTHER_CARD, DAY0 + timedelta(hours=96), 0.61)]
    write_deltalake(f"{lake}/transactions", transactions_table(rows))
    return settings


@pytest.fixture(scope="module")
def http(seeded: Settings) -> Iterator[httpx.Client]:
    with serve(create_app(seeded)) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


@pytest.fixture
def verdicts(settings: Settings) -> Iterator[tuple[Settings, httpx.Client]]:
    """A fresh alerts table (SEEDED[:3]) and stream, and a client of a console over them."""
    seed_alerts(settings, SEEDED[:3])
    ensure_stream(make_client("kinesis", settings.aws), settings.kinesis.stream_name, 1)
    app = create_app(settings, ConsoleConfig(default_analyst="console-user"))
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield settings, client


pytestmark = [pytest.mark.integration]


# -- the queue ------------------------------------------------------------------------------


def test_queue_is_newest_first_and_shows_what_an_analyst_needs(http: httpx.Client) -> None:
    response = http.get("/")
    assert shown(response) == NEWEST_FIRST
    page = response.text
    for needed in ("•••• 1111", "250.00 EUR", "merch-001", "term-000042", "0.950", "model-v7"):
        assert needed in page, needed
    assert "card_tx_count_10m=6 (+0.41)" in page and "amount_ratio_30d=9.1 (+0.20)" in page
    assert CARD not in page  # the full token stays off the queue
    assert "<script" not in page and "http://" not in page.split("</style>")[0]  # no CDN
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"decision": "REVIEW"}, ["tx-000004"]),
        ({"decision": "ALERT"}, ["tx-000006", "tx-000005", "tx-000003", "tx-000002", "tx-000001"]),
        ({"min_score": "0.9"}, ["tx-000006", "tx-000004", "tx-000001"]),
        ({"min_score": "0.99"}, ["tx-000004"]),
        ({"scenario": "card_testing"}, ["tx-000004", "tx-000001"]),
        ({"scenario": "Skimming (ring 7)"}, []),  # any name a label may carry, not only ours
        ({"verdict": "genuine"}, ["tx-000006"]),
        ({"verdict": "open"}, NEWEST_FIRST[1:]),
        ({"verdict": "confirmed_fraud"}, []),
        ({"since": "2026-01-03T10:00:00"}, ["tx-000006", "tx-000005", "tx-000004", "tx-000003"]),
        ({"until": "2026-01-02T10:00:00Z"}, ["tx-000002", "tx-000001"]),
        (
            {"since": "2026-01-02T09:00:00+00:00", "until": "2026-01-04T12:00:00+02:00"},
            ["tx-000004", "tx-000003", "tx-000002"],
        ),
        ({"scenario": "card_testing", "min_score": "0.96"}, ["tx-000004"]),
        # An HTML form sends its empty fields: they mean "no filter".
        ({"decision": "", "min_score": "", "scenario": "", "since": "", "until": ""}, NEWEST_FIRST),
    ],
)
def test_each_filter(http: httpx.Client, query: dict[str, str], expected: list[str]) -> None:
    assert shown(http.get("/", params=query)) == expected


def test_pages_keep_the_filters(http: httpx.Client) -> None:
    first = http.get("/", params={"limit": 2, "verdict": "open"})
    assert shown(first) == ["tx-000005", "tx-000004"]
    assert "5 alerts match; page 1 of 3" in " ".join(first.text.split())
    older = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert older is not None
    link = older.group(1).replace("&amp;", "&")
    assert "verdict=open" in link and "limit=2" in link
    assert shown(http.get(link)) == ["tx-000003", "tx-000002"]
    assert shown(http.get("/", params={"limit": 2, "page": 9})) == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"min_score": "abc"}, "min_score"),
        ({"min_score": "nan"}, "min_score"),
        ({"min_score": "inf"}, "min_score"),
        ({"min_score": "-Infinity"}, "min_score"),
        ({"min_score": "1.5"}, "min_score"),
        ({"decision": "MAYBE"}, "decision"),
        ({"verdict": "maybe"}, "verdict"),
        ({"scenario": "bank\nheist"}, "scenario"),
        ({"since": "yesterday"}, "since"),
        ({"page": "0"}, "page"),
        ({"limit": "100000"}, "limit"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_values_are_a_422_naming_the_field(
    http: httpx.Client, query: dict[str, str], field: str
) -> None:
    response = http.get("/", params=query)
    assert response.status_code == 422, response.text
    assert [e["loc"][-1] for e in response.json()["detail"]] == [field]


def test_a_422_is_short_and_a_browser_gets_a_page(http: httpx.Client) -> None:
    response = http.get("/", params={"scenario": "x" * 5000})
    assert response.status_code == 422 and len(response.text) < 1000
    reversed_range = {"since": "2026-01-05T00:00:00", "until": "2026-01-01T00:00:00"}
    response = http.get("/", params=reversed_range)
    assert response.status_code == 422 and "since must not be after until" in response.text
    response = http.get("/", params={"min_score": "nan"}, headers={"accept": "text/html"})
    assert response.status_code == 422 and "<h1>invalid request</h1>" in response.text
    assert "min_score" in response.text and "finite" in response.text
    assert http.get("/alerts/x").status_code == 422  # not a transaction id
    assert http.get("/alerts/tx-999999").status_code == 404


# -- one alert and its card's history from the lake -------------------------------------------


def test_alert_page_shows_the_cards_recent_transactions_from_the_lake(
    http: httpx.Client,
) -> None:
    response = http.get("/alerts/tx-000001")
    assert response.status_code == 200
    page = response.text
    assert "•••• 1111" in page and "merch-001" in page and "model-v7" in page
    assert "card_testing" in page
    rows = re.findall(r'<td class="mono">(tx-[a-z0-9]+)</td>', page)
    assert rows[0] == "tx-000001" and len(rows) == 50  # newest first, at most 50
    assert rows[1:4] == ["tx-h00001", "tx-h00002", "tx-h00003"]
    assert "tx-000005" not in rows  # another card's transaction
    assert 'class="current"' in page
    assert "Confirmed fraud" in page and "Genuine" in page  # no verdict yet


def test_card_history_limit_order_and_missing_table(seeded: Settings, tmp_path: Path) -> None:
    history = card_transactions(seeded, CARD, limit=3)
    assert [r["transaction_id"] for r in history.rows] == ["tx-000001", "tx-h00001", "tx-h00002"]
    assert card_transactions(seeded, "0" * 64).note == "no transactions of this card in the lake"
    empty = seeded.with_overrides(processor={"lake_path": str(tmp_path / "nothing")})
    note = card_transactions(empty, CARD).note
    assert note is not None and "no transactions table" in note
    (tmp_path / "broken" / "transactions" / "_delta_log").mkdir(parents=True)
    (tmp_path / "broken" / "transactions" / "_delta_log" / "00000000000000000000.json").write_text(
        "not json"
    )
    broken = seeded.with_overrides(processor={"lake_path": str(tmp_path / "broken")})
    note = card_transactions(broken, CARD).note
    assert note is not None and note.startswith("the lake could not be read")


def test_card_history_from_an_s3a_lake_on_the_emulator(settings: Settings) -> None:
    ensure_bucket(make_client("s3", settings.aws), settings.s3.bucket, settings.aws.region)
    lake = f"s3a://{settings.s3.bucket}/lake"
    assert delta_uri(lake, "transactions") == f"s3://{settings.s3.bucket}/lake/transactions"
    options = storage_options(settings.aws)
    assert options["AWS_ALLOW_HTTP"] == "true" and options["AWS_ENDPOINT_URL"].startswith("http")
    rows = [("tx-s3-0001", CARD, DAY0, 0.9), ("tx-s3-0002", CARD, DAY0 + timedelta(hours=1), 0.2)]
    write_deltalake(
        delta_uri(lake, "transactions"), transactions_table(rows), storage_options=options
    )
    on_s3 = settings.with_overrides(processor={"lake_path": lake})
    history = card_transactions(on_s3, CARD)
    assert [r["transaction_id"] for r in history.rows] == ["tx-s3-0002", "tx-s3-0001"]


# -- verdicts -------------------------------------------------------------------------------


def post_verdict(
    client: httpx.Client, tx: str, verdict: str, analyst: str | None = "alice", **headers: str
) -> httpx.Response:
    form = {"verdict": verdict} if analyst is None else {"verdict": verdict, "analyst": analyst}
    return client.post(f"/alerts/{tx}/verdict", data=form, headers=headers)


def test_first_verdict_wins_same_again_is_a_no_op_another_is_409(
    verdicts: tuple[Settings, httpx.Client],
) -> None:
    settings, client = verdicts
    before = datetime.now(UTC)
    response = post_verdict(client, "tx-000001", "confirmed_fraud")
    assert response.status_code == 303
    assert response.headers["location"] == "/alerts/tx-000001?verdict=recorded"
    item = item_of(settings, "tx-000001")
    assert item["verdict"] == "confirmed_fraud" and item["verdict_by"] == "alice"
    at = datetime.fromisoformat(item["verdict_at"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= at <= datetime.now(UTC)
    assert item["verdict_label_id"] == "verdict-tx-000001" and item["verdict_sent_at"]

    # The label event: a chargeback naming the card by token, never by PAN.
    records = stream_records(settings)
    assert len(records) == 1 and records[0]["PartitionKey"] == CARD
    event = decode_event(records[0]["Data"])
    assert validate_event(event) is None and "card_number" not in event
    assert event == {
        "schema_version": 1,
        "event_type": "chargeback",
        "event_time": item["verdict_at"],
        "chargeback_id": "verdict-tx-000001",
        "transaction_id": "tx-000001",
        "card_token": CARD,
        "card_last4": "1111",
        "terminal_id": "term-000042",
        "transaction_time": "2026-01-01T10:00:00.000Z",
        "confirmed_fraud": True,
    }

    again = post_verdict(client, "tx-000001", "confirmed_fraud", analyst="carol")
    assert again.status_code == 303 and again.headers["location"].endswith("verdict=repeated")
    assert item_of(settings, "tx-000001") == item  # who and when stay the first verdict's
    assert len(stream_records(settings)) == 1  # its label was sent: not again

    other = post_verdict(client, "tx-000001", "genuine", analyst="carol")
    assert other.status_code == 409
    assert "already has the verdict 'confirmed fraud' (by alice" in other.json()["detail"]
    assert item_of(settings, "tx-000001") == item and len(stream_records(settings)) == 1

    page = client.get("/alerts/tx-000001?verdict=recorded").text
    assert "Verdict recorded" in page and "by alice at" in page
    assert 'value="confirmed_fraud"' not in page  # decided and sent: no buttons
    assert post_verdict(client, "tx-777777", "genuine").status_code == 404


def test_genuine_and_the_console_user_when_the_name_is_blank(
    verdicts: tuple[Settings, httpx.Client],
) -> None:
    settings, client = verdicts
    assert post_verdict(client, "tx-000002", "genuine", analyst="  ").status_code == 303
    item = item_of(settings, "tx-000002")
    assert item["verdict"] == "genuine" and item["verdict_by"] == "console-user"
    (record,) = stream_records(settings)
    assert decode_event(record["Data"])["confirmed_fraud"] is False


def test_no_name_at_all_is_a_422(settings: Settings) -> None:
    seed_alerts(settings, SEEDED[:1])
    with serve(create_app(settings)) as base, httpx.Client(base_url=base) as client:
        response = post_verdict(client, "tx-000001", "genuine", analyst=None)
    assert response.status_code == 422 and "analyst" in response.text
    assert "verdict" not in item_of(settings, "tx-000001")


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("verdict=maybe&analyst=alice", "application/x-www-form-urlencoded", 422),
        ("verdict=genuine&analyst=" + "a" * 41, "application/x-www-form-urlencoded", 422),
        ("verdict=genuine&analyst=%3Cscript%3E", "application/x-www-form-urlencoded", 422),
        ("verdict=genuine&verdict=confirmed_fraud", "application/x-www-form-urlencoded", 422),
        ("verdict=genuine&role=admin", "application/x-www-form-urlencoded", 422),
        ('{"verdict": "genuine"}', "application/json", 422),
        ("verdict=genuine&analyst=" + "a" * 10_000, "application/x-www-form-urlencoded", 413),
    ],
)
def test_bad_verdict_forms(
    verdicts: tuple[Settings, httpx.Client], body: str, content_type: str, status: int
) -> None:
    settings, client = verdicts
    response = client.post(
        "/alerts/tx-000003/verdict", content=body, headers={"content-type": content_type}
    )
    assert response.status_code == status, response.text
    assert len(response.text) < 1000  # quotes an excerpt at most
    assert "verdict" not in item_of(settings, "tx-000003")
    assert stream_records(settings) == []


def test_a_label_that_failed_to_send_is_sent_by_the_repeat(
    verdicts: tuple[Settings, httpx.Client],
) -> None:
    settings, client = verdicts
    elsewhere = settings.with_overrides(kinesis={"stream_name": f"{uuid.uuid4().hex}-missing"})
    with serve(create_app(elsewhere)) as base, httpx.Client(base_url=base) as broken:
        failed = post_verdict(broken, "tx-000003", "confirmed_fraud")
    assert failed.status_code == 503 and "give the same verdict again" in failed.text
    item = item_of(settings, "tx-000003")
    assert item["verdict"] == "confirmed_fraud" and "verdict_sent_at" not in item
    assert "label not sent yet" in client.get("/alerts/tx-000003").text

    retried = post_verdict(client, "tx-000003", "confirmed_fraud", analyst="bob")
    assert retried.headers["location"].endswith("verdict=repeated")
    (record,) = stream_records(settings)
    sent = item_of(settings, "tx-000003")
    assert sent["verdict_by"] == "alice" and sent["verdict_sent_at"]
    # The same bytes whenever the label is built from the item: a re-send is a duplicate.
    assert record["Data"] == encode_event(label_event(item))


def test_a_form_from_another_origin_or_host_is_refused(
    verdicts: tuple[Settings, httpx.Client],
) -> None:
    settings, client = verdicts
    evil = post_verdict(client, "tx-000001", "genuine", origin="http://evil.example")
    assert evil.status_code == 403
    assert client.get("/", headers={"host": "rebound.example"}).status_code == 400
    assert "verdict" not in item_of(settings, "tx-000001")
    same = post_verdict(client, "tx-000001", "genuine", origin=str(client.base_url).rstrip("/"))
    assert same.status_code == 303


# -- the token rule -------------------------------------------------------------------------


def test_loopback_names() -> None:
    for host in ("127.0.0.1", "127.9.8.7", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "console.example.com"):
        assert not is_loopback(host), host


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--host", "0.0.0.0"], "needs a token: set FRAUD_CONSOLE_TOKEN"),
        (["--host", "10.1.2.3", "--token", "short"], "at least 16 characters"),
        (["--analyst", "<b>"], "--analyst must be"),
    ],
)
def test_the_cli_refuses_to_start_in_one_line(
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("FRAUD_CONSOLE_TOKEN", raising=False)

    def started(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the console started serving")

    monkeypatch.setattr(uvicorn, "run", started)
    assert run_cli(console_main, argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_python_m_console_refuses_a_public_bind_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if k != "FRAUD_CONSOLE_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "processor.console", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: binding the console to 0.0.0.0 (not loopback) needs")
    assert len(result.stderr.strip().splitlines()) == 1


def test_python_m_console_serves_on_loopback(seeded: Settings) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "FRAUD_CONSOLE_TOKEN"}
    env.update(
        FRAUD_ENDPOINT_URL=str(seeded.aws.endpoint_url),
        FRAUD_ALERTS_TABLE=seeded.dynamodb.alerts_table,
    )
    command = [sys.executable, "-m", "processor.console", "--profile", "local"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "WARNING"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the console did not start"
                time.sleep(0.2)
        assert shown(response) == NEWEST_FIRST
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_with_a_token_every_request_carries_it(seeded: Settings) -> None:
    app = create_app(seeded, ConsoleConfig(token=TOKEN, default_analyst="x"))
    with serve(app) as base, httpx.Client(base_url=base) as client:
        assert client.get("/").status_code == 401
        assert client.get("/health").status_code == 401
        assert client.get("/alerts/tx-000001").status_code == 401
        assert post_verdict(client, "tx-000001", "genuine").status_code == 401
        wrong = {"authorization": "Bearer " + TOKEN[:-1] + "x"}
        assert client.get("/", headers=wrong).status_code == 403
        assert client.get("/", params={"token": "nope"}).status_code == 403
        bearer = {"authorization": f"Bearer {TOKEN}"}
        assert shown(client.get("/", headers=bearer)) == NEWEST_FIRST

        login = client.get("/", params={"token": TOKEN, "min_score": "0.9"})
        assert login.status_code == 303 and login.headers["location"] == "/?min_score=0.9"
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        # httpx keeps the cookie: the redirect target and later pages work without the token.
        assert shown(client.get(login.headers["location"])) == [
            "tx-000006",
            "tx-000004",
            "tx-000001",
        ]
        assert client.get("/alerts/tx-000001").status_code == 200
    assert "verdict" not in item_of(seeded, "tx-000001")


def test_the_token_never_reaches_the_log() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s"',
        ("1.2.3.4", "GET", "/?token=s3cr3t&a=1"),
        None,
    )
    RedactToken().filter(record)
    assert record.getMessage() == '1.2.3.4 - "GET /?token=***&a=1"'


# -- the verdict's event in the contract and the parse step ---------------------------------


def verdict_event(**changes: Any) -> dict[str, Any]:
    event = {
        "schema_version": 1,
        "event_type": "chargeback",
        "event_time": "2026-01-09T10:00:00.000Z",
        "chargeback_id": "verdict-tx-000001",
        "transaction_id": "tx-000001",
        "card_token": CARD,
        "card_last4": "1111",
        "terminal_id": "term-000042",
        "transaction_time": "2026-01-01T10:00:00.000Z",
        "confirmed_fraud": True,
    }
    event.update(changes)
    return {k: v for k, v in event.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "reason", "field"),
    [
        ({"card_number": "4111111111111111"}, REASON_INVALID_VALUE, "card_token"),
        ({"card_token": None, "card_last4": None}, REASON_MISSING_FIELD, "card_number"),
        ({"card_last4": None}, REASON_MISSING_FIELD, "card_last4"),
        ({"card_token": "ABC"}, REASON_INVALID_VALUE, "card_token"),
        ({"card_last4": "11a1"}, REASON_INVALID_VALUE, "card_last4"),
        (
            {"card_token": None, "card_number": "4111111111111111"},
            REASON_INVALID_VALUE,
            "card_last4",
        ),
    ],
)
def test_a_chargeback_names_its_card_once(changes: dict[str, Any], reason: str, field: str) -> None:
    assert validate_event(verdict_event()) is None
    problem = validate_event(verdict_event(**changes))
    assert problem is not None and (problem.reason, problem.field) == (reason, field)


def test_the_parse_step_keeps_a_verdicts_token() -> None:
    source: dict[str, list[Any]] = {
        "data": [encode_event(verdict_event())],
        "shardId": ["shardId-000000000000"],
        "sequenceNumber": ["1"],
        "subSequenceNumber": [0],
        "approximateArrivalTimestamp": [datetime(2026, 1, 9, 10, 0, 1, tzinfo=UTC)],
    }
    row = parse_record(source, 0, KEY)
    assert row["dead_letter_reason"] is None
    assert (row["card_token"], row["card_last4"]) == (CARD, "1111")
    assert row["dedupe_key"] == "chargeback:verdict-tx-000001" and row["confirmed_fraud"] is True


def test_verdict_ids_stay_within_the_contracts_64_characters() -> None:
    assert verdict_id("tx-000001") == "verdict-tx-000001"
    long_id = verdict_id("t" * 64)
    assert len(long_id) <= 64 and long_id.startswith("verdict-") and long_id == verdict_id("t" * 64)


def test_every_flag_has_help_and_the_console_script_is_declared() -> None:
    import tomllib

    parser = build_parser()
    for action in parser._actions:
        assert action.help, action.dest
    assert "(default: 127.0.0.1)" in " ".join(parser.format_help().split())
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["fraud-console"] == "processor.console.cli:cli"
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert data["package-data"]["processor.console"] == ["templates/*.html"]
    templates = {p.name for p in (ROOT / "processor/console/templates").glob("*.html")}
    assert templates == {"base.html", "queue.html", "alert.html", "error.html"}
