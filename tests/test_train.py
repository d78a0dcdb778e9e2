"""The training script: artifacts, the model card's metrics, time split, baseline, sources."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from config.aws import make_client
from config.exceptions import ModelError
from config.settings import Settings
from ml_model.artifacts import CARD_FILE, MODEL_FILE, read_model, write_artifacts
from ml_model.features import FEATURE_NAMES
from ml_model.history import jsonl_history
from ml_model.train import Split, split_by_time, training_frame
from producer.generator import GeneratorOptions, TransactionGenerator
from scripts.setup_aws import ensure_bucket


def card_of(folder: Path) -> dict:
    return json.loads((folder / CARD_FILE).read_text())


def test_writes_model_and_card_with_the_stated_metrics(trained_model: Path) -> None:
    assert (trained_model / MODEL_FILE).stat().st_size > 0
    card = card_of(trained_model)
    assert card["feature_names"] == list(FEATURE_NAMES)
    assert card["threshold_policy"] == "alert_rate=0.01"
    assert 0 < card["review_threshold"] < card["threshold"] <= 1
    assert card["data_hash"].startswith("sha256:")
    stated = ("roc_auc", "average_precision", "precision_at_threshold", "recall_at_threshold")
    for metrics in (card["metrics"], card["baseline_metrics"]):
        for key in (*stated, "card_precision_at_k", "per_scenario_recall"):
            assert key in metrics
    assert card["metrics"]["card_precision_at_k_per_day"]
    assert set(card["metrics"]["per_scenario_recall"]) >= {"card_testing", "account_takeover"}
    # Time split: training ends before the test period starts, with the gap in between.
    train_end = datetime.fromisoformat(card["training_window"]["end"])
    test_start = datetime.fromisoformat(card["test_window"]["start"])
    assert (test_start - train_end).days >= 1


def test_model_beats_the_amount_only_baseline_by_a_wide_margin(trained_model: Path) -> None:
    card = card_of(trained_model)
    model_ap = card["metrics"]["average_precision"]
    baseline_ap = card["baseline_metrics"]["average_precision"]
    assert model_ap > 0.6
    assert model_ap > 2 * baseline_ap
    assert card["baseline_metrics"]["rule"].startswith("amount >= ")


def small_history() -> list[bytes]:
    options = GeneratorOptions(seed=3, num_transactions=3_000, num_customers=100, fraud_rate=0.05)
    return [record.data for record in TransactionGenerator(options).records()]


def test_jsonl_history_skips_invalid_lines(tmp_path: Path) -> None:
    lines = small_history()
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([*lines[:500], b'{"schema_version": 1}', b"not json"]) + b"\n")
    history = jsonl_history(path)
    assert len(history) == 500
    assert "card_number" not in history.columns
    assert history["card_token"].str.startswith("pan_").all()
    frame = training_frame(history)
    assert list(frame.columns[1 : len(FEATURE_NAMES) + 1]) == list(FEATURE_NAMES)


def test_too_short_a_history_names_the_option(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(small_history()) + b"\n")
    frame = training_frame(jsonl_history(path))
    with pytest.raises(ModelError, match="--days"):
        split_by_time(frame, Split())


@pytest.mark.integration
def test_artifacts_round_trip_through_s3(trained_model: Path, settings: Settings) -> None:
    ensure_bucket(make_client("s3", settings.aws), settings.s3.bucket, settings.aws.region)
    model, card = read_model(str(trained_model))
    uri = f"s3://{settings.s3.bucket}/models/current"
    write_artifacts(uri, model, card, settings.aws)
    loaded, loaded_card = read_model(uri, settings.aws)
    assert loaded_card == card
    assert type(loaded) is type(model)
