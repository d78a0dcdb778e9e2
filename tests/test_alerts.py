"""The DynamoDB alert writer: item shape, UnprocessedItems retries, idempotent keys."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pyspark.sql import Row

from config.aws import make_client
from config.exceptions import DeliveryError
from config.settings import Settings
from processor.alerts import AlertWriter, alert_item
from scripts.setup_aws import ensure_alerts_table


def alert_row(tx: str, score: float = 0.93) -> dict[str, Any]:
    return Row(
        transaction_id=tx,
        card_token="tok",
        card_last4="4242",
        amount=129.5,
        currency="EUR",
        merchant_id="m1",
        terminal_id="t1",
        event_time=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
        approximateArrivalTimestamp=datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC),
        fraud_score=score,
        reason_codes=["card_tx_count_10m=6 (+0.41)"],
        model_version="v1",
        decision="ALERT",
        label_fraud_scenario="card_testing",
    ).asDict()


def test_item_has_what_an_analyst_needs() -> None:
    detected = int(datetime(2026, 1, 1, 12, 0, 3, tzinfo=UTC).timestamp() * 1000)
    item = alert_item(alert_row("tx1"), detected, ttl_days=90, batch_id=7)
    assert item["transaction_id"] == "tx1" and item["card_last4"] == "4242"
    assert item["amount"] == Decimal("129.5") and item["fraud_score"] == Decimal("0.930000")
    assert item["alert_latency_ms"] == 3000 and item["arrival_to_alert_ms"] == 2000
    assert item["expires_at"] == detected // 1000 + 90 * 86_400
    assert item["reason_codes"] == ["card_tx_count_10m=6 (+0.41)"]
    assert item["detected_at"] == "2026-01-01T12:00:03.000+00:00"
    assert item["label_fraud_scenario"] == "card_testing"  # the console filters on it
    unlabelled = alert_item({**alert_row("tx2"), "label_fraud_scenario": None}, detected, 90, 7)
    assert "label_fraud_scenario" not in unlabelled  # no empty attributes in DynamoDB


class Unprocessing:
    """A DynamoDB client that leaves items unprocessed for the first `times` calls.

    moto always processes every item, so the retry path needs this stand-in.
    """

    def __init__(self, real: Any, times: int) -> None:
        self.real, self.times, self.calls = real, times, 0

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls += 1
        if self.calls <= self.times:
            table, requests = next(iter(RequestItems.items()))
            done = self.real.batch_write_item(RequestItems={table: requests[:1]})
            return {**done, "UnprocessedItems": {table: requests[1:]}}
        return self.real.batch_write_item(RequestItems=RequestItems)


@pytest.mark.integration
def test_unprocessed_items_are_retried_until_written(settings: Settings) -> None:
    real = make_client("dynamodb", settings.aws)
    ensure_alerts_table(real, settings.dynamodb.alerts_table)
    writer = AlertWriter(settings, base_delay_s=0.001)
    writer._client = Unprocessing(real, times=3)
    items = [alert_item(alert_row(f"tx{i}"), 1_767_270_000_000, 90, 0) for i in range(30)]
    writer.write_batch(items[:25])
    writer.write_batch(items[25:])
    assert writer.stats.retries == 3
    scanned = real.scan(TableName=settings.dynamodb.alerts_table)["Items"]
    assert sorted(i["transaction_id"]["S"] for i in scanned) == sorted(f"tx{i}" for i in range(30))
    # The same keys again (a replayed batch) overwrite: still 30 items.
    writer.write_batch(items[:25])
    assert real.scan(TableName=settings.dynamodb.alerts_table)["Count"] == 30


@pytest.mark.integration
def test_gives_up_loudly_so_the_batch_is_replayed(settings: Settings) -> None:
    real = make_client("dynamodb", settings.aws)
    ensure_alerts_table(real, settings.dynamodb.alerts_table)
    writer = AlertWriter(settings, max_attempts=2, base_delay_s=0.001)
    writer._client = Unprocessing(real, times=10)
    items = [alert_item(alert_row(f"tx{i}"), 1_767_270_000_000, 90, 0) for i in range(5)]
    with pytest.raises(DeliveryError, match="after 2 BatchWriteItem attempts"):
        writer.write_batch(items)


@pytest.mark.integration
def test_a_replayed_batch_keeps_an_analysts_verdict(settings: Settings) -> None:
    real = make_client("dynamodb", settings.aws)
    table = settings.dynamodb.alerts_table
    ensure_alerts_table(real, table)
    writer = AlertWriter(settings)
    rows = [alert_row("tx-verdict"), alert_row("tx-open")]
    writer(rows, 7)
    # An analyst confirms one alert in the console between the batch's attempt and its replay.
    real.update_item(
        TableName=table,
        Key={"transaction_id": {"S": "tx-verdict"}},
        UpdateExpression="SET verdict = :v, verdict_by = :by, verdict_at = :at",
        ExpressionAttributeValues={
            ":v": {"S": "confirmed_fraud"},
            ":by": {"S": "ana"},
            ":at": {"S": "2026-01-01T12:05:00.000Z"},
        },
    )
    writer(rows, 7)  # the replay puts both items again, whole
    items = {i["transaction_id"]["S"]: i for i in real.scan(TableName=table)["Items"]}
    assert items["tx-verdict"]["verdict"]["S"] == "confirmed_fraud"
    assert items["tx-verdict"]["verdict_by"]["S"] == "ana"
    assert "verdict" not in items["tx-open"]
    assert items["tx-verdict"]["fraud_score"] == items["tx-open"]["fraud_score"]  # still rewritten
