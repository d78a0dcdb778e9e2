"""The importer's mapping: which source column (or constant) fills each contract field, and how.

A mapping is YAML, checked by pydantic (`extra="forbid"`) and then against the contract: each key
of `fields` is a transaction field (or `card_id`), every required field is mapped, and a
transform is only used where it means something. Any problem is one `ConfigError` naming the
key. The value transforms below are best effort: a value they cannot convert is passed on as it
is, so the contract's validator rejects the row with its own reason code and field.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.exceptions import ConfigError
from producer.contract import (
    EVENT_FIELDS,
    TRANSACTION,
    FieldSpec,
    format_epoch_ms,
    format_event_time,
    luhn_check_digit,
)

CARD_ID: Final = "card_id"
TIME_FIELD: Final = "event_time"
TRANSACTION_SPECS: Final = {spec.name: spec for spec in EVENT_FIELDS[TRANSACTION]}
MAPPABLE: Final = (TIME_FIELD, *TRANSACTION_SPECS, CARD_ID)
# A synthetic PAN: this prefix (ISO/IEC 7812 major industry 9, never a payment card network),
# 17 digits of SHA-256 of the card id, and the Luhn check digit: 19 digits.
SYNTHETIC_PAN_PREFIX: Final = "9"
TRUE_TEXT: Final = frozenset({"true", "t", "yes", "y", "1", "fraud"})
FALSE_TEXT: Final = frozenset({"false", "f", "no", "n", "0", "genuine"})


class Source(BaseModel):
    """Where one field's value comes from: a column or a constant, plus optional transforms."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str | None = Field(default=None, min_length=1, description="source column")
    constant: Any = Field(default=None, description="fixed value: text, a number, true/false")
    values: dict[str, str] | None = Field(
        default=None, description="replace source values first (e.g. {POS: pos})"
    )
    prefix: str | None = Field(default=None, description="text put before ids (e.g. 'tx-')")
    scale: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="numbers: times this (cents: 0.01)"
    )
    time: Literal["iso", "epoch_s", "epoch_ms"] | None = Field(
        default=None, description="event_time: ISO-8601 (default), epoch seconds or milliseconds"
    )
    format: str | None = Field(default=None, description="event_time: a strptime format")
    timezone: str | None = Field(default=None, description="event_time: zone of naive times")

    @field_validator("constant")
    @classmethod
    def _scalar(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str | bool | int | float):
            raise ValueError("a constant is text, a number or true/false")
        return value

    @model_validator(mode="after")
    def _one_origin(self) -> Source:
        if (self.column is None) == ("constant" not in self.model_fields_set):
            raise ValueError("give either 'column' or 'constant'")
        if self.time is not None and self.format is not None:
            raise ValueError("give 'time' or 'format', not both")
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown timezone {self.timezone!r}") from exc
        return self

    def zone(self) -> tzinfo:
        return ZoneInfo(self.timezone or "UTC")


def _column_shorthand(value: Any) -> Any:
    return {"column": value} if isinstance(value, str) else value


class ImportMapping(BaseModel):
    """A whole mapping: the fields, the fraud label and the delay of its chargebacks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: dict[str, Source] = Field(description="contract field (or card_id) -> its source")
    fraud: Source | None = Field(default=None, description="the fraud flag: label + chargeback")
    fraud_scenario: Source | None = Field(default=None, description="the label's scenario name")
    label_delay_days: float = Field(
        default=7.0, ge=0, le=365, allow_inf_nan=False, description="chargeback after the fraud"
    )

    @field_validator("fields", mode="before")
    @classmethod
    def _fields_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: _column_shorthand(item) for key, item in value.items()}
        return value

    @field_validator("fraud", "fraud_scenario", mode="before")
    @classmethod
    def _label_shorthand(cls, value: Any) -> Any:
        return _column_shorthand(value)

    def columns(self) -> dict[str, str]:
        """{mapping key: source column} of every column the mapping reads."""
        named: dict[str, Source | None] = {f"fields.{n}": s for n, s in self.fields.items()}
        named.update({"fraud": self.fraud, "fraud_scenario": self.fraud_scenario})
        return {
            key: source.column
            for key, source in named.items()
            if source is not None and source.column is not None
        }


def load_mapping(path: str | Path) -> ImportMapping:
    """Read and check a mapping file; any problem is one ConfigError naming the key."""
    where = f"mapping {path}"
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{where} does not exist (option --mapping)") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a YAML mapping with a 'fields' key")
    try:
        mapping = ImportMapping.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in err['loc']) or '(top level)'}: "
            + err["msg"].removeprefix("Value error, ")
            for err in exc.errors()
        ]
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:])})" if problems[1:] else ""
        raise ConfigError(f"{where}: {problems[0]}{more}") from exc
    check_mapping(mapping, where)
    return mapping


def check_mapping(mapping: ImportMapping, where: str = "mapping") -> None:
    """The contract's side: known fields, required ones mapped, transforms where they fit."""
    fields = mapping.fields
    for name, source in fields.items():
        key = f"{where}: fields.{name}"
        if name not in MAPPABLE:
            raise ConfigError(
                f"{key}: not a transaction field; map one of {', '.join(MAPPABLE)} "
                "(schema_version and event_type are set by the importer)"
            )
        kind = _kind(name)
        for transform, allowed in (
            ("scale", kind == "number"),
            ("prefix", kind in ("text", "card_id")),
            ("time", name == TIME_FIELD),
            ("format", name == TIME_FIELD),
            ("timezone", name == TIME_FIELD),
        ):
            if getattr(source, transform) is not None and not allowed:
                raise ConfigError(f"{key}.{transform}: does not apply to {name}")
    if ("card_number" in fields) == (CARD_ID in fields):
        raise ConfigError(
            f"{where}: fields.card_number: map the PAN column, or fields.card_id for a "
            "synthetic PAN derived from a card id (one of the two)"
        )
    required = [TIME_FIELD, *(s.name for s in TRANSACTION_SPECS.values() if s.required)]
    for name in required:
        if name not in fields and name != "card_number":
            raise ConfigError(f"{where}: fields.{name}: required (give a column or a constant)")
    if mapping.fraud_scenario is not None and mapping.fraud is None:
        raise ConfigError(f"{where}: fraud_scenario: needs 'fraud', the fraud flag column")


def _kind(name: str) -> str:
    if name == CARD_ID:
        return "card_id"
    if name == TIME_FIELD:
        return "time"
    spec: FieldSpec = TRANSACTION_SPECS[name]
    return "number" if spec.type is float else "text"


# -- value transforms ------------------------------------------------------------------------


def is_missing(value: Any) -> bool:
    """An empty CSV cell, a null, a NaN or a NaT."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ == "NaTType"


def raw_value(source: Source, row: dict[str, Any]) -> Any:
    """The source's value in `row`, after `values`; None when missing."""
    value = source.constant if source.column is None else row.get(source.column)
    if is_missing(value):
        return None
    if source.values is not None:
        value = source.values.get(_text(value), value)
    return value


def convert(name: str, source: Source, row: dict[str, Any]) -> Any:
    """The contract value of field `name` (or `card_id`'s synthetic PAN) for one row."""
    value = raw_value(source, row)
    if value is None:
        return None
    kind = _kind(name)
    if kind == "time":
        return to_event_time(value, source)
    if kind == "number":
        return to_number(value, source.scale)
    if isinstance(value, bool):
        return value  # the contract says wrong_type
    text = (source.prefix or "") + _text(value)
    return synthetic_pan(text) if kind == "card_id" else text


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 5411.0 from a numeric column is the code "5411"
    return str(value).strip()


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(value.strip() if isinstance(value, str) else repr(value))
    except (InvalidOperation, ValueError, TypeError):
        return None
    return number if number.is_finite() else None


def to_number(value: Any, scale: float | None) -> Any:
    """A float, scaled exactly in decimal (1999 * 0.01 is 19.99); else the value unchanged."""
    number = _decimal(value)
    if number is None:
        return float(value) if isinstance(value, float) else value
    if scale is not None:
        number *= Decimal(repr(scale))
    return float(number)


def to_event_time(value: Any, source: Source) -> Any:
    """Canonical event time (UTC, ms, `Z`); the value unchanged when it is not a time."""
    try:
        if source.time in ("epoch_s", "epoch_ms"):
            number = _decimal(value)
            if number is None:
                return value
            millis = number * 1000 if source.time == "epoch_s" else number
            return format_epoch_ms(int(millis.to_integral_value()))
        if isinstance(value, datetime):  # pandas.Timestamp too (a Parquet timestamp column)
            moment = value
        elif source.format is not None:
            moment = datetime.strptime(_text(value), source.format)
        else:
            moment = datetime.fromisoformat(_text(value))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=source.zone())
        return format_event_time(moment)
    except (ValueError, OverflowError, OSError):
        return value


def to_flag(value: Any) -> Any:
    """The fraud flag as a bool (true/false, yes/no, 1/0, fraud/genuine); else unchanged."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    text = _text(value).lower()
    if text in TRUE_TEXT:
        return True
    if text in FALSE_TEXT:
        return False
    return value


def synthetic_pan(card_id: str) -> str:
    """A deterministic, Luhn-valid 19-digit PAN for a card id; never a real card's number.

    The same id always gives the same PAN, so a card's events stay one card. Two ids share a
    PAN with probability about n^2 / 2e17 for n cards (one in ten thousand at ten million).
    """
    digest = int.from_bytes(hashlib.sha256(card_id.encode("utf-8")).digest(), "big")
    body = SYNTHETIC_PAN_PREFIX + f"{digest % 10**17:017d}"
    return body + luhn_check_digit(body)
