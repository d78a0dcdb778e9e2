"""Training on outside data: explicit date splits, dropped lines, scenarios under any name."""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from config.cli import run_cli
from config.exceptions import ConfigError, ModelError
from config.settings import load_config
from ml_model.artifacts import CARD_FILE
from ml_model.evaluation import evaluate
from ml_model.history import DropCount, jsonl_history
from ml_model.train import (
    LABEL_DELAY_DAYS,
    MISSING_LABEL,
    DateSplit,
    Split,
    check_dropped,
    generator_options,
    parse_args,
    split_by_time,
    training_frame,
    unlabelled_transactions,
)
from ml_model.train import main as train_main
from producer.contract import encode_event
from producer.generator import GeneratorOptions, TransactionGenerator
from tests.conftest import SMALL_TRAINING

DATES = ["--train-start", "2026-01-01", "--train-end", "2026-01-10"]
TEST_DATES = ["--test-start", "2026-01-18", "--test-end", "2026-01-25"]


def last_error(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return lines[-1]


# -- the date options -----------------------------------------------------------------------


def test_without_dates_the_day_counts_make_the_split() -> None:
    args = parse_args(["--gap-days", "3", "--test-days", "6"])
    assert args.split == Split(warmup_days=7, gap_days=3, validation_days=5, test_days=6)


def test_dates_give_a_date_split_with_validation_just_before_the_test() -> None:
    args = parse_args([*DATES, *TEST_DATES, "--validation-days", "4"])
    assert args.split == DateSplit(
        train=(date(2026, 1, 1), date(2026, 1, 10)),
        validation=(date(2026, 1, 14), date(2026, 1, 17)),
        test=(date(2026, 1, 18), date(2026, 1, 25)),
    )


def test_validation_dates_place_the_validation_period() -> None:
    args = parse_args(
        [*DATES, *TEST_DATES, "--validation-start", "2026-01-11", "--validation-end", "2026-01-13"]
    )
    assert args.split.validation == (date(2026, 1, 11), date(2026, 1, 13))


def test_the_test_may_start_exactly_the_label_delay_after_training() -> None:
    assert LABEL_DELAY_DAYS == 7
    args = parse_args(["--train-start", "2026-01-01", "--train-end", "2026-01-10",
                       "--test-start", "2026-01-18", "--test-end", "2026-01-18"])  # fmt: skip
    assert args.split.test == (date(2026, 1, 18), date(2026, 1, 18))


@pytest.mark.parametrize(
    ("argv", "option", "says"),
    [
        (["--train-start", "2026-02-30"], "--train-start", "not an ISO date"),
        (["--test-end", "yesterday"], "--test-end", "not an ISO date"),
        (DATES, "--test-start", "go together"),
        (["--train-start", "2026-01-01", *TEST_DATES], "--train-end", "go together"),
        (
            ["--train-start", "2026-01-10", "--train-end", "2026-01-01", *TEST_DATES],
            "--train-end",
            "before --train-start",
        ),
        (
            [*DATES, "--test-start", "2026-01-25", "--test-end", "2026-01-18"],
            "--test-end",
            "before --test-start",
        ),
        (
            [*DATES, "--test-start", "2026-01-17", "--test-end", "2026-01-25"],
            "--test-start",
            "label delay (7 days)",
        ),
        (
            [*DATES, "--test-start", "2026-01-05", "--test-end", "2026-01-25"],
            "--test-start",
            "label delay",
        ),
        ([*DATES, *TEST_DATES, "--validation-days", "8"], "--validation-days", "training days"),
        ([*DATES, *TEST_DATES, "--validation-days", "0"], "--validation-days", "> 0"),
        ([*DATES, *TEST_DATES, "--validation-end", "2026-01-12"], "--validation-start", ""),
        (["--validation-start", "2026-01-12", "--validation-end", "2026-01-13"], "--train-start",
         "go together"),
        (
            [*DATES, *TEST_DATES, "--validation-start", "2026-01-09",
             "--validation-end", "2026-01-12"],
            "--validation-start",
            "must lie after --train-end",
        ),
        (
            [*DATES, *TEST_DATES, "--validation-start", "2026-01-15",
             "--validation-end", "2026-01-18"],
            "--validation-start",
            "before --test-start",
        ),
        (
            [*DATES, *TEST_DATES, "--validation-start", "2026-01-15",
             "--validation-end", "2026-01-14"],
            "--validation-end",
            "before --validation-start",
        ),
        (["--max-dropped-share", "1.5"], "--max-dropped-share", "between 0 and 1"),
        (["--max-dropped-share", "some"], "--max-dropped-share", "not a number"),
    ],
)  # fmt: skip
def test_bad_or_inconsistent_dates_are_a_usage_error_naming_the_option(
    argv: list[str], option: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    line = last_error(capsys)
    assert f": error: argument {option}: " in line
    assert says in line


def test_help_documents_the_dates_and_the_dropped_share() -> None:
    from ml_model.train import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "--train-start DATE first UTC day the model is fitted on" in text
    assert "the last --validation-days days before --test-start" in text
    assert "at least the label delay (7 days)" in text
    assert "(default: 0.01)" in text


def frame_of(days: list[str], fraud_every: int = 2) -> pd.DataFrame:
    """A training frame's label columns, one transaction per entry of `days` (ISO times)."""
    times = pd.to_datetime(days, utc=True, format="ISO8601")
    return pd.DataFrame(
        {
            "transaction_id": [f"tx-{i:06d}" for i in range(len(days))],
            "event_time": times,
            "is_fraud": [i % fraud_every == 0 for i in range(len(days))],
        }
    )


def test_date_split_takes_whole_utc_days_with_both_ends_inclusive() -> None:
    frame = frame_of(
        [
            "2026-01-01T00:00:00Z",  # warm-up: before the training days
            "2026-01-02T00:00:00Z",
            "2026-01-03T23:59:59.999Z",
            "2026-01-04T00:00:00Z",  # gap
            "2026-01-11T23:00:00-02:00",  # 2026-01-12T01:00Z: validation
            "2026-01-12T22:00:00Z",
            "2026-01-13T00:00:00Z",  # test
            "2026-01-13T12:00:00Z",
            "2026-01-14T00:00:00Z",  # after the test days
        ],
        fraud_every=1,
    )
    split = DateSplit(
        train=(date(2026, 1, 2), date(2026, 1, 3)),
        validation=(date(2026, 1, 12), date(2026, 1, 12)),
        test=(date(2026, 1, 13), date(2026, 1, 13)),
    )
    parts = split_by_time(frame, split)
    ids = {
        name: part["transaction_id"].str[-1].astype(int).tolist() for name, part in parts.items()
    }
    assert ids == {"train": [1, 2], "validation": [4, 5], "test": [6, 7]}


def test_a_date_period_without_transactions_or_fraud_names_its_options() -> None:
    times = ["2026-01-02T10:00:00Z", "2026-01-12T10:00:00Z", "2026-01-20T10:00:00Z"]
    frame = frame_of(times, fraud_every=1)
    empty = DateSplit(
        train=(date(2026, 1, 2), date(2026, 1, 2)),
        validation=(date(2026, 1, 12), date(2026, 1, 12)),
        test=(date(2026, 2, 1), date(2026, 2, 5)),
    )
    with pytest.raises(ModelError, match=r"test period \(--test-start/--test-end 2026-02-01"):
        split_by_time(frame, empty)
    no_fraud = DateSplit(
        train=(date(2026, 1, 2), date(2026, 1, 2)),
        validation=(date(2026, 1, 12), date(2026, 1, 12)),
        test=(date(2026, 1, 20), date(2026, 1, 20)),
    )
    frame["is_fraud"] = [True, False, True]
    with pytest.raises(ModelError, match="validation period .* has no fraud"):
        split_by_time(frame, no_fraud)


# -- dropped lines ----------------------------------------------------------------------------


def test_dropped_lines_are_a_warning_with_count_and_top_reasons(
    caplog: pytest.LogCaptureFixture,
) -> None:
    drops = DropCount(
        lines=1_000,
        reasons=Counter({"out_of_range amount": 4, "not_json": 3, MISSING_LABEL: 2, "x": 1}),
    )
    with caplog.at_level(logging.WARNING, logger="ml_model.train"):
        check_dropped(drops, 0.01)
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage().startswith("10 of 1,000 history lines dropped (1.00%)")
    assert "out_of_range amount (4), not_json (3), missing label (2)" in record.getMessage()
    caplog.clear()
    check_dropped(DropCount(lines=1_000), 0.0)
    assert not caplog.records


def test_more_dropped_lines_than_the_threshold_fail_naming_the_option() -> None:
    drops = DropCount(lines=1_000, reasons=Counter({"invalid_value currency": 11}))
    with pytest.raises(ConfigError, match="more than --max-dropped-share 0.01"):
        check_dropped(drops, 0.01)
    check_dropped(drops, 0.011)
    with pytest.raises(ConfigError, match="--max-dropped-share 0"):
        check_dropped(DropCount(lines=10, reasons=Counter({"not_json": 1})), 0.0)


def generated_lines(**changes: Any) -> list[dict[str, Any]]:
    options = GeneratorOptions(seed=5, num_transactions=2_000, num_customers=80, fraud_rate=0.05)
    generator = TransactionGenerator(options.with_changes(**changes))
    return [json.loads(record.data) for record in generator.records()]


def test_jsonl_history_counts_lines_and_rejections_by_reason(tmp_path: Path) -> None:
    events = generated_lines()
    lines = [encode_event(event) for event in events[:300]]
    lines += [b"not json", b"{}", encode_event({**events[0], "amount": -1.0}), b""]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    drops = DropCount()
    history = jsonl_history(path, drops)
    assert len(history) == 300
    assert drops.lines == 303
    assert drops.reasons == Counter(
        {"not_json": 1, "missing_field schema_version": 1, "out_of_range amount": 1}
    )


def test_unlabelled_transactions_are_counted_and_get_no_training_row(tmp_path: Path) -> None:
    events = generated_lines()
    transactions = [e for e in events if e["event_type"] == "transaction"]
    stripped = {transactions[i]["transaction_id"] for i in (3, 10, 11)}
    for event in events:
        if event["event_type"] == "transaction" and event["transaction_id"] in stripped:
            del event["label"]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(encode_event(e) for e in events) + b"\n")
    history = jsonl_history(path)
    assert unlabelled_transactions(history) == 3
    frame = training_frame(history)
    assert len(frame) == len({t["transaction_id"] for t in transactions}) - 3
    assert not set(frame["transaction_id"]) & stripped
    assert frame["is_fraud"].dtype == bool


def test_a_run_over_the_dropped_share_exits_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [encode_event(event) for event in generated_lines()[:500]]
    lines += [b"{broken"] * 10  # 10 of 510: 2%
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    argv = ["--history", str(path), "--output", str(tmp_path / "model"), "--no-report"]
    assert run_cli(lambda args: train_main(args, load_config("local")), argv) == 2
    err = capsys.readouterr().err
    assert "WARNING" in err and "10 of 510 history lines dropped (1.96%)" in err
    assert err.strip().splitlines()[-1].startswith("error: 10 of 510 history lines dropped")
    assert "--max-dropped-share 0.01" in err.strip().splitlines()[-1]
    assert not (tmp_path / "model").exists()


# -- scenarios under any name ------------------------------------------------------------------


def test_recall_is_grouped_by_whatever_scenario_names_appear() -> None:
    names = ["skimming", "Friendly fraud / first-party", "bust-out #3", None]
    rows = 40
    frame = pd.DataFrame(
        {
            "score": np.linspace(0, 1, rows),
            "is_fraud": [i % 4 == 0 for i in range(rows)],
            "fraud_scenario": [names[(i // 4) % 4] if i % 4 == 0 else None for i in range(rows)],
            "card": [f"card-{i % 7}" for i in range(rows)],
            "event_time": pd.date_range("2026-01-01", periods=rows, freq="h", tz="UTC"),
        }
    )
    recall = evaluate(frame, 0.5)["per_scenario_recall"]
    assert set(recall) == {"skimming", "Friendly fraud / first-party", "bust-out #3", "unlabelled"}
    assert sum(entry["frauds"] for entry in recall.values()) == 10


RENAMED = {
    "card_testing": "BIN attack",
    "atm_cashout_abroad": "Cash-out (ATM, abroad)",
    "compromised_terminal": "skimmer",
    "account_takeover": "ATO",
    "amount_anomaly": "big ticket",
    "structuring": "smurfing",
}


@pytest.mark.slow
def test_training_on_outside_data_by_dates_with_its_own_scenarios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSONL history with renamed scenarios and a few bad lines (< 1%), split by dates."""
    options = generator_options(parse_args(SMALL_TRAINING)).with_changes(anomaly_rate=0.0)
    lines = []
    for record in TransactionGenerator(options).records():
        event = json.loads(record.data)
        scenario = event["label"]["fraud_scenario"]
        event["label"]["fraud_scenario"] = RENAMED.get(scenario, scenario)
        lines.append(encode_event(event))
    lines[100:100] = [b"not json", encode_event({"schema_version": 1, "event_type": "refund"})]
    path = tmp_path / "outside.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    model = tmp_path / "model"
    # The generated history covers 2025-12-16 .. 2025-12-31 (16 days before 2026-01-01);
    # SMALL_TRAINING passes --no-search: too few days for the model selection's folds.
    argv = [
        *SMALL_TRAINING, "--history", str(path), "--output", str(model), "--no-report",
        "--train-start", "2025-12-19", "--train-end", "2025-12-21",
        "--test-start", "2025-12-29", "--test-end", "2025-12-31",
    ]  # fmt: skip
    assert train_main(argv, load_config("local")) == 0  # its logging goes to stderr
    err = capsys.readouterr().err
    assert "WARNING ml_model.train: 2 of " in err and "history lines dropped" in err
    assert "not_json (1), unknown_event_type event_type (1)" in err
    card = json.loads((model / CARD_FILE).read_text())
    assert "2025-12-19" <= card["training_window"]["start"] < card["training_window"]["end"]
    assert card["training_window"]["end"] < "2025-12-22"
    validation = card["metrics"]["validation_period"]
    assert "2025-12-25" <= validation["start"] and validation["end"] < "2025-12-29"
    assert card["test_window"]["start"] >= "2025-12-29"
    assert set(card["metrics"]["per_scenario_recall"]) <= set(RENAMED.values())
    assert len(card["metrics"]["per_scenario_recall"]) >= 3
