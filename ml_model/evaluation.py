"""Metrics of a scored test period, and their text for the CLI.

Input contract (one row per transaction):

- `score`: float, higher means more suspicious; probabilities or any real score (the
  amount-only baseline scores with the raw amount). No NaN.
- `is_fraud`: bool (0/1 accepted), the label. No nulls.
- `fraud_scenario`: str or None, the generator's scenario name on fraud rows; a fraud row
  without one is counted under "unlabelled". Ignored on genuine rows.
- `card`: str, the card token.
- `event_time`: pandas datetime64, preferably `datetime64[ns, UTC]`. Other time zones are
  converted to UTC; naive values are taken as UTC (what Spark's `toPandas` gives with the
  project's `spark.sql.session.timeZone=UTC`). Days for card precision@k are UTC dates.

A transaction alerts when `score >= threshold`. Every number returned is a plain int, float or
None, so the result goes to `json.dumps` as is.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from config.exceptions import ModelError

REQUIRED_COLUMNS: tuple[str, ...] = ("score", "is_fraud", "fraud_scenario", "card", "event_time")
UNLABELLED_SCENARIO = "unlabelled"


def evaluate(
    frame: pd.DataFrame, threshold: float, *, top_k: int = 100, period: str = "test period"
) -> dict[str, Any]:
    """Ranking, threshold, card-level and per-scenario metrics of one scored period.

    `roc_auc` and `average_precision` are None when the period holds only one class (no
    frauds, or only frauds): neither ranks anything then. `precision_at_threshold` is None when
    nothing alerts and `recall_at_threshold` is None when there is no fraud, for the same reason.

    `card_precision_at_k` follows the Fraud Detection Handbook: per UTC day, a card's score is
    its highest transaction score that day; the k best cards (all of them on a day with fewer
    than k) are checked for at least one fraud that day; the daily shares are averaged over the
    days of the period, days without fraud included. Cards tied at the k-th place share the
    remaining places by expectation (each counts as its share of a random draw), so the value
    does not depend on card-token order. A day can never score above
    min(fraud cards, k) / k; `card_precision_at_k_max` is the mean of that ceiling.

    `period` names the period in error messages; an empty frame raises ModelError.
    """
    checked = _checked(frame, threshold, top_k, period)
    scores = checked["score"].to_numpy(dtype=np.float64)
    labels = checked["is_fraud"].to_numpy(dtype=bool)
    alerted = scores >= threshold
    transactions = len(checked)
    frauds = int(labels.sum())
    alerts = int(alerted.sum())
    caught = int((alerted & labels).sum())
    both_classes = 0 < frauds < transactions
    daily = _card_precision_by_day(checked, top_k)
    return {
        "threshold": float(threshold),
        "transactions": transactions,
        "frauds": frauds,
        "alerts": alerts,
        "alert_rate": alerts / transactions,
        "roc_auc": float(roc_auc_score(labels, scores)) if both_classes else None,
        "average_precision": (
            float(average_precision_score(labels, scores)) if both_classes else None
        ),
        "precision_at_threshold": caught / alerts if alerts else None,
        "recall_at_threshold": caught / frauds if frauds else None,
        "top_k": top_k,
        "card_precision_at_k": float(daily["value"].mean()),
        "card_precision_at_k_max": float(daily["best"].mean()),
        "card_precision_at_k_per_day": {
            day.isoformat(): float(value) for day, value in daily["value"].items()
        },
        "per_scenario_recall": _recall_by_scenario(checked, alerted, labels),
    }


def format_report(name: str, metrics: dict[str, Any]) -> str:
    """A few lines for the CLI: headline metrics, alert volume, then recall per scenario."""
    k = metrics["top_k"]
    lines = [
        f"{name}: AUC {_num(metrics['roc_auc'])}  AP {_num(metrics['average_precision'])}  "
        f"P@thr {_num(metrics['precision_at_threshold'], 2)}  "
        f"R@thr {_num(metrics['recall_at_threshold'], 2)}  "
        f"CP@{k} {_card_cell(metrics)} (achieved/best possible)",
        f"  threshold {metrics['threshold']:.6g}: {metrics['alerts']:,} alerts in "
        f"{metrics['transactions']:,} transactions ({_percent(metrics['alert_rate'])}), "
        f"{metrics['frauds']:,} frauds",
    ]
    scenarios: dict[str, dict[str, Any]] = metrics["per_scenario_recall"]
    if scenarios:
        width = max(len(scenario) for scenario in scenarios)
        lines.append("  recall by fraud scenario:")
        lines.extend(
            f"    {scenario:<{width}}  {_num(entry['recall'], 2)}  "
            f"({entry['detected']:,} of {entry['frauds']:,})"
            for scenario, entry in scenarios.items()
        )
    return "\n".join(lines)


def format_comparison(model: dict[str, Any], baseline: dict[str, Any]) -> str:
    """The model's and the baseline's metrics side by side, with the ratio of their APs."""
    rows: list[tuple[str, str, str]] = [
        ("AUC", _num(model["roc_auc"]), _num(baseline["roc_auc"])),
        ("AP", _num(model["average_precision"]), _num(baseline["average_precision"])),
        (
            "precision@threshold",
            _num(model["precision_at_threshold"]),
            _num(baseline["precision_at_threshold"]),
        ),
        (
            "recall@threshold",
            _num(model["recall_at_threshold"]),
            _num(baseline["recall_at_threshold"]),
        ),
        (f"card precision@{model['top_k']}", *_card_cells(model, baseline)),
        ("alerts", f"{model['alerts']:,}", f"{baseline['alerts']:,}"),
        ("alert rate", _percent(model["alert_rate"]), _percent(baseline["alert_rate"])),
    ]
    model_scenarios: dict[str, dict[str, Any]] = model["per_scenario_recall"]
    baseline_scenarios: dict[str, dict[str, Any]] = baseline["per_scenario_recall"]
    for scenario in sorted(model_scenarios.keys() | baseline_scenarios.keys()):
        rows.append(
            (
                f"recall {scenario}",
                _num(model_scenarios.get(scenario, {}).get("recall")),
                _num(baseline_scenarios.get(scenario, {}).get("recall")),
            )
        )
    width = max(len(label) for label, _, _ in rows)
    lines = [f"{'':<{width}}  {'model':>11}  {'baseline':>11}"]
    lines.extend(f"{label:<{width}}  {left:>11}  {right:>11}" for label, left, right in rows)
    lines.append(f"AP ratio (model / baseline): {_ap_ratio(model, baseline)}")
    return "\n".join(lines)


def _checked(frame: pd.DataFrame, threshold: float, top_k: int, period: str) -> pd.DataFrame:
    """The frame's contract columns, checked, with `event_time` as UTC and `is_fraud` as bool."""
    if len(frame.index) == 0:
        raise ModelError(f"{period}: no transactions to evaluate (the frame is empty)")
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise ModelError(f"{period}: missing column(s) {', '.join(missing)}")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.number):
        raise ModelError(f"threshold must be a number, got {threshold!r}")
    if not math.isfinite(threshold):
        raise ModelError(f"threshold must be finite, got {threshold}")
    if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
        raise ModelError(f"top_k must be a positive integer, got {top_k!r}")
    checked = frame.loc[:, list(REQUIRED_COLUMNS)].copy()
    if not pd.api.types.is_numeric_dtype(checked["score"]) or checked["score"].isna().any():
        raise ModelError(f"{period}: column score must be numeric without NaN")
    fraud = checked["is_fraud"]
    if fraud.isna().any() or not (pd.api.types.is_bool_dtype(fraud) or fraud.isin((0, 1)).all()):
        raise ModelError(f"{period}: column is_fraud must be boolean (or 0/1) without nulls")
    checked["is_fraud"] = fraud.astype(bool)
    times = checked["event_time"]
    if not pd.api.types.is_datetime64_any_dtype(times) or times.isna().any():
        raise ModelError(
            f"{period}: column event_time must be datetime64 (UTC) without nulls, got {times.dtype}"
        )
    checked["event_time"] = (
        times.dt.tz_localize("UTC") if times.dt.tz is None else times.dt.tz_convert("UTC")
    )
    if checked["card"].isna().any():
        raise ModelError(f"{period}: column card has nulls")
    return checked


def _card_precision_by_day(frame: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """Per UTC day: card precision@k (`value`) and its ceiling (`best`), indexed by date."""
    cards = (
        frame.assign(day=frame["event_time"].dt.date)
        .groupby(["day", "card"], sort=True)
        .agg(score=("score", "max"), fraud=("is_fraud", "any"))
    )
    rows: dict[Any, tuple[float, float]] = {}
    for day, group in cards.groupby(level="day", sort=True):
        scores = group["score"].to_numpy(dtype=np.float64)
        fraud = group["fraud"].to_numpy(dtype=bool)
        k = min(top_k, len(scores))
        rows[day] = (_expected_hits(scores, fraud, k) / k, min(int(fraud.sum()), k) / k)
    return pd.DataFrame.from_dict(rows, orient="index", columns=["value", "best"])


def _expected_hits(scores: np.ndarray, fraud: np.ndarray, k: int) -> float:
    """Frauds among the k highest scores; a tie across the cut counts by its fraud share."""
    cut = np.sort(scores)[::-1][k - 1]
    above = scores > cut
    tied = scores == cut
    places = k - int(above.sum())
    return float(fraud[above].sum() + places * fraud[tied].sum() / tied.sum())


def _recall_by_scenario(
    frame: pd.DataFrame, alerted: np.ndarray, labels: np.ndarray
) -> dict[str, dict[str, Any]]:
    """{scenario: {"recall", "frauds", "detected"}} over fraud rows, scenarios sorted by name."""
    fraud = pd.DataFrame(
        {
            "scenario": frame["fraud_scenario"].to_numpy(dtype=object)[labels],
            "detected": alerted[labels],
        }
    )
    fraud["scenario"] = fraud["scenario"].where(fraud["scenario"].notna(), UNLABELLED_SCENARIO)
    result: dict[str, dict[str, Any]] = {}
    for scenario, group in fraud.groupby("scenario", sort=True):
        detected = int(group["detected"].sum())
        result[str(scenario)] = {
            "recall": detected / len(group),
            "frauds": len(group),
            "detected": detected,
        }
    return result


def _card_cells(model: dict[str, Any], baseline: dict[str, Any]) -> tuple[str, str]:
    """'achieved/best' card precision@k for each side."""
    return _card_cell(model), _card_cell(baseline)


def _card_cell(metrics: dict[str, Any]) -> str:
    """'0.210/0.240': card precision@k achieved, then the best achievable."""
    return f"{_num(metrics['card_precision_at_k'])}/{_num(metrics['card_precision_at_k_max'])}"


def _ap_ratio(model: dict[str, Any], baseline: dict[str, Any]) -> str:
    """'5.9x', or 'n/a' when either AP is missing or the baseline's is zero."""
    ours, theirs = model["average_precision"], baseline["average_precision"]
    if ours is None or not theirs:
        return "n/a"
    return f"{ours / theirs:.1f}x"


def _num(value: float | None, digits: int = 3) -> str:
    """A metric with `digits` decimals, or 'n/a' for None."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def _percent(share: float) -> str:
    """0.005 -> '0.50%'."""
    return f"{share * 100:.2f}%"
