"""Import your own transactions: map a CSV or Parquet file's columns onto the event contract.

    python -m producer.importer --mapping mapping.yaml input.csv -o events.jsonl [--rejects r.jsonl]

The mapping (YAML; config/examples/importer-mapping.yaml) names the source column, or a constant,
of each transaction field, with simple transforms: time parsing (ISO-8601, epoch seconds or
milliseconds, a strptime format; naive times in a named timezone), an amount scale (cents: 0.01),
an id prefix and value replacements. Without a PAN column, `card_id` names a card id column and
the importer derives a deterministic, Luhn-valid synthetic PAN (19 digits starting with 9) from
it. With a `fraud` column each transaction gets a label (`fraud_scenario` is any short name), and
each fraud a chargeback (confirmed_fraud) `label_delay_days` after it, unless that is after now.

Every event goes through the contract's validator; a row that fails is left out and counted by
reason on stderr, and with --rejects written there with the reason. Card numbers never reach the
rejects file or the logs in clear: the PAN column keeps its last four digits only, and any other
digit run that could be a card number is masked. The output is JSONL in the contract's format,
sorted by event time: `python -m producer.main --replay` sends it and `python -m ml_model.train
--history` trains on it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import secrets
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pandas as pd

from config.cli import configure_logging, new_parser, run_cli
from config.exceptions import ConfigError, ContractError
from processor.card_tokens import mask_pans_in_text
from producer.contract import (
    CHARGEBACK,
    SCHEMA_VERSION,
    TRANSACTION,
    Invalid,
    encode_event,
    format_event_time,
    parse_event_time,
    validate_event,
)
from producer.importer_mapping import (
    CARD_ID,
    TIME_FIELD,
    TRANSACTION_SPECS,
    ImportMapping,
    convert,
    load_mapping,
    raw_value,
    to_flag,
)

logger = logging.getLogger(__name__)

FORMATS: Final = ("auto", "csv", "parquet")
_SUFFIX_FORMAT: Final = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
MAX_ID_CHARS: Final = 64
LOGGED_REJECTS: Final = 5


@dataclass
class ImportResult:
    """What one import made of its rows."""

    rows: int = 0
    transactions: int = 0
    chargebacks: int = 0
    chargebacks_not_due: int = 0  # dated after `now`: their label has not arrived yet
    rejected: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Reject:
    """One row the contract refused: 1-based data row, why, and its mapped values (masked)."""

    row: int
    problem: Invalid
    values: dict[str, Any]


def read_table(path: Path, fmt: str = "auto", delimiter: str = ",") -> pd.DataFrame:
    """The input's rows; CSV cells stay text (leading zeros kept), empty cells are missing."""
    if not path.is_file():
        raise ConfigError(f"input file {str(path)!r} does not exist")
    kind = _SUFFIX_FORMAT.get(path.suffix.lower()) if fmt == "auto" else fmt
    if kind is None:
        raise ConfigError(
            f"argument --format: cannot tell the format of {path.name!r} from its suffix; "
            "give --format csv or --format parquet"
        )
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False, sep=delimiter)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        message = " ".join(str(exc).split())
        raise ConfigError(f"input file {str(path)!r} is not readable as {kind}: {message}") from exc


def check_columns(mapping: ImportMapping, table: pd.DataFrame, name: str) -> None:
    """Every column the mapping names is in the table; else a ConfigError naming the key."""
    present = set(map(str, table.columns))
    for key, column in mapping.columns().items():
        if column not in present:
            shown = ", ".join(sorted(present)[:30])
            raise ConfigError(
                f"mapping {key}: column {column!r} is not in {name} (its columns: {shown})"
            )


def transaction_of(mapping: ImportMapping, row: dict[str, Any]) -> dict[str, Any]:
    """One row as a transaction event, in the contract's field order (not yet validated)."""
    event: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "event_type": TRANSACTION}
    event[TIME_FIELD] = convert(TIME_FIELD, mapping.fields[TIME_FIELD], row)
    for name in TRANSACTION_SPECS:
        source_name = CARD_ID if name == "card_number" and CARD_ID in mapping.fields else name
        source = mapping.fields.get(source_name)
        if source is not None:
            event[name] = convert(source_name, source, row)
    if mapping.fraud is not None:
        flag = raw_value(mapping.fraud, row)
        scenario = (
            None if mapping.fraud_scenario is None else raw_value(mapping.fraud_scenario, row)
        )
        event["label"] = {
            "is_fraud": None if flag is None else to_flag(flag),
            "fraud_scenario": None if scenario is None else str(scenario).strip(),
        }
    return event


def chargeback_of(transaction: dict[str, Any], delay: timedelta) -> dict[str, Any]:
    """The chargeback that confirms a fraud transaction, `delay` after it."""
    tx_id = str(transaction["transaction_id"])
    chargeback_id = f"cb-{tx_id}"
    if len(chargeback_id) > MAX_ID_CHARS:
        chargeback_id = "cb-" + hashlib.sha256(tx_id.encode()).hexdigest()[:40]
    at = parse_event_time(transaction["event_time"]) + delay
    return {
        "schema_version": SCHEMA_VERSION,
        "event_type": CHARGEBACK,
        "event_time": format_event_time(at),
        "chargeback_id": chargeback_id,
        "transaction_id": tx_id,
        "card_number": transaction["card_number"],
        "terminal_id": transaction["terminal_id"],
        "transaction_time": transaction["event_time"],
        "confirmed_fraud": True,
        "label": transaction["label"],
    }


def import_rows(
    mapping: ImportMapping,
    rows: Iterator[dict[str, Any]],
    now: datetime,
    result: ImportResult,
    rejects: list[Reject],
) -> list[dict[str, Any]]:
    """The valid events of `rows`, sorted by event time; counts and rejects go to the others."""
    delay = timedelta(days=mapping.label_delay_days)
    keyed: list[tuple[str, int, dict[str, Any]]] = []
    for number, row in enumerate(rows, start=1):
        result.rows += 1
        event = transaction_of(mapping, row)
        problem = validate_event(event, now)
        chargeback = None
        if problem is None and (event.get("label") or {}).get("is_fraud"):
            chargeback = chargeback_of(event, delay)
            invalid = validate_event(chargeback)
            if invalid is not None:
                problem = Invalid(invalid.reason, f"chargeback.{invalid.field}", invalid.detail)
        if problem is not None:
            result.rejected[_reason(problem)] += 1
            rejects.append(Reject(number, problem, _mapped_values(mapping, row)))
            continue
        keyed.append((event["event_time"], len(keyed), event))
        result.transactions += 1
        if chargeback is not None:
            if parse_event_time(chargeback["event_time"]) > now:
                result.chargebacks_not_due += 1
            else:
                keyed.append((chargeback["event_time"], len(keyed), chargeback))
                result.chargebacks += 1
    keyed.sort(key=lambda item: (item[0], item[1]))  # canonical times sort as text
    return [event for _, _, event in keyed]


def _reason(problem: Invalid) -> str:
    return f"{problem.reason} {problem.field}" if problem.field else problem.reason


def _mapped_values(mapping: ImportMapping, row: dict[str, Any]) -> dict[str, Any]:
    """The row's mapped columns; the PAN column keeps only its last four digits."""
    pan = mapping.fields.get("card_number")
    pan_column = pan.column if pan is not None else None
    values: dict[str, Any] = {}
    for column in dict.fromkeys(mapping.columns().values()):
        value = row.get(column)
        if column == pan_column and value is not None:
            digits = "".join(ch for ch in str(value) if ch.isdigit())
            value = f"****{digits[-4:]}" if len(digits) >= 8 else "****"
        values[column] = value if isinstance(value, str | int | float | bool) else str(value)
    return values


def write_events(events: list[dict[str, Any]], path: Path) -> None:
    """JSONL in the contract's encoding, written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as out:
        for event in events:
            out.write(encode_event(event) + b"\n")
    partial.replace(path)


def write_rejects(rejects: list[Reject], path: Path) -> None:
    """One JSON line per rejected row, every digit run that could be a PAN masked."""
    key = secrets.token_bytes(32)  # masks are unlinkable outside this run
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for reject in rejects:
            line = json.dumps(
                {
                    "row": reject.row,
                    "reason": reject.problem.reason,
                    "field": reject.problem.field,
                    "detail": reject.problem.detail,
                    "values": reject.values,
                },
                ensure_ascii=False,
                default=str,
            )
            out.write(mask_pans_in_text(line, key) + "\n")


def run_import(
    mapping: ImportMapping,
    source: Path,
    output: Path,
    *,
    rejects_path: Path | None = None,
    fmt: str = "auto",
    delimiter: str = ",",
    now: datetime | None = None,
) -> ImportResult:
    """Read, map, validate, write; rejects only counted (and written with `rejects_path`)."""
    table = read_table(source, fmt, delimiter)
    check_columns(mapping, table, source.name)
    result = ImportResult()
    rejects: list[Reject] = []
    rows = iter(table.to_dict("records"))
    events = import_rows(mapping, rows, now or datetime.now(UTC), result, rejects)
    for reject in rejects[:LOGGED_REJECTS]:
        logger.info("row %d rejected: %s", reject.row, _reason(reject.problem))
    if rejects_path is not None:
        write_rejects(rejects, rejects_path)
    if result.rows and not events:
        raise ContractError(
            f"none of the {result.rows:,} rows of {source.name} passed the contract: "
            + ", ".join(f"{reason} ({count:,})" for reason, count in result.rejected.most_common(5))
        )
    write_events(events, output)
    return result


def summary(result: ImportResult, output: Path, rejects_path: Path | None) -> list[str]:
    """The lines the CLI prints on stderr: what was written, then rejects by reason."""
    lines = [
        f"imported {result.rows:,} rows: {result.transactions:,} transactions and "
        f"{result.chargebacks:,} chargebacks written to {output}"
    ]
    if result.chargebacks_not_due:
        lines.append(
            f"{result.chargebacks_not_due:,} chargebacks left out: dated after now (the "
            "label delay has not passed)"
        )
    rejected = sum(result.rejected.values())
    if rejected:
        where = f" (rows in {rejects_path})" if rejects_path else " (--rejects FILE lists them)"
        lines.append(f"rejected {rejected:,} of {result.rows:,} rows by the contract{where}:")
        lines.extend(f"  {reason}: {count:,}" for reason, count in result.rejected.most_common())
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("producer.importer", __doc__, profile=False)
    parser.add_argument("input", help="the CSV or Parquet file of transactions")
    parser.add_argument(
        "--mapping", required=True, help="YAML mapping of contract fields onto input columns"
    )
    parser.add_argument("-o", "--output", required=True, help="the JSONL events file to write")
    parser.add_argument(
        "--rejects",
        default=None,
        metavar="FILE",
        help="also write each rejected row (reason, field, values with card numbers masked) "
        "as a JSON line to FILE",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="auto", help="input format; auto: by file suffix"
    )
    parser.add_argument("--delimiter", default=",", help="CSV field delimiter")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    if len(args.delimiter) != 1:
        raise ConfigError(f"argument --delimiter: one character, got {args.delimiter!r}")
    mapping = load_mapping(args.mapping)
    output, rejects = Path(args.output), Path(args.rejects) if args.rejects else None
    result = run_import(
        mapping,
        Path(args.input),
        output,
        rejects_path=rejects,
        fmt=args.format,
        delimiter=args.delimiter,
    )
    for line in summary(result, output, rejects):
        print(line, file=sys.stderr)
    return 0


def cli() -> int:
    """Console script `fraud-import`; `python -m producer.importer` runs the same."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
