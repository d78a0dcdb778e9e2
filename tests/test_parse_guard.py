"""Poison records and hostile payloads: the parse step turns every record into a row, never an
exception, and nothing kept of a rejected record holds a card number in clear."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from processor.card_tokens import card_token, mask_pans, mask_pans_in_text
from processor.parse import PARSED_ARROW_SCHEMA, _parse_one, parse_record
from producer.contract import REASONS, encode_event, luhn_check_digit

KEY = b"k" * 32
PAN = "4111111111111111"
ARRIVAL = datetime(2026, 6, 1, tzinfo=UTC)
VALID: dict[str, Any] = {
    "schema_version": 1,
    "event_type": "transaction",
    "event_time": "2026-06-01T00:00:00.000Z",
    "transaction_id": "tx-000001",
    "card_number": PAN,
    "customer_id": "cust-000001",
    "amount": 12.5,
    "currency": "EUR",
    "merchant_id": "merch-0001",
    "terminal_id": "term-00001",
    "mcc": "5411",
    "merchant_country": "FR",
    "latitude": 48.8,
    "longitude": 2.3,
    "channel": "pos",
}


def source_of(payloads: list[bytes]) -> dict[str, list[Any]]:
    """The columns the Kinesis source hands to the parse step, for these payloads."""
    n = len(payloads)
    return {
        "data": payloads,
        "shardId": ["shardId-000000000000"] * n,
        "sequenceNumber": [f"{49_000 + i:056d}" for i in range(n)],
        "subSequenceNumber": [0] * n,
        "approximateArrivalTimestamp": [ARRIVAL] * n,
    }


def parse(payload: bytes) -> dict[str, Any]:
    return parse_record(source_of([payload]), 0, KEY)


POISON = {
    "deep nesting": b"[" * 10_000 + b"]" * 10_000,
    "deep nesting in an object": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "schema_version as a list": encode_event({**VALID, "schema_version": [1]}),
    "schema_version as an object": encode_event({**VALID, "schema_version": {"v": 1}}),
    "event_type as a list": encode_event({**VALID, "event_type": ["transaction"]}),
    "event_type as an object": encode_event({**VALID, "event_type": {"t": 1}}),
    "event_time overflowing UTC": encode_event(
        {**VALID, "event_time": "9999-12-31T23:59:59-01:00"}
    ),
    "event_time before year 1 in UTC": encode_event(
        {**VALID, "event_time": "0001-01-01T00:00:00+01:00"}
    ),
}


@pytest.mark.parametrize("payload", POISON.values(), ids=POISON.keys())
def test_poison_record_becomes_a_dead_letter_with_its_position(payload: bytes) -> None:
    row = parse(payload)
    assert row["dead_letter_reason"] in REASONS
    assert row["shardId"] == "shardId-000000000000" and row["sequenceNumber"]
    assert row["payload_digest"] is None and row["dedupe_key"].startswith("dead:")
    assert PAN.encode() not in row["raw_payload_masked"]


def test_an_unforeseen_exception_is_unparseable_with_its_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*_: Any) -> Any:
        raise MemoryError("simulated")

    monkeypatch.setattr("processor.parse.parse_payload", explode)
    row = parse(encode_event(VALID))
    assert row["dead_letter_reason"] == "unparseable"
    assert row["dead_letter_detail"] == "MemoryError while parsing"
    assert PAN.encode() not in row["raw_payload_masked"]
    assert row["card_token"] is None and row["event_time"] is None  # nothing half-filled


def test_a_valid_record_still_parses() -> None:
    row = parse(encode_event(VALID))
    assert row["dead_letter_reason"] is None
    assert row["card_token"] == card_token(PAN, KEY) and row["card_last4"] == "1111"


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-06-01T00:00:00.000Z", datetime(2026, 6, 1, tzinfo=UTC)),
        ("2026-06-01T02:30:00.250+02:00", datetime(2026, 6, 1, 0, 30, 0, 250000, tzinfo=UTC)),
        ("2026-05-31T22:29:59.5-01:30", datetime(2026, 5, 31, 23, 59, 59, 500000, tzinfo=UTC)),
        ("2026-05-31T23:59:59.999999+00:00", datetime(2026, 5, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_event_times_are_exact_utc_microseconds_whatever_their_offset(
    text: str, utc: datetime
) -> None:
    row = parse(encode_event({**VALID, "event_time": text}))
    assert row["dead_letter_reason"] is None
    assert row["event_time"] == (utc - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )


def _hostile_value(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value of any type and shape, often absurd."""
    kind = rng.randrange(12)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 1, 2**63, -(2**200), 10**400])
    if kind == 2:
        return rng.choice([0.0, -0.0, 1e308, -1e-308, 12.5])
    if kind == 3:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(0, 30)))
    if kind == 4:
        return rng.choice(
            [
                "9999-12-31T23:59:59-01:00",
                "0001-01-01T00:00:00+23:59",
                "2026-02-30T00:00:00Z",
                "2026-06-01T00:00:00.000Z",
                "2026-06-01T24:00:00Z",
            ]
        )
    if kind == 5 and depth < 3:
        return [_hostile_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind == 6 and depth < 3:
        return {str(rng.randrange(99)): _hostile_value(rng, depth + 1) for _ in range(3)}
    if kind == 7:
        return rng.choice(["transaction", "auth", "chargeback", "TRANSACTION", ""])
    if kind == 8:
        return PAN
    return rng.choice([1, "1", [1], {"x": 1}])


def _hostile_payload(rng: random.Random) -> bytes:
    """A payload built to break a parser: mutated events, broken bytes, absurd nesting."""
    kind = rng.randrange(8)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
    if kind == 1:
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        depth = rng.choice([10, 999, 3_000, 50_000])
        return opener * depth + closer * rng.choice([0, depth])
    event = dict(VALID)
    for _ in range(rng.randrange(1, 5)):
        field = rng.choice([*VALID, "label", "device_id", "transaction_time", "zzz"])
        if rng.random() < 0.15:
            event.pop(field, None)
        else:
            event[field] = _hostile_value(rng)
    encoded = json.dumps(event, allow_nan=True).encode()
    if kind == 2:
        cut = rng.randrange(len(encoded))
        return encoded[:cut]
    if kind == 3:
        return encoded.replace(b"1", bytes([rng.randrange(128, 256)]), 1)
    return encoded


def test_ten_thousand_hostile_payloads_never_raise() -> None:
    rng = random.Random(20261130)
    payloads = [_hostile_payload(rng) for _ in range(10_000)]
    parsed = pa.Table.from_batches(
        [
            _parse_one(pa.RecordBatch.from_pydict(source_of(payloads[i : i + 500])), KEY)
            for i in range(0, len(payloads), 500)
        ]  # fmt: skip
    ).to_pylist()
    assert len(parsed) == len(payloads)
    reasons = {row["dead_letter_reason"] for row in parsed}
    assert reasons <= {None, *REASONS}
    assert len(reasons) >= 6, reasons  # the generator reaches many kinds of rejection
    for row in parsed:
        assert row["dead_letter_reason"] is not None or row["card_token"] is not None
        for kept in (row["raw_payload_masked"] or b"", (row["dead_letter_detail"] or "").encode()):
            assert PAN.encode() not in kept
    assert PARSED_ARROW_SCHEMA.names == list(parsed[0])


def pan_forms(pan: str) -> dict[str, bytes]:
    groups = [pan[i : i + 4] for i in range(0, len(pan), 4)]
    escaped = "".join(f"\\u{ord(c):04x}" for c in pan)
    return {
        "plain": pan.encode(),
        "spaces": " ".join(groups).encode(),
        "dashes": "-".join(groups).encode(),
        "dots": ".".join(groups).encode(),
        "spaced dashes": " - ".join(groups).encode(),
        "json escapes": escaped.encode(),
        "escaped spaces": "\\u0020".join(groups).encode(),
        "no-break spaces": "\u00a0".join(groups).encode(),
        "half escaped": (escaped[: 6 * 8] + pan[8:]).encode(),
    }


@pytest.mark.parametrize("form", pan_forms(PAN).keys())
def test_masking_catches_every_written_form(form: str) -> None:
    written = pan_forms(PAN)[form]
    payload = b'{"card_number":"' + written + b'","note":"card ' + written + b' 42"}'
    masked = mask_pans(payload, KEY)
    assert json.loads(masked.decode()) if form != "half escaped" else True
    digits_left = "".join(c for c in masked.decode().replace("\\u003", "") if c.isdigit())
    assert "41111111" not in digits_left, masked
    # The first mention is the PAN alone; the second may be read as a longer Luhn-valid number
    # with the 42 behind it: masked either way.
    assert masked.count(b"tok_") == 2
    assert masked.startswith(f'{{"card_number":"tok_{card_token(PAN, KEY)[:16]}_1111"'.encode())


def test_masking_leaves_numbers_that_are_not_card_numbers() -> None:
    not_luhn = PAN[:-1] + str((int(PAN[-1]) + 1) % 10)
    epoch_ms = b"1767225600000"
    payload = b'{"n":"' + not_luhn.encode() + b'","t":' + epoch_ms + b',"date":"2026-06-01"}'
    assert mask_pans(payload, KEY) == payload
    longer = b"9" + PAN.encode() + b"0" * 5  # 22 digits in one run: not a card number
    assert mask_pans(longer, KEY) == longer


def test_masking_a_19_digit_pan_and_a_detail() -> None:
    pan19 = "6" + "0" * 17
    pan19 += luhn_check_digit(pan19)
    assert pan19.encode() not in mask_pans(pan19.encode(), KEY)
    detail = f"unknown value '{pan19[:4]} {pan19[4:]}'"
    assert pan19[-4:] in mask_pans_in_text(detail, KEY)
    assert pan19[:12] not in mask_pans_in_text(detail, KEY).replace(" ", "")


def test_rejection_details_never_repeat_a_card_number() -> None:
    for field in ("currency", "schema_version", "event_type", "channel"):
        row = parse(encode_event({**VALID, field: f"{PAN[:4]} {PAN[4:8]}-{PAN[8:]}"}))
        assert row["dead_letter_reason"] is not None
        assert PAN[:12] not in row["dead_letter_detail"].replace(" ", "").replace("-", "")
        assert len(row["dead_letter_detail"]) < 120


@pytest.mark.parametrize("key_bytes", [16, 32, 63, 64, 65, 200])
def test_card_tokens_are_hmac_sha256_of_the_pan(key_bytes: int) -> None:
    rng = random.Random(key_bytes)
    key = bytes(rng.randrange(256) for _ in range(key_bytes))
    for _ in range(50):
        pan = "".join(rng.choices("0123456789", k=rng.randint(12, 19)))
        assert card_token(pan, key) == hmac.new(key, pan.encode(), hashlib.sha256).hexdigest()
