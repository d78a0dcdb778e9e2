"""Training history: events in the processor's parsed-row columns, from three sources.

- generated: the producer's generator (labels included), for `make demo` and tests;
- a JSONL file in the event contract's format (`producer.main --sink file` writes one);
- the Delta lake the processor writes (transactions, auth_events, labels tables).

Card numbers are replaced by a one-way id as soon as an event is read; training needs only a
stable id per card, never the PAN. A `DropCount` passed to the loaders counts the lines read
and the ones the contract rejected, by reason, for training's --max-dropped-share.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from config.exceptions import ContractError
from config.lake import delta_uri, options_for
from config.settings import AwsSettings, load_config
from ml_model.features.definitions import LABEL_DELAY
from ml_model.features.events import FEATURE_INPUTS
from producer.contract import ID_FIELD, Invalid, parse_event_time, parse_payload
from producer.generator import GeneratorOptions, TransactionGenerator

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = (*FEATURE_INPUTS, "label_is_fraud", "label_fraud_scenario")
_LAKE_TABLES = ("transactions", "auth_events", "labels")


@dataclass
class DropCount:
    """Lines (events) a history source held, and those dropped by reason ("out_of_range amount")."""

    lines: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def dropped(self) -> int:
        return sum(self.reasons.values())


def reason_of(problem: Invalid) -> str:
    """A rejection's reason code and field, the key `DropCount.reasons` counts by."""
    return f"{problem.reason} {problem.field}" if problem.field else problem.reason


def card_id(pan: str) -> str:
    return "pan_" + hashlib.sha256(pan.encode()).hexdigest()[:24]


def _row(event: dict[str, Any]) -> dict[str, Any]:
    label = event.get("label") or {}
    pan = event.get("card_number")
    row = {name: event.get(name) for name in HISTORY_COLUMNS}
    row["card_token"] = card_id(pan) if pan else None
    row["event_time"] = parse_event_time(event["event_time"])
    if event.get("transaction_time"):
        row["transaction_time"] = parse_event_time(event["transaction_time"])
    row["label_is_fraud"] = label.get("is_fraud")
    row["label_fraud_scenario"] = label.get("fraud_scenario")
    return row


def _frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(list(rows), columns=list(HISTORY_COLUMNS))
    for column in ("event_time", "transaction_time"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame.sort_values("event_time", kind="stable", ignore_index=True)


def generated_history(options: GeneratorOptions) -> pd.DataFrame:
    """The generator's events (anomalies off: training reads clean, labelled history)."""
    generator = TransactionGenerator(options.with_changes(anomaly_rate=0.0))
    return _frame(_row(json.loads(record.data)) for record in generator.records())


def _jsonl_events(path: Path, drops: DropCount) -> Iterator[dict[str, Any]]:
    bad = 0
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            drops.lines += 1
            event, problem = parse_payload(line)
            if problem is not None or event is None:
                bad += 1
                drops.reasons[reason_of(problem) if problem else "unparseable"] += 1
                if bad <= 5:
                    logger.warning("%s line %d skipped: %s", path, number, problem)
                continue
            yield event
    if bad:
        logger.warning("%s: %d invalid lines skipped", path, bad)


def jsonl_history(path: Path, drops: DropCount | None = None) -> pd.DataFrame:
    if not path.exists():
        raise ContractError(f"--history {path}: no such file")
    frame = _frame(
        _row(event) for event in _jsonl_events(path, drops if drops is not None else DropCount())
    )
    if frame.empty:
        raise ContractError(f"--history {path}: no valid events in the file")
    return frame


def delta_history(lake_path: str, aws: AwsSettings | None = None) -> pd.DataFrame:
    """The processor's lake tables (already tokenised) as one history frame.

    Read with delta-rs, no Spark: a local folder, or `s3a://` / `s3://` on the profile's S3
    (endpoint, region and credentials from `aws`, so `--profile aws` reads real S3).
    """
    from deltalake import DeltaTable

    aws = aws or load_config().aws
    frames = []
    for table in _LAKE_TABLES:
        uri = delta_uri(lake_path, table)
        options = options_for(uri, aws)
        if not DeltaTable.is_deltatable(uri, storage_options=options):
            if table == _LAKE_TABLES[0]:
                raise ContractError(f"--history {lake_path}: no Delta table {table} there")
            continue  # a lake without auth events or labels yet
        delta = DeltaTable(uri, storage_options=options)
        present = [f.name for f in delta.schema().fields if f.name in HISTORY_COLUMNS]
        frame = delta.to_pyarrow_table(columns=present).to_pandas()
        frames.append(frame.reindex(columns=list(HISTORY_COLUMNS)))
    history = pd.concat(frames, ignore_index=True)
    for column in ("event_time", "transaction_time"):
        history[column] = pd.to_datetime(history[column], utc=True)
    return history.sort_values("event_time", kind="stable", ignore_index=True)


def is_lake(source: str) -> bool:
    """Whether a --history names the processor's lake (s3 prefix, or a folder of its tables)."""
    path = Path(source)
    return source.startswith(("s3://", "s3a://")) or (
        path.is_dir() and (path / _LAKE_TABLES[0]).exists()
    )


def load_history(
    source: str | None,
    options: GeneratorOptions,
    drops: DropCount | None = None,
    aws: AwsSettings | None = None,
) -> tuple[pd.DataFrame, str]:
    """(history, description): generated when `source` is None, else a JSONL file or a lake.

    `drops` counts the lines read and rejected (a JSONL file; the other sources drop nothing).
    """
    drops = drops if drops is not None else DropCount()
    if source is None:
        history, description = generated_history(options), f"generated (seed {options.seed})"
    else:
        if is_lake(source):
            history, description = delta_history(source, aws), f"Delta lake {source}"
        else:
            return jsonl_history(Path(source), drops), f"JSONL {source}"
    drops.lines += len(history)
    return history, description


@dataclass(frozen=True)
class ArrivedLabels:
    """How a history's transactions were labelled from the chargebacks it holds."""

    as_of: pd.Timestamp  # labels (and events) known at this moment
    label_delay: pd.Timedelta  # a transaction this old without a chargeback counts as genuine
    fraud: int  # transactions whose latest arrived chargeback confirms fraud
    genuine: int  # confirmed genuine, or old enough without a chargeback
    pending: int  # younger than the label delay and no chargeback yet: no label


def labels_as_of(
    history: pd.DataFrame, as_of: pd.Timestamp | None = None, label_delay_ms: int = LABEL_DELAY
) -> tuple[pd.DataFrame, ArrivedLabels]:
    """The history as it was known at `as_of` (default: its newest event), labelled only by
    the chargebacks that had arrived by then, as production learns of fraud.

    A transaction is fraud when the latest of its arrived chargebacks confirms it, genuine
    when that one clears it or when none arrived although it is at least `label_delay_ms` old,
    and unlabelled otherwise (it still feeds the features of the others). Events after `as_of`
    are dropped; a label field carried by the events themselves is ignored, except for the
    scenario name of a fraud (kept for the per-scenario evaluation).
    """
    as_of = history["event_time"].max() if as_of is None else as_of
    delay = pd.Timedelta(milliseconds=label_delay_ms)
    known = history[history["event_time"] <= as_of].copy()
    chargebacks = known[known["event_type"] == "chargeback"].sort_values(
        ["event_time", "chargeback_id"], kind="stable"
    )
    verdicts = chargebacks.drop_duplicates("transaction_id", keep="last").set_index(
        "transaction_id"
    )["confirmed_fraud"]
    is_tx = known["event_type"] == "transaction"
    reported = known.loc[is_tx, "transaction_id"].map(verdicts)
    old_enough = known.loc[is_tx, "event_time"] <= as_of - delay
    labels = pd.Series(
        [
            bool(verdict) if pd.notna(verdict) else (False if mature else None)
            for verdict, mature in zip(reported, old_enough, strict=True)
        ],
        index=reported.index,
        dtype=object,
    )
    known["label_is_fraud"] = None
    known.loc[is_tx, "label_is_fraud"] = labels
    known.loc[known["label_is_fraud"] != True, "label_fraud_scenario"] = None  # noqa: E712
    counts = labels.value_counts(dropna=False)
    return known.reset_index(drop=True), ArrivedLabels(
        as_of=as_of,
        label_delay=delay,
        fraud=int(counts.get(True, 0)),
        genuine=int(counts.get(False, 0)),
        pending=int(labels.isna().sum()),
    )


def event_ids(frame: pd.DataFrame) -> pd.Series:
    """The contract's id of each row (transaction_id, auth_id or chargeback_id)."""
    ids = pd.Series(index=frame.index, dtype=object)
    for kind, column in ID_FIELD.items():
        mask = frame["event_type"] == kind
        ids[mask] = frame.loc[mask, column]
    return ids
