"""The job's steps on tiny in-memory frames, compared with chispa: the logic is proven here in
seconds, and the streaming tests only prove the wiring.

record frame --ContractParser--> parsed frame --engine--> table rows --score_rows--> scored rows
--lake_tables--> the Arrow tables each Delta table is written from.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chispa import assert_df_equality
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from config.settings import load_config
from ml_model.artifacts import write_artifacts
from ml_model.features import FEATURE_NAMES
from processor.card_tokens import card_token
from processor.checkpoint_files import CheckpointFiles
from processor.engine import EngineSettings, FeatureEngine, StateStore
from processor.kinesis_source.source import SCHEMA as RECORD_SCHEMA
from processor.lake_tables import (
    EVENT_TABLE,
    SCORED_TRANSACTION_TABLE,
    TRANSACTION_TABLE,
    dead_letter_table,
    event_table,
)
from processor.parse import PARSED_SCHEMA, ContractParser
from processor.scoring import frame_scorer
from processor.sinks import score_rows
from tests.model_cards import small_card

pytestmark = pytest.mark.integration

KEY_ENV = "CARD_TOKEN_KEY"  # set by tests/conftest.py before Spark starts
PAN = "4111111111111111"
ARRIVAL = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MIN = 60_000
ENGINE = EngineSettings(
    watermark_delay_ms=10 * MIN, idle_shard_timeout_ms=MIN, dedupe_retention_ms=35 * 1440 * MIN
)


def transaction(tx_id: str, minute: int, amount: float = 25.0) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_type": "transaction",
        "event_time": f"2026-03-01T10:{minute:02d}:00Z",
        "transaction_id": tx_id,
        "card_number": PAN,
        "customer_id": "cust-000001",
        "amount": amount,
        "currency": "EUR",
        "merchant_id": "merch-000001",
        "terminal_id": "term-000001",
        "mcc": "5411",
        "merchant_country": "FR",
        "latitude": 48.85,
        "longitude": 2.35,
        "channel": "pos",
        "device_id": None,
        "label": {"is_fraud": False, "fraud_scenario": None},
    }


def auth(auth_id: str, minute: int) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_type": "auth",
        "event_time": f"2026-03-01T10:{minute:02d}:30Z",
        "auth_id": auth_id,
        "card_number": PAN,
        "customer_id": "cust-000001",
        "success": False,
        "method": "otp",
        "ip_country": "FR",
        "device_id": "dev-000001-0",
    }


def records(spark: Any, payloads: list[bytes]) -> Any:
    rows = [(data, "s", "shard-0", PAN, f"{n:030d}", 0, ARRIVAL) for n, data in enumerate(payloads)]
    return spark.createDataFrame(rows, RECORD_SCHEMA)


def encoded(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


PAYLOADS = [
    encoded(transaction("txn-001", 1)),
    encoded(transaction("txn-002", 5, amount=900.0)),
    encoded(auth("auth-001", 3)),
    b"{not json " + PAN.encode(),
    encoded({**transaction("txn-003", 7), "amount": "x"}),
    encoded({**transaction("txn-004", 8), "event_type": "refund"}),
    encoded(transaction("txn-001", 1)),  # a re-sent copy
]


@pytest.fixture(scope="module")
def parsed(spark: Any) -> Any:
    parser = ContractParser(KEY_ENV)  # what the source runs on every batch it reads
    return records(spark, PAYLOADS).mapInArrow(lambda batches: map(parser, batches), PARSED_SCHEMA)


def test_parse_validates_tokenises_and_dead_letters(spark: Any, parsed: Any) -> None:
    token = card_token(PAN, os.environ[KEY_ENV].encode())
    expected = spark.createDataFrame(
        [
            ("000000000000000000000000000000", "transaction", "txn-001", token, "1111", None, None),
            ("000000000000000000000000000001", "transaction", "txn-002", token, "1111", None, None),
            ("000000000000000000000000000002", "auth", "auth-001", token, "1111", None, None),
            ("000000000000000000000000000003", None, None, None, None, "not_json", None),
            ("000000000000000000000000000004", None, None, None, None, "wrong_type", "amount"),
            (
                "000000000000000000000000000005",
                None,
                None,
                None,
                None,
                "unknown_event_type",
                "event_type",
            ),
            ("000000000000000000000000000006", "transaction", "txn-001", token, "1111", None, None),
        ],
        "sequenceNumber STRING, event_type STRING, event_id STRING, card_token STRING, "
        "card_last4 STRING, dead_letter_reason STRING, dead_letter_field STRING",
    )
    actual = parsed.select(*expected.columns)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
    # Masked payloads only: the PAN is at rest nowhere, not even in a dead letter.
    kept = [r.raw_payload_masked for r in parsed.collect() if r.raw_payload_masked is not None]
    assert len(kept) == 3 and not any(PAN.encode() in payload for payload in kept)


def test_engine_routes_each_row_to_its_table(spark: Any, parsed: Any, tmp_path: Path) -> None:
    engine = FeatureEngine(StateStore(CheckpointFiles(str(tmp_path))), ENGINE)
    result = engine.process(parsed.toArrow().to_pylist(), 0)
    assert result.duplicates == 1 and result.late == 0

    arrow = event_table(result.transactions, TRANSACTION_TABLE, features=result.features)
    first = next(r for r in arrow.to_pylist() if r["transaction_id"] == "txn-001")
    assert first["card_seconds_since_prev"] is None  # NaN in the features, null in the lake
    assert first["event_date"] == first["event_time"].date()
    transactions = spark.createDataFrame(arrow)
    expected = spark.createDataFrame(
        [("txn-001", 0.0, 25.0), ("txn-002", 1.0, 900.0)],
        "transaction_id STRING, card_tx_count_1h DOUBLE, amount DOUBLE",
    )
    assert_df_equality(
        transactions.select(*expected.columns),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    auth_events = spark.createDataFrame(event_table(result.auth_events, EVENT_TABLE))
    assert [r.auth_id for r in auth_events.collect()] == ["auth-001"]
    assert result.labels == []
    dead = spark.createDataFrame(dead_letter_table(result.dead_letters))
    expected_dead = spark.createDataFrame(
        [("not_json", None), ("wrong_type", "amount"), ("unknown_event_type", "event_type")],
        "reason STRING, field STRING",
    )
    assert_df_equality(
        dead.select("reason", "field"), expected_dead, ignore_row_order=True, ignore_nullable=True
    )


def test_scoring_adds_score_decision_and_reasons(spark: Any, parsed: Any, tmp_path: Path) -> None:
    # A model that only looks at the amount: the 900 transaction alerts, the 25 one does not.
    amount = FEATURE_NAMES.index("tx_amount")
    train = np.zeros((40, len(FEATURE_NAMES)))
    train[:, amount] = np.linspace(0, 1_000, 40)
    model = make_pipeline(
        SimpleImputer(strategy="constant", fill_value=0.0, keep_empty_features=True),
        LogisticRegression(max_iter=1_000),
    ).fit(train, train[:, amount] > 500)
    card = small_card("amount-only", review_threshold=0.4, library_versions={})
    write_artifacts(str(tmp_path / "model"), model, card)
    settings = load_config("local").with_overrides(model={"path": str(tmp_path / "model")})
    engine = FeatureEngine(StateStore(CheckpointFiles(str(tmp_path / "state"))), ENGINE)
    result = engine.process(parsed.toArrow().to_pylist(), 0)
    rows, features = result.transactions, result.features
    score_rows(frame_scorer(settings), rows, features)

    scored = spark.createDataFrame(event_table(rows, SCORED_TRANSACTION_TABLE, features=features))
    expected_scores = model.predict_proba(features)[:, 1]
    assert all(not math.isnan(s) for s in expected_scores)
    expected = spark.createDataFrame(
        [
            (r["transaction_id"], "amount-only", "ALERT" if s >= 0.5 else "OK")
            for r, s in zip(rows, expected_scores, strict=True)
        ],
        "transaction_id STRING, model_version STRING, decision STRING",
    )
    assert_df_equality(
        scored.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True
    )
    assert {r.transaction_id: r.decision for r in scored.collect()} == {
        "txn-001": "OK",
        "txn-002": "ALERT",
    }
