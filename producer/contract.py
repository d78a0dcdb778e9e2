"""The event contract: the one definition of what travels on the stream.

Three event types share an envelope (`schema_version`, `event_type`, `event_time`, optional
`label`) and add their own fields. Producer, processor and ml_model import this module; nothing
else redefines a field. Events are JSON objects encoded as compact UTF-8.

`card_number` is the PAN as an issuer sends it and is marked `sensitive`: the processor replaces
it with a keyed HMAC token and the last four digits before anything is written. A chargeback may
instead carry that token and the last four digits (`card_token` + `card_last4`): an analyst's
verdict from the alert console knows the card only by them (docs/decisions/0011).

The ground truth (`label.is_fraud`, `label.fraud_scenario`) travels beside the event for
evaluation only; `FEATURE_FORBIDDEN_FIELDS` names what no feature may read. A scenario is any
short printable name (`SCENARIO_PATTERN`): outside data names its fraud its own way, and the
generator's six names (`FRAUD_SCENARIOS`) are just the ones it uses.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson

SCHEMA_VERSION: Final = 1
SUPPORTED_SCHEMA_VERSIONS: Final = frozenset({1})

TRANSACTION: Final = "transaction"
AUTH: Final = "auth"
CHARGEBACK: Final = "chargeback"
EVENT_TYPES: Final = (TRANSACTION, AUTH, CHARGEBACK)

CURRENCIES: Final = frozenset(
    {"USD", "EUR", "GBP", "CAD", "AUD", "JPY", "CHF", "SEK", "NOK", "DKK", "PLN", "MXN", "BRL"}
)
CHANNELS: Final = frozenset({"pos", "ecom", "atm", "contactless"})
AUTH_METHODS: Final = frozenset({"password", "otp", "biometric"})
# The generator's scenario names (producer.generator.SCENARIO_NAMES). The contract does not
# restrict a label's scenario to them: see SCENARIO_PATTERN.
FRAUD_SCENARIOS: Final = (
    "card_testing",
    "atm_cashout_abroad",
    "compromised_terminal",
    "account_takeover",
    "amount_anomaly",
    "structuring",
)
# A label's scenario: 1-64 characters, none of them a control character, not all blank.
SCENARIO_PATTERN: Final = r"^(?=.*\S)[^\x00-\x1f\x7f-\x9f\u2028\u2029]{1,64}$"
MAX_AMOUNT: Final = 1_000_000.0
# An event_time further ahead of the reference clock than this is rejected.
MAX_FUTURE_SKEW: Final = timedelta(days=1)

# The id that identifies one event of each type; duplicates share it.
ID_FIELD: Final = {TRANSACTION: "transaction_id", AUTH: "auth_id", CHARGEBACK: "chargeback_id"}
# The field whose value is the Kinesis partition key, so a card's events stay in order.
PARTITION_KEY_FIELD: Final = "card_number"
LABEL_FIELD: Final = "label"
FEATURE_FORBIDDEN_FIELDS: Final = frozenset({LABEL_FIELD, "is_fraud", "fraud_scenario"})

# Reason codes for events that fail validation; the dead-letter table stores them.
REASON_NOT_JSON: Final = "not_json"
REASON_NOT_AN_OBJECT: Final = "not_an_object"
REASON_UNKNOWN_SCHEMA_VERSION: Final = "unknown_schema_version"
REASON_UNKNOWN_EVENT_TYPE: Final = "unknown_event_type"
REASON_MISSING_FIELD: Final = "missing_field"
REASON_WRONG_TYPE: Final = "wrong_type"
REASON_OUT_OF_RANGE: Final = "out_of_range"
REASON_INVALID_VALUE: Final = "invalid_value"
REASON_FUTURE_EVENT_TIME: Final = "future_event_time"
# Anything else that went wrong while decoding or checking one record (the exception's type is
# in the detail): a poison record becomes a dead letter instead of failing the batch.
REASON_UNPARSEABLE: Final = "unparseable"
REASONS: Final = (
    REASON_NOT_JSON,
    REASON_NOT_AN_OBJECT,
    REASON_UNKNOWN_SCHEMA_VERSION,
    REASON_UNKNOWN_EVENT_TYPE,
    REASON_MISSING_FIELD,
    REASON_WRONG_TYPE,
    REASON_OUT_OF_RANGE,
    REASON_INVALID_VALUE,
    REASON_FUTURE_EVENT_TIME,
    REASON_UNPARSEABLE,
)

_EVENT_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field: its JSON type, whether it must be present, and the values it may take."""

    name: str
    type: type  # str, int, float or bool; float also accepts JSON integers
    required: bool = True
    nullable: bool = False
    allowed: frozenset[str] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    pattern: str | None = None  # the whole value must match
    sensitive: bool = False
    description: str = ""


ENVELOPE_FIELDS: Final[tuple[FieldSpec, ...]] = (
    FieldSpec("schema_version", int, description="Contract version the producer wrote."),
    FieldSpec("event_type", str, allowed=frozenset(EVENT_TYPES)),
    FieldSpec(
        "event_time",
        str,
        pattern=_EVENT_TIME_RE.pattern,
        description="When the event happened (ISO-8601 with offset), not when it was sent.",
    ),
)

_ID = r"^[A-Za-z0-9_-]{6,64}$"
_COUNTRY = r"^[A-Z]{2}$"
_PAN = FieldSpec(
    "card_number",
    str,
    pattern=r"^\d{12,19}$",
    sensitive=True,
    description="PAN as the issuer sends it; Luhn-valid; tokenised by the processor.",
)

# A chargeback raised where only the processor's token is known (an analyst's verdict) names the
# card by token and last four instead of the PAN: exactly one of the two forms.
_CARD_TOKEN = FieldSpec(
    "card_token",
    str,
    required=False,
    pattern=r"^[0-9a-f]{64}$",
    description="The processor's HMAC token of the card, instead of card_number (chargeback).",
)
_CARD_LAST4 = FieldSpec(
    "card_last4", str, required=False, pattern=r"^\d{4}$", description="Goes with card_token."
)
# Event types whose card may be named by token: (the PAN field, the token field, its last four).
CARD_BY_TOKEN: Final = {CHARGEBACK: ("card_number", "card_token", "card_last4")}

EVENT_FIELDS: Final[dict[str, tuple[FieldSpec, ...]]] = {
    TRANSACTION: (
        FieldSpec("transaction_id", str, pattern=_ID),
        _PAN,
        FieldSpec("customer_id", str, pattern=_ID),
        FieldSpec(
            "amount",
            float,
            minimum=0.0,
            maximum=MAX_AMOUNT,
            description="Amount in `currency`, major units; 0 is a verification (no charge).",
        ),
        FieldSpec("currency", str, allowed=CURRENCIES),
        FieldSpec("merchant_id", str, pattern=_ID),
        FieldSpec("terminal_id", str, pattern=_ID),
        FieldSpec("mcc", str, pattern=r"^\d{4}$", description="ISO 18245 merchant category."),
        FieldSpec("merchant_country", str, pattern=_COUNTRY),
        FieldSpec("latitude", float, minimum=-90.0, maximum=90.0),
        FieldSpec("longitude", float, minimum=-180.0, maximum=180.0),
        FieldSpec("channel", str, allowed=CHANNELS),
        FieldSpec("device_id", str, required=False, nullable=True, pattern=_ID),
    ),
    AUTH: (
        FieldSpec("auth_id", str, pattern=_ID),
        _PAN,
        FieldSpec("customer_id", str, pattern=_ID),
        FieldSpec("success", bool),
        FieldSpec("method", str, allowed=AUTH_METHODS),
        FieldSpec("device_id", str, pattern=_ID),
        FieldSpec("ip_country", str, pattern=_COUNTRY),
    ),
    CHARGEBACK: (
        FieldSpec("chargeback_id", str, pattern=_ID),
        FieldSpec("transaction_id", str, pattern=_ID, description="The transaction it confirms."),
        replace(_PAN, required=False, description=f"{_PAN.description} Or card_token + last4."),
        _CARD_TOKEN,
        _CARD_LAST4,
        FieldSpec("terminal_id", str, pattern=_ID),
        FieldSpec("transaction_time", str, pattern=_EVENT_TIME_RE.pattern),
        FieldSpec(
            "confirmed_fraud",
            bool,
            description="True: chargeback / confirmed fraud. False: confirmed genuine report.",
        ),
    ),
}

LABEL_FIELDS: Final[tuple[FieldSpec, ...]] = (
    FieldSpec("is_fraud", bool),
    FieldSpec("fraud_scenario", str, nullable=True, pattern=SCENARIO_PATTERN),
)

SENSITIVE_FIELDS: Final = frozenset(
    spec.name for specs in EVENT_FIELDS.values() for spec in specs if spec.sensitive
)


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why an event was rejected: a reason code from `REASONS` and the field it concerns."""

    reason: str
    field: str | None
    detail: str


def fields_of(event_type: str) -> tuple[FieldSpec, ...]:
    """Envelope fields followed by the fields of `event_type`, in canonical order."""
    return ENVELOPE_FIELDS + EVENT_FIELDS[event_type]


def format_event_time(moment: datetime) -> str:
    """Canonical event-time text: UTC, millisecond precision, `Z` suffix."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def to_epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch, rounded down: the one conversion the stream and
    training use, so an event time with microseconds gets the same millisecond everywhere.
    Integer arithmetic (`timestamp() * 1000` passes through a float). A naive datetime is local
    time, as `datetime.timestamp` reads it."""
    if moment.tzinfo is None:
        moment = moment.astimezone(UTC)
    return (moment - EPOCH) // _ONE_MS


def format_epoch_ms(epoch_ms: int) -> str:
    """`format_event_time` for an epoch in milliseconds (the generator's clock)."""
    seconds, millis = divmod(int(epoch_ms), 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def parse_event_time(text: str) -> datetime:
    """Parse an ISO-8601 event time with offset into an aware UTC datetime.

    Raises ValueError for text that is not one, or that names no representable UTC moment
    (`9999-12-31T23:59:59-01:00` overflows when converted to UTC).
    """
    if not _EVENT_TIME_RE.match(text):
        raise ValueError("not an ISO-8601 timestamp with offset")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("timestamp is outside the representable range") from exc


# Luhn doubles every second digit from the right and adds a product's two digits: 0-9 -> this.
_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check that every real PAN passes; False for anything but ASCII digits
    (`\\d` in a pattern also matches other scripts' digits)."""
    if not (digits.isascii() and digits.isdigit()):
        return False
    # Every digit as one ASCII byte: the string's byte sum less 48 a digit is its digit sum.
    spelled = digits[-1::-2] + digits[-2::-2].translate(_LUHN_DOUBLED)
    return (sum(spelled.encode()) - 48 * len(spelled)) % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """The digit that, appended to `partial`, makes a Luhn-valid number."""
    for digit in "0123456789":
        if luhn_valid(partial + digit):
            return digit
    raise AssertionError("unreachable: one of ten digits always satisfies Luhn")


_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode_event(event: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON in the dict's own key order (the generator builds canonical order)."""
    return _ENCODER.encode(event).encode("utf-8")


def decode_event(payload: bytes | str) -> dict[str, Any]:
    """Parse one payload; raises ValueError when it is not a JSON object."""
    value = json.loads(payload)
    if not isinstance(value, dict):
        raise ValueError("payload is JSON but not an object")
    return value


EXCERPT_CHARS: Final = 40


def excerpt(value: Any) -> str:
    """A short repr of an offending value for a rejection's detail.

    Details are stored at rest (the dead-letter table and its column statistics), so they carry
    at most a short excerpt; the processor masks card numbers in them as well.
    """
    text = repr(value)
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 3] + "..."


def _negative_zero(value: float) -> bool:
    return value == 0 and math.copysign(1.0, value) < 0


def _check_field(spec: FieldSpec, event: Mapping[str, Any]) -> Invalid | None:
    if spec.name not in event:
        if spec.required:
            return Invalid(
                REASON_MISSING_FIELD, spec.name, f"required field {spec.name!r} is missing"
            )
        return None
    value = event[spec.name]
    if value is None:
        if spec.nullable or not spec.required:
            return None
        return Invalid(REASON_MISSING_FIELD, spec.name, f"required field {spec.name!r} is null")
    # bool is a subclass of int in Python but a different JSON type.
    if spec.type is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            return Invalid(REASON_OUT_OF_RANGE, spec.name, f"{spec.name!r} is not finite")
    elif spec.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, spec.type)
    if not ok:
        return Invalid(
            REASON_WRONG_TYPE,
            spec.name,
            f"{spec.name!r} must be {spec.type.__name__}, got {type(value).__name__}",
        )
    # -0.0 == 0.0, but its sign says it was negated (a negative amount that rounded to zero).
    if spec.minimum is not None and (
        value < spec.minimum
        or (value == spec.minimum and (spec.exclusive_minimum or _negative_zero(value)))
    ):
        bound = ">" if spec.exclusive_minimum else ">="
        return Invalid(
            REASON_OUT_OF_RANGE, spec.name, f"{spec.name!r} must be {bound} {spec.minimum}"
        )
    if spec.maximum is not None and value > spec.maximum:
        return Invalid(REASON_OUT_OF_RANGE, spec.name, f"{spec.name!r} must be <= {spec.maximum}")
    if spec.allowed is not None and value not in spec.allowed:
        return Invalid(
            REASON_INVALID_VALUE, spec.name, f"{spec.name!r} has unknown value {excerpt(value)}"
        )
    # fullmatch: `$` alone would let a trailing newline through ("tx-000001\n").
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        return Invalid(REASON_INVALID_VALUE, spec.name, f"{spec.name!r} is malformed")
    return None


# Quick acceptance of a field's value. A test built here passes only values `_check_field`
# accepts (exact JSON types, bounds strictly inside, a compiled pattern); anything else (a
# missing field, an int amount, a value on a bound) goes through `_check_field` for its exact
# answer. Validation is ~half of the stream's parse cost, and nearly every value is a good one.
_Accepts = Callable[[Any], bool]


def _accepts_value(spec: FieldSpec) -> _Accepts:
    """A cheap test that passes a subset of the values `_check_field` accepts for `spec`."""
    pattern = re.compile(spec.pattern) if spec.pattern is not None else None
    allowed, low, high = spec.allowed, spec.minimum, spec.maximum
    unbounded = low is None and high is None

    def never(value: Any) -> bool:
        return False  # always the full check

    def a_str(value: Any) -> bool:
        return type(value) is str

    def a_matching_str(value: Any) -> bool:
        return type(value) is str and pattern is not None and pattern.fullmatch(value) is not None

    def an_allowed_str(value: Any) -> bool:
        return type(value) is str and allowed is not None and value in allowed

    def a_bool(value: Any) -> bool:
        return type(value) is bool

    def an_int(value: Any) -> bool:
        return type(value) is int

    def a_float_inside(value: Any) -> bool:
        # Strictly above the minimum: a value on it (0.0, -0.0) is checked in full. NaN fails
        # both comparisons and infinities lie outside finite bounds.
        return type(value) is float and low < value <= high  # type: ignore[operator]

    base = never
    if spec.type is str and unbounded and allowed is None:
        base = a_str if pattern is None else a_matching_str
    elif spec.type is str and unbounded and pattern is None:
        base = an_allowed_str
    elif spec.type is bool:
        base = a_bool
    elif spec.type is int and unbounded and allowed is None:
        base = an_int
    elif spec.type is float and low is not None and high is not None and pattern is None:
        base = a_float_inside
    if not (spec.nullable or not spec.required):
        return base

    def none_or_base(value: Any) -> bool:
        return value is None or base(value)

    return none_or_base


def _rules(specs: tuple[FieldSpec, ...]) -> tuple[tuple[str, _Accepts, FieldSpec], ...]:
    return tuple((spec.name, _accepts_value(spec), spec) for spec in specs)


_EVENT_RULES: Final = {kind: _rules(fields_of(kind)) for kind in EVENT_FIELDS}
_LABEL_RULES: Final = _rules(LABEL_FIELDS)
_SENSITIVE_OF: Final = {
    kind: tuple(spec.name for spec in specs if spec.sensitive)
    for kind, specs in EVENT_FIELDS.items()
}


def _check_card_by_token(
    event: Mapping[str, Any], pan: str, token: str, last4: str
) -> Invalid | None:
    """The card is named once: by PAN, or by token with its last four digits."""
    has_pan, has_token = event.get(pan) is not None, event.get(token) is not None
    if has_pan and has_token:
        return Invalid(REASON_INVALID_VALUE, token, f"give {pan!r} or {token!r}, not both")
    if not has_pan and not has_token:
        return Invalid(
            REASON_MISSING_FIELD, pan, f"required field {pan!r} (or {token!r}) is missing"
        )
    if has_token and event.get(last4) is None:
        return Invalid(REASON_MISSING_FIELD, last4, f"{token!r} needs {last4!r}")
    if has_pan and event.get(last4) is not None:
        return Invalid(REASON_INVALID_VALUE, last4, f"{last4!r} goes with {token!r} only")
    return None


def validate_event(event: Any, now: datetime | None = None) -> Invalid | None:
    """Check one decoded event against the contract; None means valid.

    `now` is the reference clock for future timestamps (the record's arrival time in the
    processor); without it the time check is skipped.
    """
    # A decoded payload is a dict: the ABC's isinstance is for other callers' mappings.
    if type(event) is not dict and not isinstance(event, Mapping):
        return Invalid(REASON_NOT_AN_OBJECT, None, "payload is JSON but not an object")
    version = event.get("schema_version")
    if "schema_version" not in event:
        return Invalid(
            REASON_MISSING_FIELD, "schema_version", "required field 'schema_version' is missing"
        )
    # Type first: a list or an object is unhashable and cannot be looked up in a set.
    if type(version) is not int or version not in SUPPORTED_SCHEMA_VERSIONS:
        return Invalid(
            REASON_UNKNOWN_SCHEMA_VERSION,
            "schema_version",
            f"unsupported schema_version {excerpt(version)}",
        )
    event_type = event.get("event_type")
    if not isinstance(event_type, str) or event_type not in EVENT_FIELDS:
        if "event_type" not in event:
            return Invalid(
                REASON_MISSING_FIELD, "event_type", "required field 'event_type' is missing"
            )
        return Invalid(
            REASON_UNKNOWN_EVENT_TYPE, "event_type", f"unknown event_type {excerpt(event_type)}"
        )
    get = event.get
    for name, accepts, spec in _EVENT_RULES[event_type]:
        if not accepts(get(name)):
            problem = _check_field(spec, event)
            if problem is not None:
                return problem
    if event_type in CARD_BY_TOKEN:
        problem = _check_card_by_token(event, *CARD_BY_TOKEN[event_type])
        if problem is not None:
            return problem
    for name in _SENSITIVE_OF[event_type]:
        if event.get(name) is not None and not luhn_valid(event[name]):
            return Invalid(REASON_INVALID_VALUE, name, f"{name!r} fails the Luhn check")
    for name in ("event_time", "transaction_time"):
        if name in event:
            try:
                moment = parse_event_time(event[name])
            except ValueError:
                return Invalid(REASON_INVALID_VALUE, name, f"{name!r} is not a valid timestamp")
            if name == "event_time" and now is not None and moment - now > MAX_FUTURE_SKEW:
                return Invalid(
                    REASON_FUTURE_EVENT_TIME, name, f"{name!r} is more than {MAX_FUTURE_SKEW} ahead"
                )
    label = event.get(LABEL_FIELD)
    if label is not None:
        if type(label) is not dict and not isinstance(label, Mapping):
            return Invalid(REASON_WRONG_TYPE, LABEL_FIELD, "'label' must be an object")
        for name, accepts, spec in _LABEL_RULES:
            if not accepts(label.get(name)):
                problem = _check_field(spec, label)
                if problem is not None:
                    return Invalid(problem.reason, f"label.{name}", problem.detail)
    return None


# orjson turns an integer outside [-2^63, 2^64) into a float; json keeps it an int.
_INT_RANGE: Final = 2.0**63


def _beyond_int_range(value: Any) -> bool:
    """Whether `value` is, or holds, a float outside the range orjson reads integers in."""
    kind = type(value)
    if kind is float:
        return not -_INT_RANGE < value < _INT_RANGE
    if kind is not dict and kind is not list:
        return False
    # One call per container, not per value: an event is one flat object and its label.
    for item in value.values() if kind is dict else value:
        kind = type(item)
        if kind is float:
            if not -_INT_RANGE < item < _INT_RANGE:
                return True
        elif (kind is dict or kind is list) and _beyond_int_range(item):
            return True
    return False


def decode_json(payload: bytes | str) -> Any:
    """`json.loads(payload)`, through orjson (~4x faster) where it gives the same answer.

    orjson refuses what json reads but JSON does not allow (NaN, a byte-order mark, UTF-16,
    lone surrogates, numbers past a double, nesting past 1,024) and reads a huge integer as a
    float: those payloads, and any with a float of an integer's size, are decoded again by
    json, so every payload decodes, or fails, exactly as json.loads would have it.
    """
    try:
        value = orjson.loads(payload)
    except (orjson.JSONDecodeError, RecursionError):
        return json.loads(payload)
    try:
        huge = _beyond_int_range(value)
    except RecursionError:  # nesting deeper than this walk may go: json decides
        huge = True
    return json.loads(payload) if huge else value


def parse_payload(
    payload: bytes, now: datetime | None = None
) -> tuple[dict[str, Any] | None, Invalid | None]:
    """Decode and validate one raw record: (event, None) or (None, why it is invalid)."""
    try:
        event = decode_json(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the interpreter's stack allows.
        return None, Invalid(
            REASON_NOT_JSON, None, f"payload is not JSON: {exc.__class__.__name__}"
        )
    problem = validate_event(event, now)
    if problem is not None:
        return None, problem
    return event, None


def event_id(event: Mapping[str, Any]) -> str:
    """The id that identifies `event` (and its duplicates) among events of its type."""
    return str(event[ID_FIELD[event["event_type"]]])
