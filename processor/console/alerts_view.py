"""The alert queue: the alerts table read with Scan, filtered, newest first, one page at a time.

The demo's table is small, so the whole filtered table is scanned and sorted here (at most
`MAX_SCANNED` items; the page says when it stopped there). A production queue would query a
GSI on (status, event_time) instead; the filters and the page shape would stay the same.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from config.aws import make_client
from producer.contract import SCENARIO_PATTERN

if TYPE_CHECKING:
    import boto3

    from config.settings import Settings

logger = logging.getLogger(__name__)

MAX_SCANNED = 20_000  # items one queue view reads at most (demo scale)
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
Decision = Literal["ALERT", "REVIEW", "OK"]
VerdictFilter = Literal["open", "confirmed_fraud", "genuine"]
_DESERIALIZER = TypeDeserializer()
_SERIALIZER = TypeSerializer()


def _scenario_name(name: str) -> str:
    """Any name the contract accepts as a label's scenario (not only the generator's six)."""
    if not re.fullmatch(SCENARIO_PATTERN, name):
        raise ValueError("a scenario is 1-64 printable characters")
    return name


class QueueQuery(BaseModel):
    """The queue's query parameters. An empty form field means "no filter"."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    decision: Decision | None = Field(default=None, description="the model's decision")
    verdict: VerdictFilter | None = Field(
        default=None, description="open (no analyst verdict yet), confirmed_fraud or genuine"
    )
    min_score: float | None = Field(default=None, ge=0, le=1, description="lowest fraud score")
    scenario: str | None = Field(
        default=None, max_length=64, description="fraud scenario of the event's label"
    )
    since: datetime | None = Field(default=None, description="event time from (UTC if naive)")
    until: datetime | None = Field(default=None, description="event time up to (inclusive)")
    page: int = Field(default=1, ge=1, le=10_000)
    limit: int = Field(default=PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and not value.strip():
            assert info.field_name is not None
            return cls.model_fields[info.field_name].default
        return value

    @field_validator("scenario")
    @classmethod
    def _scenario(cls, value: str | None) -> str | None:
        return None if value is None else _scenario_name(value)

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _range(self) -> QueueQuery:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise ValueError("since must not be after until")
        return self

    def filters(self) -> dict[str, str]:
        """The filters that are set, as query parameters (for links that keep them)."""
        out: dict[str, str] = {}
        for name in ("decision", "verdict", "scenario"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.min_score is not None:
            out["min_score"] = f"{self.min_score:g}"
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None:
                out[name] = moment.strftime("%Y-%m-%dT%H:%M:%S")
        if self.limit != PAGE_SIZE:
            out["limit"] = str(self.limit)
        return out


@dataclass(frozen=True)
class AlertView:
    """One alert as the console shows it (the DynamoDB item, typed)."""

    transaction_id: str
    card_token: str
    card_last4: str
    amount: Decimal
    currency: str
    merchant_id: str
    terminal_id: str
    event_time: str
    fraud_score: float
    model_version: str
    reason_codes: tuple[str, ...]
    decision: str
    detected_at: str
    scenario: str | None
    verdict: str | None
    verdict_by: str | None
    verdict_at: str | None
    verdict_sent_at: str | None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> AlertView:
        def text(name: str) -> str | None:
            value = item.get(name)
            return None if value is None else str(value)

        return cls(
            transaction_id=str(item["transaction_id"]),
            card_token=str(item.get("card_token", "")),
            card_last4=str(item.get("card_last4", "")),
            amount=Decimal(item.get("amount", 0)),
            currency=str(item.get("currency", "")),
            merchant_id=str(item.get("merchant_id", "")),
            terminal_id=str(item.get("terminal_id", "")),
            event_time=str(item.get("event_time", "")),
            fraud_score=float(item.get("fraud_score", 0)),
            model_version=str(item.get("model_version", "")),
            reason_codes=tuple(str(code) for code in item.get("reason_codes") or ()),
            decision=str(item.get("decision", "")),
            detected_at=str(item.get("detected_at", "")),
            scenario=text("label_fraud_scenario"),
            verdict=text("verdict"),
            verdict_by=text("verdict_by"),
            verdict_at=text("verdict_at"),
            verdict_sent_at=text("verdict_sent_at"),
        )


@dataclass(frozen=True)
class AlertPage:
    alerts: list[AlertView]
    matched: int  # alerts that pass the filters
    page: int
    pages: int
    truncated: bool  # the scan stopped at MAX_SCANNED items


def plain(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item (typed attribute values) as plain Python values."""
    return {name: _DESERIALIZER.deserialize(value) for name, value in item.items()}


def item_time(moment: datetime) -> str:
    """A moment in the text form `processor.alerts.alert_item` stores (sortable as text)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _filter_expression(query: QueueQuery) -> dict[str, Any]:
    """Scan arguments that make DynamoDB drop what the filters exclude."""
    clauses: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, Any] = {}

    def compare(attribute: str, op: str, value: Any, slot: str) -> None:
        names[f"#{attribute}"] = attribute
        values[f":{slot}"] = _SERIALIZER.serialize(value)
        clauses.append(f"#{attribute} {op} :{slot}")

    if query.decision is not None:
        compare("decision", "=", query.decision, "decision")
    if query.verdict == "open":
        names["#verdict"] = "verdict"
        clauses.append("attribute_not_exists(#verdict)")
    elif query.verdict is not None:
        compare("verdict", "=", query.verdict, "verdict")
    if query.min_score is not None:
        compare("fraud_score", ">=", Decimal(str(query.min_score)), "score")
    if query.scenario is not None:
        compare("label_fraud_scenario", "=", query.scenario, "scenario")
    if query.since is not None:
        compare("event_time", ">=", item_time(query.since), "since")
    if query.until is not None:
        compare("event_time", "<=", item_time(query.until), "until")
    if not clauses:
        return {}
    expression: dict[str, Any] = {
        "FilterExpression": " AND ".join(clauses),
        "ExpressionAttributeNames": names,
    }
    if values:  # DynamoDB refuses an empty map ("open" alone compares nothing)
        expression["ExpressionAttributeValues"] = values
    return expression


def list_alerts(
    settings: Settings, query: QueueQuery, session: boto3.Session | None = None
) -> AlertPage:
    """The page `query.page` of the alerts that pass the filters, newest event first."""
    client = make_client("dynamodb", settings.aws, session)
    items: list[dict[str, Any]] = []
    truncated = False
    pages = client.get_paginator("scan").paginate(
        TableName=settings.dynamodb.alerts_table, **_filter_expression(query)
    )
    for response in pages:
        items.extend(plain(item) for item in response["Items"])
        if len(items) >= MAX_SCANNED:
            truncated = True
            items = items[:MAX_SCANNED]
            break
    if truncated:
        logger.warning("alert queue: stopped scanning at %d items", MAX_SCANNED)
    items.sort(key=lambda i: (str(i.get("event_time", "")), str(i["transaction_id"])), reverse=True)
    pages_count = max(1, -(-len(items) // query.limit))
    start = (query.page - 1) * query.limit
    shown = [AlertView.from_item(item) for item in items[start : start + query.limit]]
    return AlertPage(shown, len(items), query.page, pages_count, truncated)


def get_alert(
    settings: Settings, transaction_id: str, session: boto3.Session | None = None
) -> dict[str, Any] | None:
    """One alert item as plain values (a consistent read), or None."""
    client = make_client("dynamodb", settings.aws, session)
    response = client.get_item(
        TableName=settings.dynamodb.alerts_table,
        Key={"transaction_id": {"S": transaction_id}},
        ConsistentRead=True,
    )
    item = response.get("Item")
    return None if item is None else plain(item)
