"""A lake table built from the collected batch and the feature matrix equals the one Arrow reads
from the rows alone, held rows of an earlier batch, NaNs and other zones included."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ml_model.features import FEATURE_NAMES
from processor.arrow_rows import CollectedBatch
from processor.checkpoint_files import CheckpointFiles
from processor.engine import EngineSettings, FeatureEngine, StateStore
from processor.lake_tables import (
    EVENT_TABLE,
    PARSED_EVENT_COLUMNS,
    SCORE_COLUMNS,
    SCORED_TRANSACTION_TABLE,
    event_table,
)
from processor.sinks import feature_matrix

T0 = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
# The collected batch's columns as the parse step makes them, plus one the tables do not have.
PARSED = pa.schema([f for f in EVENT_TABLE if f.name in PARSED_EVENT_COLUMNS]).append(
    pa.field("dedupe_key", pa.string())
)


def _row(n: int, kind: str = "transaction", amount: float | None = 12.5) -> dict[str, Any]:
    event_id = f"{kind[:2]}-{n}"
    return {
        "event_type": kind,
        "event_id": event_id,
        "transaction_id": event_id if kind == "transaction" else None,
        "auth_id": event_id if kind == "auth" else None,
        "event_time": T0 + timedelta(minutes=7 * n),  # crosses midnight: two event dates
        "card_token": f"tok-{n % 3}",
        "card_last4": "4242",
        "terminal_id": f"t-{n % 2}",
        "amount": amount if kind == "transaction" else None,
        "merchant_id": "m-1",
        "merchant_country": "FR",
        "latitude": 48.85,
        "longitude": None,
        "channel": "pos",
        "shardId": f"shardId-{n % 2:012d}",
        "sequenceNumber": f"{n:030d}",
        "subSequenceNumber": 0,
        "approximateArrivalTimestamp": T0 + timedelta(days=1, seconds=n),
        "dedupe_key": f"{kind}:{event_id}",
    }


def _collected(rows: list[dict[str, Any]], schema: pa.Schema = PARSED) -> CollectedBatch:
    return CollectedBatch(pa.Table.from_pylist(rows, schema=schema))


def _scored(row: dict[str, Any], n: int) -> None:
    """What the engine and the scorer add: lateness, features (NaN and None among them), scores."""
    row["late"] = n % 2 == 0
    row["lateness_ms"] = 5_000 if row["late"] else None
    for j, name in enumerate(FEATURE_NAMES):
        row[name] = math.nan if (n + j) % 5 == 0 else None if (n + j) % 7 == 0 else n * 0.5 + j
    row["fraud_score"] = math.nan if n == 3 else n / 10
    row["model_version"] = "v1"
    row["decision"] = "ALERT" if n % 3 == 0 else "OK"
    row["reason_codes"] = [f"tx_amount={n}"] if n % 3 == 0 else []
    row["challenger_score"] = row["challenger_version"] = None


def test_a_table_of_collected_held_and_nan_rows_equals_arrows_own() -> None:
    rows = [_row(n, amount=math.nan if n == 4 else 12.5 + n) for n in range(6)]
    # Spark's toArrow may name UTC otherwise and use large strings: cast back to the schema.
    zoned = pa.schema(
        [
            f.with_type(pa.timestamp("us", tz="Etc/UTC"))
            if pa.types.is_timestamp(f.type)
            else f.with_type(pa.large_string())
            if f.type == pa.string()
            else f
            for f in PARSED
        ]
    )
    collected = _collected(rows, zoned)
    held = _row(99)  # a transaction held since an earlier batch: not among the collected rows
    transactions = [collected.rows[5], held, *collected.rows[:3]]  # event-key order, say
    for n, row in enumerate(transactions):
        _scored(row, n)

    expected = event_table(transactions, SCORED_TRANSACTION_TABLE)
    built = event_table(
        transactions, SCORED_TRANSACTION_TABLE, collected, feature_matrix(transactions)
    )

    assert built.schema == expected.schema == SCORED_TRANSACTION_TABLE
    assert built.equals(expected)
    first, second = built.to_pylist()[:2]
    assert first["transaction_id"] == "tr-5" and second["transaction_id"] == "tr-99"
    assert [r["event_date"] for r in built.to_pylist()] == [
        r["event_time"].date() for r in transactions
    ]
    assert built.column("amount").null_count == 0  # row 4 (NaN) is not a transaction here
    assert built.column(FEATURE_NAMES[0]).null_count > 0  # NaN and None: null in the lake

    # The job's rows carry their scores as columns instead (the sink's BatchColumns).
    names = [field.name for field in SCORE_COLUMNS]
    scores = {name: [row.pop(name) for row in transactions] for name in names}
    from_columns = event_table(
        transactions, SCORED_TRANSACTION_TABLE, collected, feature_matrix(transactions), scores
    )
    assert from_columns.equals(expected)
    assert from_columns.column("fraud_score").null_count == 1  # NaN: null, as from the rows


def test_event_tables_take_the_collected_columns_of_auth_events_too() -> None:
    rows = [_row(n, kind="auth") for n in range(3)]
    rows[1]["amount"] = math.nan  # an odd float in a parsed column is nulled like any other
    collected = _collected(rows)
    for row in collected.rows:
        row["late"], row["lateness_ms"] = False, None
    built = event_table(collected.rows, EVENT_TABLE, collected)
    assert built.equals(event_table(collected.rows, EVENT_TABLE))
    assert built.column("amount").null_count == 3


def test_the_engine_never_changes_a_parsed_column(tmp_path: Path) -> None:
    """What lets a table gather those columns from the collected batch instead of the rows."""
    rows = [_row(n) for n in range(8)] + [_row(n, kind="auth") for n in range(3)]
    for row in rows:
        # as processor/parse.py writes it: a blake2b in hex
        row["payload_digest"] = hashlib.blake2b(
            row["event_id"].encode(), digest_size=16
        ).hexdigest()
    collected = _collected(rows, PARSED.append(pa.field("payload_digest", pa.string())))
    before = [{name: row[name] for name in PARSED_EVENT_COLUMNS} for row in collected.rows]
    engine = FeatureEngine(
        StateStore(CheckpointFiles(str(tmp_path))),
        EngineSettings(
            watermark_delay_ms=60_000, idle_shard_timeout_ms=60_000, dedupe_retention_ms=10**9
        ),
    )
    for row in collected.rows:
        row["dead_letter_reason"] = None
    result = engine.process(collected.rows, 0)
    assert len(result.transactions) == 8 and len(result.auth_events) == 3
    after = [{name: row[name] for name in PARSED_EVENT_COLUMNS} for row in collected.rows]
    assert after == before
    assert np.isfinite(result.features[:, 0]).all()


def test_the_feature_matrix_is_the_rows_features_in_model_order_none_as_nan() -> None:
    rows = [{name: float(i * 100 + j) for j, name in enumerate(FEATURE_NAMES)} for i in range(3)]
    matrix = feature_matrix(rows)
    assert matrix.shape == (3, len(FEATURE_NAMES))
    assert matrix[2, 5] == 205.0 and matrix[0, -1] == len(FEATURE_NAMES) - 1
    rows[1][FEATURE_NAMES[3]] = None  # type: ignore[assignment]
    with_none = feature_matrix(rows)
    assert math.isnan(with_none[1, 3]) and np.isnan(with_none).sum() == 1
    assert np.array_equal(np.nan_to_num(with_none, nan=103.0), matrix)
    assert feature_matrix([]).shape == (0, len(FEATURE_NAMES))
