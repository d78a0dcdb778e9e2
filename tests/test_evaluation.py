"""Unit tests for the threshold policies and the test-period metrics, on hand-computed examples."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    average_precision_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from config.exceptions import ModelError
from ml_model.evaluation import evaluate, format_comparison, format_report
from ml_model.threshold import ThresholdPolicy, choose_threshold, parse_policy

DAY1 = "2026-01-05"
DAY2 = "2026-01-06"


def scored(rows: list[tuple[str, str, float, bool, str | None]]) -> pd.DataFrame:
    """A frame in the evaluation contract from (day, card, score, is_fraud, scenario) rows."""
    days, cards, scores, frauds, scenarios = zip(*rows, strict=True)
    times = pd.to_datetime([f"{day}T12:00:00Z" for day in days], utc=True)
    return pd.DataFrame(
        {
            "score": np.array(scores, dtype=float),
            "is_fraud": np.array(frauds, dtype=bool),
            "fraud_scenario": list(scenarios),
            "card": list(cards),
            "event_time": times,
        }
    )


def ten_rows() -> pd.DataFrame:
    """Two days, five cards; card A on day 1 and card E on day 2 have two transactions each.

    Day 1 card scores (max per card): A 0.95 fraud, B 0.80, C 0.60 fraud, D 0.30.
    Day 2 card scores: B 0.90 fraud, E 0.85 fraud (its fraud row scores only 0.40), C 0.70,
    A 0.20.
    """
    return scored(
        [
            (DAY1, "A", 0.95, True, "card_testing"),
            (DAY1, "A", 0.10, False, None),
            (DAY1, "B", 0.80, False, None),
            (DAY1, "C", 0.60, True, "account_takeover"),
            (DAY1, "D", 0.30, False, None),
            (DAY2, "A", 0.20, False, None),
            (DAY2, "B", 0.90, True, "card_testing"),
            (DAY2, "C", 0.70, False, None),
            (DAY2, "E", 0.40, True, "account_takeover"),
            (DAY2, "E", 0.85, False, None),
        ]
    )


# --- evaluate: threshold metrics -----------------------------------------------------------


def test_threshold_metrics_by_hand() -> None:
    # score >= 0.5 alerts on 0.95 0.80 0.60 0.90 0.70 0.85; frauds 0.95 0.60 0.90 0.40.
    metrics = evaluate(ten_rows(), 0.5, top_k=2)
    assert metrics["transactions"] == 10
    assert metrics["frauds"] == 4
    assert metrics["alerts"] == 6
    assert metrics["alert_rate"] == pytest.approx(0.6)
    assert metrics["precision_at_threshold"] == pytest.approx(3 / 6)
    assert metrics["recall_at_threshold"] == pytest.approx(3 / 4)


def test_threshold_is_inclusive() -> None:
    metrics = evaluate(ten_rows(), 0.6, top_k=2)
    assert metrics["alerts"] == 6  # 0.60 itself alerts
    metrics = evaluate(ten_rows(), np.nextafter(0.6, 1.0), top_k=2)
    assert metrics["alerts"] == 5
    assert metrics["recall_at_threshold"] == pytest.approx(2 / 4)


def test_ranking_metrics_by_hand_and_against_sklearn() -> None:
    frame = ten_rows()
    metrics = evaluate(frame, 0.5)
    # 18 of the 24 (fraud, genuine) pairs are ordered correctly.
    assert metrics["roc_auc"] == pytest.approx(18 / 24)
    # Precision at each fraud in rank order: 1/1, 2/2, 3/6, 4/7.
    assert metrics["average_precision"] == pytest.approx((1 + 1 + 3 / 6 + 4 / 7) / 4)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(frame["is_fraud"], frame["score"]))
    assert metrics["average_precision"] == pytest.approx(
        average_precision_score(frame["is_fraud"], frame["score"])
    )


def test_threshold_metrics_agree_with_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(7)
    n = 500
    labels = rng.random(n) < 0.1
    scores = np.round(rng.random(n) * 0.6 + labels * 0.3, 2)  # ties on purpose
    frame = pd.DataFrame(
        {
            "score": scores,
            "is_fraud": labels,
            "fraud_scenario": ["s" if fraud else None for fraud in labels],
            "card": [f"c{i % 50}" for i in range(n)],
            "event_time": pd.Timestamp("2026-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 3 * 86_400, n), unit="s"),
        }
    )
    metrics = evaluate(frame, 0.55)
    predicted = scores >= 0.55
    assert metrics["precision_at_threshold"] == pytest.approx(precision_score(labels, predicted))
    assert metrics["recall_at_threshold"] == pytest.approx(recall_score(labels, predicted))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert metrics["average_precision"] == pytest.approx(average_precision_score(labels, scores))


def test_raw_scores_such_as_amounts_work() -> None:
    frame = ten_rows().assign(score=lambda f: f["score"] * 1000)
    metrics = evaluate(frame, 500.0)
    assert metrics["alerts"] == 6
    assert metrics["roc_auc"] == pytest.approx(18 / 24)


# --- evaluate: card precision@k ------------------------------------------------------------


def test_card_precision_at_k_by_hand() -> None:
    metrics = evaluate(ten_rows(), 0.5, top_k=2)
    # Day 1 top two cards: A (fraud), B -> 1/2. Day 2: B (fraud), E (fraud, by its 0.85 row)
    # -> 2/2. Ranking E by its fraud row (0.40) would put C in the top two instead.
    assert metrics["card_precision_at_k_per_day"] == {DAY1: 0.5, DAY2: 1.0}
    assert metrics["card_precision_at_k"] == pytest.approx(0.75)
    # Two fraud cards each day, k = 2: a perfect ranking scores 1 on both days.
    assert metrics["card_precision_at_k_max"] == pytest.approx(1.0)
    assert metrics["top_k"] == 2


def test_card_precision_uses_all_cards_on_a_day_with_fewer_than_k() -> None:
    metrics = evaluate(ten_rows(), 0.5, top_k=5)
    # Four cards a day, two of them with fraud: 2/4 on both days, which is also the best.
    assert metrics["card_precision_at_k_per_day"] == {DAY1: 0.5, DAY2: 0.5}
    assert metrics["card_precision_at_k"] == pytest.approx(0.5)
    assert metrics["card_precision_at_k_max"] == pytest.approx(0.5)


def test_card_precision_ceiling_follows_the_number_of_fraud_cards() -> None:
    frame = scored(
        [
            (DAY1, "A", 0.9, True, "s"),
            (DAY1, "B", 0.8, False, None),
            (DAY1, "C", 0.7, False, None),
            (DAY2, "A", 0.9, False, None),
            (DAY2, "B", 0.8, False, None),
            (DAY2, "C", 0.7, False, None),
        ]
    )
    metrics = evaluate(frame, 0.5, top_k=2)
    # Day 1: one fraud card in the top two -> 1/2, also the ceiling; day 2 has no fraud -> 0.
    assert metrics["card_precision_at_k_per_day"] == {DAY1: 0.5, DAY2: 0.0}
    assert metrics["card_precision_at_k"] == pytest.approx(0.25)
    assert metrics["card_precision_at_k_max"] == pytest.approx(0.25)


def test_card_precision_shares_a_tie_at_the_cut_by_expectation() -> None:
    rows: list[tuple[str, str, float, bool, str | None]] = [
        (DAY1, "X", 0.9, True, "s"),
        (DAY1, "Y", 0.5, True, "s"),
        (DAY1, "Z", 0.5, False, None),
    ]
    # X is in; one place left for Y or Z, one of which is fraud: (1 + 1/2) / 2.
    assert evaluate(scored(rows), 0.5, top_k=2)["card_precision_at_k"] == pytest.approx(0.75)
    swap = {"Y": "Z", "Z": "Y"}
    renamed = [(day, swap.get(card, card), sc, fraud, name) for day, card, sc, fraud, name in rows]
    assert evaluate(scored(renamed), 0.5, top_k=2)["card_precision_at_k"] == pytest.approx(0.75)
    constant = scored([(DAY1, card, 0.5, card == "A", None) for card in "ABC"])
    assert evaluate(constant, 0.5, top_k=2)["card_precision_at_k"] == pytest.approx(1 / 3)


def test_card_precision_matches_a_direct_ranking_without_ties() -> None:
    rng = np.random.default_rng(11)
    n = 400
    frame = pd.DataFrame(
        {
            "score": rng.random(n),
            "is_fraud": rng.random(n) < 0.05,
            "fraud_scenario": None,
            "card": [f"c{i}" for i in rng.integers(0, 60, n)],
            "event_time": pd.Timestamp("2026-02-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 4 * 86_400, n), unit="s"),
        }
    )
    expected = []
    for _, day in frame.groupby(frame["event_time"].dt.date):
        cards = day.groupby("card").agg(score=("score", "max"), fraud=("is_fraud", "max"))
        top = cards.sort_values("score", ascending=False).head(10)
        expected.append(top["fraud"].sum() / len(top))
    assert evaluate(frame, 0.5, top_k=10)["card_precision_at_k"] == pytest.approx(np.mean(expected))


def test_days_are_utc_dates() -> None:
    frame = ten_rows().iloc[:2].copy()
    # 23:30 in New York on 5 January is 04:30 UTC on 6 January.
    frame["event_time"] = pd.to_datetime(["2026-01-05T23:30:00-05:00"] * 2).tz_convert(
        "America/New_York"
    )
    assert list(evaluate(frame, 0.5)["card_precision_at_k_per_day"]) == [DAY2]
    frame["event_time"] = pd.to_datetime(["2026-01-05T23:30:00"] * 2)  # naive: taken as UTC
    assert list(evaluate(frame, 0.5)["card_precision_at_k_per_day"]) == [DAY1]


# --- evaluate: per-scenario recall ---------------------------------------------------------


def test_per_scenario_recall_by_hand() -> None:
    metrics = evaluate(ten_rows(), 0.5)
    assert metrics["per_scenario_recall"] == {
        "account_takeover": {"recall": 0.5, "frauds": 2, "detected": 1},
        "card_testing": {"recall": 1.0, "frauds": 2, "detected": 2},
    }


def test_fraud_without_scenario_is_unlabelled_and_genuine_scenarios_are_ignored() -> None:
    frame = scored(
        [
            (DAY1, "A", 0.9, True, None),
            (DAY1, "B", 0.2, True, "skimming"),
            (DAY1, "C", 0.8, False, "skimming"),  # a genuine row's scenario does not count
        ]
    )
    assert evaluate(frame, 0.5)["per_scenario_recall"] == {
        "skimming": {"recall": 0.0, "frauds": 1, "detected": 0},
        "unlabelled": {"recall": 1.0, "frauds": 1, "detected": 1},
    }


# --- evaluate: degenerate input ------------------------------------------------------------


def test_no_frauds_gives_none_not_nan() -> None:
    frame = ten_rows().assign(is_fraud=False, fraud_scenario=None)
    metrics = evaluate(frame, 0.5, top_k=2)
    assert metrics["roc_auc"] is None
    assert metrics["average_precision"] is None
    assert metrics["recall_at_threshold"] is None
    assert metrics["precision_at_threshold"] == 0.0
    assert metrics["per_scenario_recall"] == {}
    assert metrics["card_precision_at_k"] == 0.0
    assert metrics["card_precision_at_k_max"] == 0.0
    json.dumps(metrics, allow_nan=False)


def test_only_frauds_gives_none_for_ranking_metrics() -> None:
    frame = ten_rows().assign(is_fraud=True)
    metrics = evaluate(frame, 0.5)
    assert metrics["roc_auc"] is None
    assert metrics["average_precision"] is None
    assert metrics["precision_at_threshold"] == 1.0
    assert metrics["recall_at_threshold"] == pytest.approx(0.6)


def test_nothing_alerting_gives_no_precision() -> None:
    metrics = evaluate(ten_rows(), 2.0)
    assert metrics["alerts"] == 0
    assert metrics["precision_at_threshold"] is None
    assert metrics["recall_at_threshold"] == 0.0


def test_metrics_are_plain_json() -> None:
    metrics = evaluate(ten_rows(), 0.5, top_k=2)
    assert json.loads(json.dumps(metrics, allow_nan=False)) == metrics
    for key in ("roc_auc", "average_precision", "alert_rate", "card_precision_at_k"):
        assert type(metrics[key]) is float
    for key in ("alerts", "transactions", "frauds"):
        assert type(metrics[key]) is int


def test_empty_frame_names_the_period() -> None:
    with pytest.raises(ModelError, match="test period"):
        evaluate(ten_rows().iloc[0:0], 0.5)
    with pytest.raises(ModelError, match="2026-01-22..2026-01-28"):
        evaluate(ten_rows().iloc[0:0], 0.5, period="2026-01-22..2026-01-28")


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        (lambda f: f.drop(columns=["card"]), {}, "card"),
        (lambda f: f.assign(score=np.nan), {}, "score"),
        (lambda f: f.assign(is_fraud="yes"), {}, "is_fraud"),
        (lambda f: f.assign(event_time="2026-01-05"), {}, "event_time"),
        (lambda f: f, {"top_k": 0}, "top_k"),
        (lambda f: f, {"threshold": math.nan}, "threshold"),
    ],
)
def test_bad_input_names_the_column_or_option(
    change: Callable[[pd.DataFrame], pd.DataFrame], kwargs: dict[str, Any], message: str
) -> None:
    arguments = {"threshold": 0.5, **kwargs}
    threshold = arguments.pop("threshold")
    with pytest.raises(ModelError, match=message):
        evaluate(change(ten_rows()), threshold, **arguments)


# --- formatting ----------------------------------------------------------------------------


def test_format_report_and_comparison() -> None:
    model = evaluate(ten_rows(), 0.5, top_k=2)
    baseline = evaluate(ten_rows().assign(score=lambda f: 1 - f["score"]), 0.5, top_k=2)
    report = format_report("model", model)
    assert report.splitlines()[0].startswith("model: AUC 0.750  AP 0.768  P@thr 0.50  R@thr 0.75")
    assert "CP@2 0.750/1.000" in report
    assert "6 alerts in 10 transactions (60.00%)" in report
    assert "card_testing" in report and "account_takeover" in report
    comparison = format_comparison(model, baseline)
    ratio = model["average_precision"] / baseline["average_precision"]
    assert f"AP ratio (model / baseline): {ratio:.1f}x" in comparison
    assert "recall card_testing" in comparison
    degenerate = evaluate(ten_rows().assign(is_fraud=False, fraud_scenario=None), 0.5)
    assert "AUC n/a" in format_report("baseline", degenerate)
    assert "AP ratio (model / baseline): n/a" in format_comparison(model, degenerate)


# --- threshold policies --------------------------------------------------------------------

SCORES = np.array([0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
LABELS = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
# threshold:  0.9   0.8   0.7   0.6   0.5   0.4   ...  0.1
# alerts:     1     3     4     5     6     7          10
# frauds:     1     2     3     3     3     4          4
# precision:  1     2/3   3/4   3/5   1/2   4/7        2/5


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (0.1, 0.9),  # one alert
        (0.2, 0.9),  # two allowed, but 0.8 is tied: taking it would make three
        (0.3, 0.8),
        (0.35, 0.8),
        (0.5, 0.6),
        (1.0, 0.1),
    ],
)
def test_alert_rate_by_hand(budget: float, expected: float) -> None:
    policy = ThresholdPolicy("alert_rate", budget)
    assert choose_threshold(SCORES, LABELS, policy) == expected


def test_alert_rate_never_exceeds_the_budget_and_is_the_lowest_that_fits() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        scores = np.round(rng.random(n), 1)  # many ties
        budget = float(rng.choice([0.01, 0.05, 0.1, 0.29, 0.5, 0.9, 1.0]))
        threshold = choose_threshold(scores, np.zeros(n), ThresholdPolicy("alert_rate", budget))
        assert (scores >= threshold).sum() <= budget * n + 1e-9
        lower = scores[scores < threshold]
        if len(lower):  # the next score down would break the budget
            assert (scores >= lower.max()).sum() > budget * n


def test_alert_rate_with_every_score_equal_alerts_on_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scores = np.full(8, 0.3)
    with caplog.at_level(logging.WARNING, logger="ml_model.threshold"):
        threshold = choose_threshold(scores, np.zeros(8), ThresholdPolicy("alert_rate", 0.5))
    assert threshold > 0.3
    assert threshold == np.nextafter(0.3, 1.0)
    assert (scores >= threshold).sum() == 0
    assert "nothing alerts" in caplog.text
    assert choose_threshold(scores, np.zeros(8), ThresholdPolicy("alert_rate", 1.0)) == 0.3


def test_alert_rate_on_raw_amounts() -> None:
    amounts = np.array([12.0, 3000.0, 45.5, 800.0, 800.0, 7.25])
    policy = ThresholdPolicy("alert_rate", 0.5)
    assert choose_threshold(amounts, np.zeros(6), policy) == 800.0


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (1.0, 0.9),
        (0.8, 0.9),  # 0.8 gives 2/3, 0.7 gives 3/4
        (0.75, 0.7),  # exactly 3/4
        # 0.6 also reaches 3/5 with the same three frauds; the higher 0.7 wins (fewer alerts).
        (0.6, 0.7),
        (0.55, 0.4),  # 4/7 catches every fraud
        (0.4, 0.4),  # 0.1 also gives 4/10 but catches no more
    ],
)
def test_precision_policy_picks_the_highest_recall_meeting_the_target(
    target: float, expected: float
) -> None:
    policy = ThresholdPolicy("precision", target)
    threshold = choose_threshold(SCORES, LABELS, policy)
    assert threshold == expected
    alerted = SCORES >= threshold
    assert LABELS[alerted].mean() >= target


def test_precision_policy_falls_back_to_the_best_precision(
    caplog: pytest.LogCaptureFixture,
) -> None:
    labels = np.array([0, 1, 0, 1, 0, 0, 1, 0, 0, 0])
    # Precision: 0.9 -> 0, 0.8 -> 1/3, 0.7 -> 2/4 (best), 0.6 -> 2/5, 0.4 -> 3/7, 0.1 -> 3/10.
    with caplog.at_level(logging.WARNING, logger="ml_model.threshold"):
        threshold = choose_threshold(SCORES, labels, ThresholdPolicy("precision", 0.9))
    assert threshold == 0.7
    assert "no threshold reaches target precision 0.90" in caplog.text


def test_precision_policy_needs_a_fraud() -> None:
    with pytest.raises(ModelError, match="labels"):
        choose_threshold(SCORES, np.zeros(10), ThresholdPolicy("precision", 0.5))


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        (np.array([]), np.array([]), "scores"),
        (np.array([0.1, np.nan]), np.array([0, 1]), "scores"),
        (np.array([0.1, 0.2]), np.array([0, 1, 1]), "labels"),
        (np.array([0.1, 0.2]), np.array([0, 2]), "labels"),
    ],
)
def test_choose_threshold_rejects_bad_arrays(
    scores: np.ndarray, labels: np.ndarray, message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        choose_threshold(scores, labels, ThresholdPolicy("alert_rate", 0.5))


# --- policy parsing and validation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("alert_rate=0.005", "alert_rate", 0.005),
        ("precision=0.8", "precision", 0.8),
        (" precision = 1 ", "precision", 1.0),
        ("alert_rate=1e-3", "alert_rate", 0.001),
    ],
)
def test_parse_policy_accepts(text: str, kind: str, value: float) -> None:
    policy = parse_policy(text)
    assert policy == ThresholdPolicy(kind, value)  # type: ignore[arg-type]
    assert parse_policy(policy.as_option()) == policy


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alert_rate",
        "alert_rate=",
        "alert_rate=abc",
        "recall=0.5",
        "precision=0",
        "precision=1.2",
        "alert_rate=-0.1",
        "alert_rate=nan",
        "alert_rate=0.5%",
        "precision:0.8",
    ],
)
def test_parse_policy_rejects_naming_the_option(text: str) -> None:
    with pytest.raises(ModelError, match="--threshold-policy"):
        parse_policy(text)


def test_policy_validation_and_description() -> None:
    with pytest.raises(ModelError, match="ThresholdPolicy.value"):
        ThresholdPolicy("alert_rate", 0.0)
    with pytest.raises(ModelError, match="ThresholdPolicy.kind"):
        ThresholdPolicy("recall", 0.5)  # type: ignore[arg-type]
    assert ThresholdPolicy("alert_rate", 0.005).describe() == (
        "alert budget: top 0.50% of transactions"
    )
    assert ThresholdPolicy("precision", 0.8).describe() == "target precision 0.80"
