"""Alerts to DynamoDB: one item per ALERT transaction, keyed by `transaction_id`.

A replayed micro-batch writes the same keys again, so it overwrites its own items and never
adds new ones: at-least-once delivery gives exactly-once alerts. Writes go through
BatchWriteItem (25 items per call); UnprocessedItems are retried with exponential backoff and
jitter, and a batch that still cannot be written fails the micro-batch, so Spark replays it
rather than losing alerts.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from config.aws import make_client
from config.exceptions import DeliveryError
from producer.contract import to_epoch_ms

if TYPE_CHECKING:
    from collections.abc import Mapping

    from config.settings import Settings
    from processor.sinks import BatchColumns

logger = logging.getLogger(__name__)

MAX_BATCH = 25
_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def alert_item(
    row: Mapping[str, Any], detected_ms: int, ttl_days: int, batch_id: int
) -> dict[str, Any]:
    """The DynamoDB item of one alert (plain Python values; serialised later)."""
    event_ms = to_epoch_ms(row["event_time"])
    arrival = row["approximateArrivalTimestamp"]
    item: dict[str, Any] = {
        "transaction_id": row["transaction_id"],
        "card_token": row["card_token"],
        "card_last4": row["card_last4"],
        "amount": Decimal(str(row["amount"])),
        "currency": row["currency"],
        "merchant_id": row["merchant_id"],
        "terminal_id": row["terminal_id"],
        "event_time": datetime.fromtimestamp(event_ms / 1000, UTC).isoformat(
            timespec="milliseconds"
        ),
        "fraud_score": Decimal(f"{row['fraud_score']:.6f}"),
        "reason_codes": list(row["reason_codes"] or []),
        "model_version": row["model_version"],
        "decision": row["decision"],
        # The generator's ground truth, when the event carried a label: lets the alert console
        # filter a demo's queue by scenario. Never a feature; absent on real traffic.
        "label_fraud_scenario": row.get("label_fraud_scenario"),
        "detected_at": _iso(detected_ms),
        "alert_latency_ms": detected_ms - event_ms,
        "batch_id": batch_id,
        "expires_at": detected_ms // 1000 + ttl_days * 86_400,
    }
    if arrival is not None:
        item["arrival_to_alert_ms"] = detected_ms - to_epoch_ms(arrival)
    return {key: value for key, value in item.items() if value is not None}


def scan_alerts(settings: Settings) -> list[dict[str, Any]]:
    """Every item of the alerts table (for the demo's summary and the tests; small tables)."""
    client = make_client("dynamodb", settings.aws)
    pages = client.get_paginator("scan").paginate(TableName=settings.dynamodb.alerts_table)
    return [item for page in pages for item in page["Items"]]


# What the alert console adds to an item (processor/console/verdicts.py); a replay keeps it.
KEPT = (
    "verdict",
    "verdict_by",
    "verdict_at",
    "verdict_label_id",
    "verdict_sent_at",
    "verdict_sequence_number",
)

# Event -> alert latencies kept for benchmarks: the most recent ones only, so a job that runs
# for months holds no growing list (Prometheus gets every one, as a histogram).
RECENT_LATENCIES = 20_000


@dataclass
class AlertStats:
    written: int = 0
    retries: int = 0
    # Event time -> alert written (ms), the most recent RECENT_LATENCIES alerts.
    latencies_ms: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_LATENCIES))


@dataclass
class AlertWriter:
    """A LakeWriter transaction sink: the ALERT rows of a scored batch -> the alerts table."""

    settings: Settings
    max_attempts: int = 8
    base_delay_s: float = 0.05
    stats: AlertStats = field(default_factory=AlertStats)
    # Called after each batch's alerts are written, with each one's Kinesis arrival -> written
    # latency in seconds (the job's metrics histogram).
    on_written: Callable[[list[float]], None] | None = None
    _client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client("dynamodb", self.settings.aws)
        return self._client

    def __call__(
        self,
        transactions: list[dict[str, Any]],
        batch_id: int,
        columns: BatchColumns | None = None,  # the ALERT rows carry what an item needs
    ) -> None:
        rows = [row for row in transactions if row.get("decision") == "ALERT"]
        if not rows:
            return
        detected_ms = int(time.time() * 1000)
        ttl = self.settings.dynamodb.alert_ttl_days
        items = [alert_item(row, detected_ms, ttl, batch_id) for row in rows]
        for start in range(0, len(items), MAX_BATCH):
            chunk = items[start : start + MAX_BATCH]
            self.keep_verdicts(chunk)
            self.write_batch(chunk)
        written_ms = int(time.time() * 1000)
        self.stats.written += len(items)
        self.stats.latencies_ms.extend(written_ms - to_epoch_ms(row["event_time"]) for row in rows)
        if self.on_written is not None:
            self.on_written(
                [
                    (written_ms - to_epoch_ms(row["approximateArrivalTimestamp"])) / 1000
                    for row in rows
                ]
            )
        logger.info("batch %d: %d alerts written", batch_id, len(items))

    def keep_verdicts(self, items: list[dict[str, Any]]) -> None:
        """Carry an analyst's verdict (processor/console) over into the items about to be put.

        A replayed batch puts its alert items again, whole; without this, a verdict given
        between the batch's first attempt and its replay would be erased. One BatchGetItem per
        chunk, and only the verdict's attributes are read.
        """
        table = self.settings.dynamodb.alerts_table
        keys = [{"transaction_id": {"S": item["transaction_id"]}} for item in items]
        found: dict[str, dict[str, Any]] = {}
        request: dict[str, Any] = {
            table: {
                "Keys": keys,
                "ProjectionExpression": ", ".join(f"#{i}" for i in range(len(KEPT) + 1)),
                "ExpressionAttributeNames": {
                    f"#{i}": name for i, name in enumerate(("transaction_id", *KEPT))
                },
            }
        }
        for attempt in range(1, self.max_attempts + 1):
            response = self.client.batch_get_item(RequestItems=request)
            for raw in response.get("Responses", {}).get(table, []):
                item = {k: _DESERIALIZER.deserialize(v) for k, v in raw.items()}
                found[item["transaction_id"]] = item
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            self.stats.retries += 1
            time.sleep(self.base_delay_s * 2 ** (attempt - 1))
        else:
            raise DeliveryError(f"alerts table {table!r}: keys still unprocessed by BatchGetItem")
        for item in items:
            kept = found.get(item["transaction_id"], {})
            item.update({name: kept[name] for name in KEPT if name in kept})

    def write_batch(self, items: list[dict[str, Any]]) -> None:
        table = self.settings.dynamodb.alerts_table
        requests = [
            {"PutRequest": {"Item": {k: _SERIALIZER.serialize(v) for k, v in item.items()}}}
            for item in items
        ]
        for attempt in range(1, self.max_attempts + 1):
            response = self.client.batch_write_item(RequestItems={table: requests})
            requests = response.get("UnprocessedItems", {}).get(table, [])
            if not requests:
                return
            self.stats.retries += 1
            delay = self.base_delay_s * 2 ** (attempt - 1)
            time.sleep(delay + random.uniform(0, delay))
        raise DeliveryError(
            f"{len(requests)} alerts still unprocessed by table {table!r} after "
            f"{self.max_attempts} BatchWriteItem attempts"
        )
