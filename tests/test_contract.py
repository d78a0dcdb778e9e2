"""The event contract: validation reasons, Luhn, encoding and time formats."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from producer import contract as c


def transaction(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "schema_version": 1,
        "event_type": "transaction",
        "event_time": "2026-01-01T10:00:00.000Z",
        "transaction_id": "tx-000001",
        "card_number": "4111111111111111",
        "customer_id": "cust-0001",
        "amount": 42.5,
        "currency": "EUR",
        "merchant_id": "merch-001",
        "terminal_id": "term-001",
        "mcc": "5411",
        "merchant_country": "FR",
        "latitude": 48.85,
        "longitude": 2.35,
        "channel": "pos",
        "device_id": None,
        "label": {"is_fraud": False, "fraud_scenario": None},
    }
    event.update(overrides)
    return event


def test_a_complete_transaction_is_valid() -> None:
    assert c.validate_event(transaction()) is None


def test_auth_and_chargeback_are_valid() -> None:
    auth = {
        "schema_version": 1,
        "event_type": "auth",
        "event_time": "2026-01-01T10:00:00Z",
        "auth_id": "auth-0001",
        "card_number": "4111111111111111",
        "customer_id": "cust-0001",
        "success": False,
        "method": "password",
        "device_id": "dev-000001",
        "ip_country": "RO",
    }
    chargeback = {
        "schema_version": 1,
        "event_type": "chargeback",
        "event_time": "2026-01-08T10:00:00+00:00",
        "chargeback_id": "cb-000001",
        "transaction_id": "tx-000001",
        "card_number": "4111111111111111",
        "terminal_id": "term-001",
        "transaction_time": "2026-01-01T10:00:00.000Z",
        "confirmed_fraud": True,
    }
    assert c.validate_event(auth) is None
    assert c.validate_event(chargeback) is None


@pytest.mark.parametrize(
    ("event", "reason", "field"),
    [
        (transaction(amount=-3.0), c.REASON_OUT_OF_RANGE, "amount"),
        (transaction(amount=-0.01), c.REASON_OUT_OF_RANGE, "amount"),
        (transaction(amount=-0.0), c.REASON_OUT_OF_RANGE, "amount"),
        (transaction(amount=c.MAX_AMOUNT + 0.01), c.REASON_OUT_OF_RANGE, "amount"),
        (transaction(amount="12.00"), c.REASON_WRONG_TYPE, "amount"),
        (transaction(amount=True), c.REASON_WRONG_TYPE, "amount"),
        (transaction(currency="XYZ"), c.REASON_INVALID_VALUE, "currency"),
        (transaction(latitude=123.0), c.REASON_OUT_OF_RANGE, "latitude"),
        (transaction(card_number="4111111111111112"), c.REASON_INVALID_VALUE, "card_number"),
        (transaction(schema_version=2), c.REASON_UNKNOWN_SCHEMA_VERSION, "schema_version"),
        (transaction(event_type="refund"), c.REASON_UNKNOWN_EVENT_TYPE, "event_type"),
        (transaction(event_time="yesterday"), c.REASON_INVALID_VALUE, "event_time"),
        (transaction(label={"is_fraud": "no"}), c.REASON_WRONG_TYPE, "label.is_fraud"),
        (transaction(transaction_id="tx-000001\n"), c.REASON_INVALID_VALUE, "transaction_id"),
    ],
)
def test_invalid_events_name_reason_and_field(
    event: dict[str, Any], reason: str, field: str
) -> None:
    problem = c.validate_event(event)
    assert problem is not None
    assert (problem.reason, problem.field) == (reason, field)


@pytest.mark.parametrize("name", ["transaction_id", "card_number", "amount", "currency", "mcc"])
def test_missing_required_field(name: str) -> None:
    event = transaction()
    del event[name]
    problem = c.validate_event(event)
    assert problem is not None and (problem.reason, problem.field) == (c.REASON_MISSING_FIELD, name)


def test_optional_fields_may_be_absent() -> None:
    event = transaction()
    del event["device_id"], event["label"]
    assert c.validate_event(event) is None


def test_future_event_time_is_checked_against_the_reference_clock() -> None:
    now = datetime(2026, 1, 1, 10, tzinfo=UTC)
    soon = c.format_event_time(now + timedelta(hours=2))
    far = c.format_event_time(now + timedelta(days=3))
    assert c.validate_event(transaction(event_time=soon), now) is None
    problem = c.validate_event(transaction(event_time=far), now)
    assert problem is not None and problem.reason == c.REASON_FUTURE_EVENT_TIME
    assert c.validate_event(transaction(event_time=far)) is None  # no clock: not checked


def test_parse_payload_separates_not_json_from_not_an_object() -> None:
    assert c.parse_payload(b"{not json")[1] == c.Invalid(
        c.REASON_NOT_JSON, None, "payload is not JSON: JSONDecodeError"
    )
    problem = c.parse_payload(b"[1, 2]")[1]
    assert problem is not None and problem.reason == c.REASON_NOT_AN_OBJECT
    problem = c.parse_payload(b"\xff\xfe")[1]
    assert problem is not None and problem.reason == c.REASON_NOT_JSON
    event, problem = c.parse_payload(c.encode_event(transaction()))
    assert problem is None and event == transaction()


def test_luhn() -> None:
    assert c.luhn_valid("4111111111111111")
    assert not c.luhn_valid("4111111111111112")
    partial = "400000123456789"
    assert c.luhn_valid(partial + c.luhn_check_digit(partial))


def luhn_by_the_book(digits: str) -> bool:
    total = 0
    for index, digit in enumerate(map(int, reversed(digits))):
        doubled = digit * 2 if index % 2 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return total % 10 == 0


def test_luhn_agrees_with_the_textbook_loop_and_refuses_what_is_not_ascii_digits() -> None:
    rng = random.Random(7)
    numbers = ["".join(rng.choices("0123456789", k=rng.randint(1, 19))) for _ in range(5_000)]
    assert [c.luhn_valid(n) for n in numbers] == [luhn_by_the_book(n) for n in numbers]
    assert sum(map(c.luhn_valid, numbers)) > 300  # both answers occur
    for text in ("", "4111 1111 1111 1111", "411111111111111a", "\u0664" * 16, "٤١١١١١١١١١١١١١١١"):
        assert not c.luhn_valid(text)


# JSON that json.loads reads but orjson refuses or reads otherwise, and plain events.
DECODED_AS_JSON_DOES = [
    b'{"amount": NaN}',
    b'{"amount": Infinity, "x": -Infinity}',
    b'{"amount": 1E400}',
    b"\xef\xbb\xbf{}",
    '{"a": 1}'.encode("utf-16"),
    b'{"id": "\\ud800"}',
    b'{"schema_version": 18446744073709551616}',
    b'{"schema_version": -9223372036854775809}',
    b'{"label": {"n": [1, 99999999999999999999999]}}',
    b'{"amount": 1e19, "y": 9223372036854775807, "z": -9223372036854775808}',
    b'{"a": 1, "a": 2}',
    b'{"amount": -0.0, "b": 5e-324, "c": 1.0000000000000000000001}',
    b"[" * 1_100 + b"]" * 1_100,
    b"[" * 600 + b"]" * 600,
    c.encode_event(transaction()),
]


@pytest.mark.parametrize("payload", DECODED_AS_JSON_DOES, ids=lambda p: repr(p[:24]))
def test_decode_json_gives_what_json_loads_gives(payload: bytes) -> None:
    def outcome(decode: Any) -> Any:
        try:
            return ("value", repr(decode(payload)))
        except (ValueError, RecursionError) as exc:
            return ("error", type(exc).__name__)

    assert outcome(c.decode_json) == outcome(json.loads)


def test_decode_json_keeps_huge_integers_integers() -> None:
    assert c.decode_json(b'{"v": 18446744073709551616}') == {"v": 2**64}
    assert type(c.decode_json(b'{"v": -9223372036854775809}')["v"]) is int


def test_encoding_is_compact_and_keeps_key_order() -> None:
    event = transaction()
    payload = c.encode_event(event)
    assert b" " not in payload.replace(b"fraud_scenario", b"")
    assert list(json.loads(payload)) == list(event)


def test_event_time_formats_round_trip() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    text = c.format_event_time(moment)
    assert text == "2026-03-04T05:06:07.890Z"
    assert c.parse_event_time(text) == moment
    assert c.format_epoch_ms(c.to_epoch_ms(moment)) == text


@pytest.mark.parametrize(
    ("text", "epoch_ms"),
    [
        ("2026-01-01T00:00:00.123Z", 1_767_225_600_123),
        # Microseconds round down, also where rounding to nearest would give the next second.
        ("2026-01-01T00:00:00.999600Z", 1_767_225_600_999),
        ("2026-01-01T01:00:00.000999+01:00", 1_767_225_600_000),
        # Before 1970 too: int(timestamp() * 1000) truncates toward zero and says 0.
        ("1969-12-31T23:59:59.999500Z", -1),
    ],
)
def test_epoch_ms_is_the_millisecond_that_holds_the_moment(text: str, epoch_ms: int) -> None:
    assert c.to_epoch_ms(c.parse_event_time(text)) == epoch_ms


def test_card_number_is_the_sensitive_field_and_labels_are_feature_forbidden() -> None:
    assert c.SENSITIVE_FIELDS == {"card_number"}
    assert "label" in c.FEATURE_FORBIDDEN_FIELDS
    assert c.event_id(transaction()) == "tx-000001"


@pytest.mark.parametrize("amount", [0, 0.0, 0.01, c.MAX_AMOUNT])
def test_zero_amount_verifications_are_valid(amount: float) -> None:
    assert c.validate_event(transaction(amount=amount)) is None
    assert c.parse_payload(c.encode_event(transaction(amount=amount)))[1] is None


def test_a_negated_amount_is_out_of_range_even_at_zero() -> None:
    """The generator's negative_amount anomaly (-abs(amount)) keeps its reason at any amount."""
    for amount in (0.0, 12.5):
        payload = c.encode_event(transaction(amount=-abs(amount)))
        problem = c.parse_payload(payload)[1]
        assert problem is not None
        assert (problem.reason, problem.field) == (c.REASON_OUT_OF_RANGE, "amount")


def labelled(scenario: Any, is_fraud: bool = True) -> dict[str, Any]:
    return transaction(label={"is_fraud": is_fraud, "fraud_scenario": scenario})


@pytest.mark.parametrize(
    "scenario",
    [
        *c.FRAUD_SCENARIOS,
        "skimming",
        "Friendly fraud / first-party",
        "bust-out #3",
        "carte clonée",
        "x",
        "s" * 64,
        None,
    ],
)
def test_a_label_scenario_is_any_short_printable_name(scenario: str | None) -> None:
    assert c.validate_event(labelled(scenario)) is None


@pytest.mark.parametrize(
    ("scenario", "reason"),
    [
        ("", c.REASON_INVALID_VALUE),
        ("   ", c.REASON_INVALID_VALUE),
        ("s" * 65, c.REASON_INVALID_VALUE),
        ("card\ntesting", c.REASON_INVALID_VALUE),
        ("card_testing\n", c.REASON_INVALID_VALUE),
        ("tab\there", c.REASON_INVALID_VALUE),
        ("nul\x00", c.REASON_INVALID_VALUE),
        (7, c.REASON_WRONG_TYPE),
        (["card_testing"], c.REASON_WRONG_TYPE),
    ],
)
def test_a_label_scenario_that_is_not_a_short_printable_name_is_rejected(
    scenario: Any, reason: str
) -> None:
    problem = c.validate_event(labelled(scenario))
    assert problem is not None
    assert (problem.reason, problem.field) == (reason, "label.fraud_scenario")


# Values on and around every kind of rule: types JSON can give, bounds, patterns' edges.
_TRICKY_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 2, 0.0, -0.0, 1e-300, -1e-300, 42.5, 90.0, 90.000001, -90.0,
    180.0, -180.0, 1_000_000.0, 1_000_000.1, 1_000_000, float("inf"), float("-inf"),
    float("nan"), "", " ", "x", "tx-000001", "tx-000001\n", "tx 000001", "a" * 64, "a" * 65,
    "5411", "541", "54111", "٥٤١١", "FR", "fr", "FRA", "EUR", "eur", "pos", "POS", "otp",
    "4111111111111111", "4111111111111111\n", "0" * 64, "f" * 64, "F" * 64, "card_testing",
    "bad\x00name", "2026-01-01T10:00:00.000Z", "2026-01-01T10:00:00.000Z\n", [], {}, ["x"],
]  # fmt: skip


@pytest.mark.parametrize(
    "spec",
    [
        *c.ENVELOPE_FIELDS,
        *(s for specs in c.EVENT_FIELDS.values() for s in specs),
        *c.LABEL_FIELDS,
    ],  # fmt: skip
    ids=lambda spec: spec.name,
)
def test_the_quick_check_accepts_only_what_the_full_check_accepts(spec: c.FieldSpec) -> None:
    # The quick test may send a good value to the full check; it must never pass a bad one.
    accepts = c._accepts_value(spec)
    for value in _TRICKY_VALUES:
        if accepts(value):
            assert c._check_field(spec, {spec.name: value}) is None, (spec.name, value)
    # ... and it does pass the ordinary good values, else it would be no quicker.
    good = [v for v in _TRICKY_VALUES if c._check_field(spec, {spec.name: v}) is None]
    assert any(accepts(value) for value in good if value is not None) or not good, spec.name
