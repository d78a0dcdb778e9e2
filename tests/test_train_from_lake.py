"""Retraining from what the pipeline collected: the lake the job wrote, read without Spark, on
the profile's storage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from config.aws import make_client
from config.lake import delta_uri, storage_options
from config.settings import Settings
from ml_model.history import delta_history
from ml_model.train import main as train_main
from processor.sinks import table_path
from scripts.setup_aws import ensure_bucket
from tests.test_processor_job import produce, run_available_now

pytestmark = pytest.mark.integration

# No --gap-days: with chargeback labels (a lake's default) the gap is the label delay, 7 days.
SPLIT = ["--warmup-days", "2", "--validation-days", "3", "--test-days", "3", "--no-search"]


@pytest.mark.slow
def test_train_from_the_lake_the_job_wrote(spark: Any, settings: Settings, tmp_path: Path) -> None:
    # Over three weeks of event time with fraud, so chargebacks (about 7 days later) reach the
    # lake, and after the last 7 days (labels still on their way) a split is left: warm-up 2,
    # training, gap 7, validation 3, test 3.
    produce(settings, 6_000, seed=41, num_customers=60, fraud_rate=0.05, anomaly_rate=0.0)
    run_available_now(spark, settings)  # no model yet: the lake is the history
    lake = settings.processor.lake_path
    counts = {
        table: spark.read.format("delta").load(table_path(lake, table)).count()
        for table in ("transactions", "auth_events", "labels")
    }
    assert counts["labels"] > 0, counts

    history = delta_history(lake, settings.aws)
    assert len(history) == sum(counts.values())
    newest = history["event_time"].max()
    days = (newest - history["event_time"].min()).days
    assert days >= 21, days

    output = tmp_path / "model"
    code = train_main(["--history", lake, "--output", str(output), *SPLIT], settings)
    assert code == 0
    card = json.loads((output / "model_card.json").read_text())
    assert card["metrics"]["transactions"] > 0
    assert card["training_window"]["start"] >= str(history["event_time"].min().date())

    # Labels are the chargebacks that had arrived by the lake's newest event; the transactions
    # of the last 7 days without one wait (the generator's own label field is not used).
    labels = card["labels"]
    assert labels["source"] == "chargebacks" and labels["as_of"] == newest.isoformat()
    assert labels["label_delay_days"] == 7 and labels["gap_days"] == 7
    chargebacks = history[history["event_type"] == "chargeback"]
    confirmed = chargebacks.sort_values("event_time").drop_duplicates("transaction_id", keep="last")
    assert labels["fraud"] == int(confirmed["confirmed_fraud"].sum()) > 0
    tx = history[history["event_type"] == "transaction"]
    young = tx[tx["event_time"] > newest - pd.Timedelta(days=7)]
    assert 0 < labels["pending"] <= len(young)
    assert labels["fraud"] + labels["genuine"] + labels["pending"] == len(tx)
    # The split leaves the label delay between the last training day and validation.
    last_train = pd.Timestamp(card["training_window"]["end"]).floor("D")
    validation = pd.Timestamp(card["metrics"]["validation_period"]["start"]).floor("D")
    assert (validation - last_train).days == 7 + 1
    assert card["test_window"]["end"] <= (newest - pd.Timedelta(days=7)).isoformat()


def test_the_lake_is_read_from_the_profiles_s3(settings: Settings) -> None:
    # The profile's endpoint (the session's moto), not the default one: --profile is honoured.
    ensure_bucket(make_client("s3", settings.aws), settings.s3.bucket, settings.aws.region)
    lake = f"s3a://{settings.s3.bucket}/lake"
    rows = pa.table(
        {
            "event_type": ["transaction", "transaction"],
            "event_time": pa.array([1_767_225_600_000_000, 1_767_229_200_000_000],
                                   pa.timestamp("us", "UTC")),
            "transaction_id": ["tx-000001", "tx-000002"],
            "card_token": ["a", "b"],
            "amount": [10.0, 20.0],
            "label_is_fraud": [False, True],
        }
    )  # fmt: skip
    write_deltalake(
        delta_uri(lake, "transactions"), rows, storage_options=storage_options(settings.aws)
    )
    history = delta_history(lake, settings.aws)
    assert list(history["transaction_id"]) == ["tx-000001", "tx-000002"]
    assert history["label_is_fraud"].tolist() == [False, True]
    assert history["auth_id"].isna().all()  # columns the table lacks are there, empty
