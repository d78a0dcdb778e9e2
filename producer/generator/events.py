"""Builders of contract events, in the contract's canonical field order.

Hot path: one call per generated event, so they build plain dicts without validation; the
tests check every clean event against `producer.contract.validate_event`.
"""

from __future__ import annotations

from typing import Any

from producer.contract import SCHEMA_VERSION, format_epoch_ms


class EventTimeFormatter:
    """`format_epoch_ms` with the per-minute prefix cached (consecutive events share minutes)."""

    __slots__ = ("_minute", "_prefix")

    def __init__(self) -> None:
        self._minute = -1
        self._prefix = ""

    def __call__(self, epoch_ms: int) -> str:
        minute, rest = divmod(epoch_ms, 60_000)
        if minute != self._minute:
            self._minute = minute
            self._prefix = format_epoch_ms(minute * 60_000)[:-7]  # "YYYY-MM-DDTHH:MM:"
        second, millis = divmod(rest, 1000)
        return f"{self._prefix}{second:02d}.{millis:03d}Z"


def label(is_fraud: bool, scenario: str | None) -> dict[str, Any]:
    return {"is_fraud": is_fraud, "fraud_scenario": scenario}


def transaction(
    event_time: str,
    transaction_id: str,
    card_number: str,
    customer_id: str,
    amount: float,
    currency: str,
    merchant_id: str,
    terminal_id: str,
    mcc: str,
    country: str,
    latitude: float,
    longitude: float,
    channel: str,
    device_id: str | None,
    is_fraud: bool,
    scenario: str | None,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "event_type": "transaction",
        "event_time": event_time,
        "transaction_id": transaction_id,
        "card_number": card_number,
        "customer_id": customer_id,
        "amount": amount,
        "currency": currency,
        "merchant_id": merchant_id,
        "terminal_id": terminal_id,
        "mcc": mcc,
        "merchant_country": country,
        "latitude": latitude,
        "longitude": longitude,
        "channel": channel,
        "device_id": device_id,
        "label": label(is_fraud, scenario),
    }


def auth(
    event_time: str,
    auth_id: str,
    card_number: str,
    customer_id: str,
    success: bool,
    method: str,
    device_id: str,
    ip_country: str,
    is_fraud: bool,
    scenario: str | None,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "event_type": "auth",
        "event_time": event_time,
        "auth_id": auth_id,
        "card_number": card_number,
        "customer_id": customer_id,
        "success": success,
        "method": method,
        "device_id": device_id,
        "ip_country": ip_country,
        "label": label(is_fraud, scenario),
    }


def chargeback(
    event_time: str,
    chargeback_id: str,
    transaction: dict[str, Any],
    confirmed_fraud: bool,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "event_type": "chargeback",
        "event_time": event_time,
        "chargeback_id": chargeback_id,
        "transaction_id": transaction["transaction_id"],
        "card_number": transaction["card_number"],
        "terminal_id": transaction["terminal_id"],
        "transaction_time": transaction["event_time"],
        "confirmed_fraud": confirmed_fraud,
        "label": transaction["label"],
    }


_TRANSACTION_TEMPLATE = (
    '{"schema_version":%d,"event_type":"transaction","event_time":"%s","transaction_id":"%s",'
    '"card_number":"%s","customer_id":"%s","amount":%r,"currency":"%s","merchant_id":"%s",'
    '"terminal_id":"%s","mcc":"%s","merchant_country":"%s","latitude":%r,"longitude":%r,'
    '"channel":"%s","device_id":%s,"label":{"is_fraud":%s,"fraud_scenario":%s}}'
)


def encode_transaction(event: dict[str, Any]) -> bytes:
    """`encode_event` for a generated transaction, by template (about twice as fast).

    Only for the generator's own events: every string is from a fixed ASCII alphabet that JSON
    does not escape, and floats use `repr` exactly as the json module does. A test checks the
    bytes equal `producer.contract.encode_event`.
    """
    label = event["label"]
    device = event["device_id"]
    scenario = label["fraud_scenario"]
    return (
        _TRANSACTION_TEMPLATE
        % (
            event["schema_version"],
            event["event_time"],
            event["transaction_id"],
            event["card_number"],
            event["customer_id"],
            event["amount"],
            event["currency"],
            event["merchant_id"],
            event["terminal_id"],
            event["mcc"],
            event["merchant_country"],
            event["latitude"],
            event["longitude"],
            event["channel"],
            "null" if device is None else f'"{device}"',
            "true" if label["is_fraud"] else "false",
            "null" if scenario is None else f'"{scenario}"',
        )
    ).encode("ascii")
