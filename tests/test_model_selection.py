"""Prequential model selection: fold layout, the choice, the card, a too-short history."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from config.exceptions import ModelError
from ml_model.artifacts import ModelCard
from ml_model.features import FEATURE_NAMES
from ml_model.history import generated_history
from ml_model.selection import (
    DEFAULT_PARAMS,
    GAP_DAYS,
    Candidate,
    Params,
    Score,
    choose,
    fold_layout,
    rows_in,
    select,
)
from ml_model.threshold import parse_policy
from ml_model.train import Split, train
from producer.generator import GeneratorOptions
from tests.model_cards import small_card

DAY = timedelta(days=1)
START, TEST_START = date(2026, 1, 1), date(2026, 1, 22)
# A stump that can hardly rank anything, and a model that can: the second must win.
STUMP = Candidate("stump", Params(max_iter=1, max_leaf_nodes=2, learning_rate=0.01))
TINY = Candidate("tiny", Params(max_iter=20, max_leaf_nodes=7, min_samples_leaf=10))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny fits: OpenMP's second thread costs more than it brings, on a busy machine 10x."""
    with threadpool_limits(1):
        yield


def synthetic_frame(days: int = 30, per_day: int = 200, seed: int = 0) -> pd.DataFrame:
    """`training_frame`'s columns: noise features; fraud (5%) is higher on three of them."""
    rng = np.random.default_rng(seed)
    rows = days * per_day
    times = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        np.sort(rng.uniform(0, days * 86_400, rows)), unit="s"
    )
    fraud = rng.random(rows) < 0.05
    # Few distinct values per feature: binning them keeps a fit in milliseconds.
    noise = rng.integers(0, 8, size=(rows, len(FEATURE_NAMES))).astype(float)
    frame = pd.DataFrame(noise, columns=list(FEATURE_NAMES))
    for name in ("tx_amount", "card_tx_count_1h", "terminal_risk_7d"):  # a stump sees one
        frame[name] += 3.0 * fraud
    return frame.assign(
        transaction_id=[f"tx{i}" for i in range(rows)],
        card=[f"card{i}" for i in rng.integers(0, 400, rows)],
        event_time=times,
        is_fraud=fraud,
        fraud_scenario=np.where(fraud, "made_up", None),
    )


# -- the fold layout ------------------------------------------------------------------------


def test_folds_leave_the_label_delay_and_roll_forward_up_to_the_test_period() -> None:
    folds = fold_layout(START, TEST_START, folds=4, fold_days=2)
    assert GAP_DAYS == 7
    assert len(folds) == 4
    assert folds[0].train[0] == START
    assert folds[-1].validation[1] == TEST_START - DAY
    widths = {(f.train[1] - f.train[0]).days + 1 for f in folds}
    assert widths == {21 - 7 - 4 * 2}  # every fold trains on the days left over
    for fold in folds:
        assert (fold.validation[0] - fold.train[1]).days - 1 == GAP_DAYS
        assert (fold.validation[1] - fold.validation[0]).days + 1 == 2
    for earlier, later in zip(folds, folds[1:], strict=False):
        assert later.train[0] - earlier.train[0] == 2 * DAY
        assert later.validation[0] == earlier.validation[1] + DAY  # validation days tile


def test_no_fold_validates_on_its_training_rows_or_on_the_test_period() -> None:
    frame = synthetic_frame()
    test_start = pd.Timestamp(TEST_START.isoformat(), tz="UTC")
    for fold in fold_layout(START, TEST_START, folds=3, fold_days=3):
        train, validation = rows_in(frame, fold.train), rows_in(frame, fold.validation)
        assert len(train) and len(validation)
        assert set(train["transaction_id"]).isdisjoint(validation["transaction_id"])
        assert validation["event_time"].min() - train["event_time"].max() > GAP_DAYS * DAY
        assert validation["event_time"].max() < test_start


@pytest.mark.parametrize(("folds", "fold_days"), [(4, 2), (2, 5), (8, 1)])
def test_too_short_a_history_is_one_line_naming_the_option(folds: int, fold_days: int) -> None:
    with pytest.raises(ModelError, match=f"--folds {folds}") as error:
        fold_layout(START, START + 13 * DAY, folds=folds, fold_days=fold_days)
    assert "\n" not in str(error.value)
    assert "history too short" in str(error.value)


def test_the_shortest_history_that_fits() -> None:
    # 4 x 2 validation days + 7 gap days + 3 training days.
    assert len(fold_layout(START, START + 18 * DAY, folds=4, fold_days=2)) == 4
    with pytest.raises(ModelError, match="--folds 4"):
        fold_layout(START, START + 17 * DAY, folds=4, fold_days=2)


def test_fewer_than_two_folds_is_refused() -> None:
    with pytest.raises(ModelError, match="--folds must be at least 2"):
        fold_layout(START, TEST_START, folds=1)


# -- the choice ---------------------------------------------------------------------------


def scores(ap: list[float], cp: list[float]) -> Score:
    return Score(average_precision=ap, card_precision=cp)


DEFAULT_AP = [0.90, 0.80, 0.85, 0.95]


def plus(values: list[float], changes: list[float]) -> list[float]:
    return [v + c for v, c in zip(values, changes, strict=True)]


def test_a_challenger_wins_only_when_clearly_better_on_ap_and_not_worse_on_cards() -> None:
    names = ("default", "lucky", "clear", "fewer_cards")
    default, lucky, clear, fewer_cards = (Candidate(n, DEFAULT_PARAMS) for n in names)
    fold_scores = [
        scores(DEFAULT_AP, [0.10] * 4),
        # The best mean AP, but it wins two folds and loses two: within the noise.
        scores(plus(DEFAULT_AP, [0.08, -0.02, 0.08, -0.02]), [0.10] * 4),
        scores(plus(DEFAULT_AP, [0.02, 0.03, 0.02, 0.03]), [0.10] * 4),
        # Better AP on every fold, but fewer fraudulent cards in the daily top 100.
        scores(plus(DEFAULT_AP, [0.05] * 4), [0.08] * 4),
    ]
    winner, against = choose([default, lucky, clear, fewer_cards], fold_scores)
    assert winner is clear
    assert [v.eligible for v in against] == [True, False, True, False]
    assert against[1].ap_gain == pytest.approx(0.03)
    assert against[1].ap_gain_se == pytest.approx(np.std([0.08, -0.02] * 2, ddof=1) / 2)
    assert against[3].cp_change == pytest.approx(-0.02)


def test_without_a_clear_challenger_the_default_stays() -> None:
    default, lucky = Candidate("default", DEFAULT_PARAMS), Candidate("lucky", DEFAULT_PARAMS)
    fold_scores = [
        scores(DEFAULT_AP, [0.10] * 4),
        scores(plus(DEFAULT_AP, [0.03, -0.01, 0.02, -0.01]), [0.11] * 4),
    ]
    assert choose([default, lucky], fold_scores)[0] is default


def test_equal_mean_ap_goes_to_the_better_card_precision() -> None:
    default, a, b = (Candidate(n, DEFAULT_PARAMS) for n in ("default", "a", "b"))
    gain = [0.02, 0.03, 0.02, 0.03]
    fold_scores = [
        scores(DEFAULT_AP, [0.10] * 4),
        scores(plus(DEFAULT_AP, gain), [0.10] * 4),
        scores(plus(DEFAULT_AP, gain), [0.12] * 4),
    ]
    assert choose([default, a, b], fold_scores)[0] is b


def test_the_winner_has_the_best_mean_score_across_folds() -> None:
    frame = synthetic_frame()
    folds = fold_layout(START, TEST_START, folds=2, fold_days=3)
    selection = select(frame, folds, [STUMP, TINY], seed=0)
    assert selection.winner is TINY
    ap = [float(np.mean(s.average_precision)) for s in selection.scores]
    assert ap[1] > ap[0]
    assert selection.against[1].eligible and selection.against[1].ap_gain > 0.1
    assert all(len(s.average_precision) == 2 for s in selection.scores)


def test_a_fold_without_fraud_names_the_fold() -> None:
    frame = synthetic_frame()
    day = frame["event_time"].dt.date
    frame.loc[day >= date(2026, 1, 19), "is_fraud"] = False
    folds = fold_layout(START, TEST_START, folds=2, fold_days=3)
    with pytest.raises(ModelError, match="fold 2's validation days 2026-01-19..2026-01-21"):
        select(frame, folds, [STUMP], seed=0)


# -- training and its card ------------------------------------------------------------------

TINY_SPLIT = Split(warmup_days=2, gap_days=1, validation_days=2, test_days=2)


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    """25 days of generated history (2026-01-01..25): 21 selection days before the test."""
    days, customers = 18, 60
    options = GeneratorOptions(
        seed=7,
        num_transactions=int(days * customers * GeneratorOptions.transactions_per_customer_day),
        fraud_rate=0.05,
        num_customers=customers,
        num_terminals=40,
    )
    return generated_history(options)


def test_training_refits_the_winner_and_the_card_records_the_search(
    history: pd.DataFrame,
) -> None:
    model, card, _, _ = train(
        history, parse_policy("alert_rate=0.02"), 0.5, TINY_SPLIT, search=[STUMP, TINY],
        folds=2, fold_days=2,
    )  # fmt: skip
    selection = card.selection
    assert selection["winner"] == "tiny"
    assert card.model_params == TINY.params.as_dict()
    assert model.max_iter == 20 and model.max_leaf_nodes == 7  # refitted with the winner's
    assert [c["name"] for c in selection["search_space"]] == ["stump", "tiny"]
    assert selection["search_space"][1]["params"]["max_iter"] == 20
    for candidate in selection["candidates"]:
        for metric in ("average_precision", "card_precision_at_100"):
            summary = candidate[metric]
            assert len(summary["folds"]) == 2
            assert summary["mean"] == pytest.approx(np.mean(summary["folds"]))
            assert summary["std"] == pytest.approx(np.std(summary["folds"], ddof=1))
    folds = selection["folds"]
    assert len(folds) == 2
    test_start = date.fromisoformat(card.test_window["start"][:10])
    assert date.fromisoformat(folds[-1]["validation"]["end"]) == test_start - DAY
    for fold in folds:
        train_end = date.fromisoformat(fold["train"]["end"])
        validation_start = date.fromisoformat(fold["validation"]["start"])
        assert (validation_start - train_end).days - 1 == GAP_DAYS
    assert ModelCard.from_json(card.to_json(), "card") == card


def test_without_search_the_default_is_fitted_and_no_folds_are_needed(
    history: pd.DataFrame,
) -> None:
    _, card, _, _ = train(history, parse_policy("alert_rate=0.02"), 0.5, TINY_SPLIT, search=None)
    assert card.selection == {}
    assert card.model_params == DEFAULT_PARAMS.as_dict()


def test_training_on_too_short_a_history_names_folds(history: pd.DataFrame) -> None:
    # 6 folds of 2 days, the 7-day gap and 3 training days need 22 days; there are 21.
    with pytest.raises(ModelError, match="--folds 6") as error:
        train(history, parse_policy("alert_rate=0.02"), 0.5, TINY_SPLIT, search=[STUMP], folds=6)
    assert "\n" not in str(error.value)


# -- cards written before or after ----------------------------------------------------------


def test_a_card_written_before_selection_loads_with_empty_fields() -> None:
    data = dataclasses.asdict(small_card("old"))
    del data["selection"], data["model_params"]
    old = ModelCard.from_json(json.dumps(data), "old card")
    assert old.selection == {} and old.model_params == {}


def test_a_card_with_fields_this_version_does_not_know_still_loads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = {**dataclasses.asdict(small_card("new")), "written_by_a_later_version": 1}
    with caplog.at_level(logging.WARNING, logger="ml_model.artifacts"):
        card = ModelCard.from_json(json.dumps(data), "newer card")
    assert card == small_card("new")
    assert "written_by_a_later_version" in caplog.text
