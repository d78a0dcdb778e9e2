"""An analyst's verdict on an alert: recorded once on the alert item, sent once as a label event.

The verdict is a `chargeback` event of the contract (docs/decisions/0011-analyst-verdicts.md):
`confirmed_fraud` true for "confirmed fraud", false for "genuine", the card named by the token
and last four the alert holds (the console never sees a PAN), and the id
`verdict-<transaction_id>`. The processor writes it to the labels table and the terminal-risk
features read it like any chargeback.

Order of effects, so that a crash or a double click never gives two different answers:

1. a conditional UpdateItem claims the alert (`attribute_not_exists(verdict)`): the first
   verdict wins; the same verdict again is a no-op, another one a `VerdictConflict`;
2. the label event is built from what the item now holds (its `verdict_at` included), so a
   re-send is byte for byte the same record and the processor's dedupe (id + payload digest)
   drops it;
3. `verdict_sent_at` is set once Kinesis accepted the record; a repeat of the verdict re-sends
   the label only while that is missing (the first attempt failed between 1 and 3).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from config.aws import make_client
from config.exceptions import FraudPipelineError
from processor.console.alerts_view import get_alert, plain
from producer.contract import (
    CHARGEBACK,
    SCHEMA_VERSION,
    encode_event,
    format_event_time,
    parse_event_time,
    validate_event,
)

if TYPE_CHECKING:
    import boto3

    from config.settings import Settings

logger = logging.getLogger(__name__)

Verdict = Literal["confirmed_fraud", "genuine"]
VERDICTS: Final[dict[str, bool]] = {"confirmed_fraud": True, "genuine": False}
LABELS: Final = {"confirmed_fraud": "confirmed fraud", "genuine": "genuine"}
ANALYST_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,39}$"
VERDICT_ID_PREFIX: Final = "verdict-"
_MAX_ID = 64  # the contract's id pattern: [A-Za-z0-9_-]{6,64}


class VerdictError(FraudPipelineError):
    """A verdict that cannot be recorded as asked."""


class AlertNotFound(VerdictError):
    """No alert item has this transaction id."""


class VerdictConflict(VerdictError):
    """The alert already has the other verdict; the first one stands."""


class LabelNotSent(VerdictError):
    """The verdict is recorded, but its label event did not reach the stream (retry it)."""


class VerdictForm(BaseModel):
    """The verdict form's fields (an HTML form post, validated like a JSON body)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    verdict: Verdict
    analyst: str | None = Field(
        default=None,
        max_length=40,
        pattern=ANALYST_PATTERN,
        description="who decides; blank: the console's analyst",
    )

    @field_validator("analyst", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


@dataclass(frozen=True)
class VerdictOutcome:
    item: dict[str, Any]
    repeated: bool  # the alert already had this verdict
    sent: bool  # this call put the label event on the stream


def valid_analyst(name: str) -> bool:
    return re.fullmatch(ANALYST_PATTERN, name) is not None


def verdict_id(transaction_id: str) -> str:
    """`verdict-<transaction_id>`, or a digest of the id when that would pass 64 characters."""
    candidate = VERDICT_ID_PREFIX + transaction_id
    if len(candidate) <= _MAX_ID:
        return candidate
    digest = hashlib.blake2b(transaction_id.encode(), digest_size=16).hexdigest()
    return VERDICT_ID_PREFIX + digest


def label_event(item: dict[str, Any]) -> dict[str, Any]:
    """The chargeback event of the verdict that `item` (an alert with a verdict) records.

    Everything comes from the item, so the same item always gives the same bytes.
    """
    event = {
        "schema_version": SCHEMA_VERSION,
        "event_type": CHARGEBACK,
        "event_time": item["verdict_at"],
        "chargeback_id": verdict_id(item["transaction_id"]),
        "transaction_id": item["transaction_id"],
        "card_token": item["card_token"],
        "card_last4": item["card_last4"],
        "terminal_id": item["terminal_id"],
        "transaction_time": format_event_time(parse_event_time(item["event_time"])),
        "confirmed_fraud": VERDICTS[item["verdict"]],
    }
    problem = validate_event(event)
    if problem is not None:
        raise VerdictError(
            f"alert {item['transaction_id']} cannot make a valid label event: {problem.detail}"
        )
    return event


def send_label(settings: Settings, item: dict[str, Any], session: boto3.Session | None) -> str:
    """Put the verdict's label event on the stream (partition key: the card token)."""
    data = encode_event(label_event(item))
    client = make_client("kinesis", settings.aws, session)
    try:
        response = client.put_record(
            StreamName=settings.kinesis.stream_name, Data=data, PartitionKey=item["card_token"]
        )
    except (ClientError, BotoCoreError) as exc:
        raise LabelNotSent(
            f"verdict on {item['transaction_id']} is recorded, but its label event could not "
            f"be sent to stream {settings.kinesis.stream_name!r} ({type(exc).__name__}); "
            "give the same verdict again to retry"
        ) from exc
    return str(response["SequenceNumber"])


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def record_verdict(
    settings: Settings,
    transaction_id: str,
    verdict: Verdict,
    analyst: str,
    session: boto3.Session | None = None,
    now: datetime | None = None,
) -> VerdictOutcome:
    """Record `verdict` on the alert (first verdict wins) and send its label event once."""
    client = make_client("dynamodb", settings.aws, session)
    table = settings.dynamodb.alerts_table
    key = {"transaction_id": {"S": transaction_id}}
    at = format_event_time(now or datetime.now(UTC))
    repeated = False
    try:
        response = client.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET #verdict = :verdict, #by = :by, #at = :at, #label = :label",
            ConditionExpression="attribute_exists(#tx) AND attribute_not_exists(#verdict)",
            ExpressionAttributeNames={
                "#tx": "transaction_id",
                "#verdict": "verdict",
                "#by": "verdict_by",
                "#at": "verdict_at",
                "#label": "verdict_label_id",
            },
            ExpressionAttributeValues={
                ":verdict": {"S": verdict},
                ":by": {"S": analyst},
                ":at": {"S": at},
                ":label": {"S": verdict_id(transaction_id)},
            },
            ReturnValues="ALL_NEW",
        )
        item = plain(response["Attributes"])
        logger.info("alert %s: verdict %s by %s", transaction_id, verdict, analyst)
    except ClientError as exc:
        if _error_code(exc) != "ConditionalCheckFailedException":
            raise
        current = get_alert(settings, transaction_id, session)
        if current is None:
            raise AlertNotFound(f"no alert with transaction id {transaction_id}") from exc
        if current.get("verdict") != verdict:
            raise VerdictConflict(
                f"alert {transaction_id} already has the verdict "
                f"{LABELS.get(str(current.get('verdict')), current.get('verdict'))!r} "
                f"(by {current.get('verdict_by')} at {current.get('verdict_at')}); "
                "the first verdict stands"
            ) from exc
        item, repeated = current, True
    if item.get("verdict_sent_at") is not None:
        return VerdictOutcome(item, repeated, sent=False)
    sequence = send_label(settings, item, session)
    sent_at = format_event_time(datetime.now(UTC))
    client.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET #sent = :sent, #seq = :seq",
        ConditionExpression="#verdict = :verdict",
        ExpressionAttributeNames={
            "#sent": "verdict_sent_at",
            "#seq": "verdict_sequence_number",
            "#verdict": "verdict",
        },
        ExpressionAttributeValues={
            ":sent": {"S": sent_at},
            ":seq": {"S": sequence},
            ":verdict": {"S": verdict},
        },
    )
    item = {**item, "verdict_sent_at": sent_at, "verdict_sequence_number": sequence}
    return VerdictOutcome(item, repeated, sent=True)
