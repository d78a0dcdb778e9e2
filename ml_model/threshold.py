"""Choosing the alert threshold from a stated policy.

A transaction raises an alert when its score is >= the threshold. The policy says what the
threshold is for: either an alert budget (investigators can look at a fixed share of traffic)
or a target precision (alerts must be right often enough to be worth looking at). The returned
threshold is always one of the scores themselves, or one step above the top score when no alert
fits, so it works for probabilities and for raw scores such as amounts alike.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from config.exceptions import ModelError

logger = logging.getLogger(__name__)

PolicyKind = Literal["alert_rate", "precision"]
POLICY_KINDS: tuple[str, ...] = get_args(PolicyKind)
OPTION = "--threshold-policy"

# Float products such as 0.29 * 100 land a hair below the integer they mean.
_RELATIVE_SLACK = 1e-9
# Precision ratios such as 4 / 5 compared with a typed-in 0.8.
_PRECISION_SLACK = 1e-12


@dataclass(frozen=True)
class ThresholdPolicy:
    """How to pick the threshold: an alert budget (share of transactions) or a target precision.

    Both values are fractions in (0, 1]: `alert_rate=0.005` alerts on at most 0.5% of the
    transactions, `precision=0.8` asks that at least 80% of alerts be fraud.
    """

    kind: PolicyKind
    value: float

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ModelError(
                f"ThresholdPolicy.kind must be one of {', '.join(POLICY_KINDS)}, got {self.kind!r}"
            )
        value = self.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ModelError(f"ThresholdPolicy.value must be a number, got {value!r}")
        if not (math.isfinite(value) and 0.0 < value <= 1.0):
            raise ModelError(
                f"ThresholdPolicy.value for {self.kind} must be in (0, 1], got {value}"
            )

    def describe(self) -> str:
        """A human sentence for reports, e.g. 'alert budget: top 0.50% of transactions'."""
        if self.kind == "alert_rate":
            return f"alert budget: top {_percent(self.value)} of transactions"
        return f"target precision {_fraction(self.value)}"

    def as_option(self) -> str:
        """The policy as `--threshold-policy` text; `parse_policy(p.as_option()) == p`."""
        return f"{self.kind}={self.value!r}"


def parse_policy(text: str) -> ThresholdPolicy:
    """Parse CLI text such as 'alert_rate=0.005' or 'precision=0.8'.

    Raises ModelError naming `--threshold-policy` when the text is malformed or out of range.
    """
    expected = "expected 'alert_rate=<share in (0, 1]>' or 'precision=<target in (0, 1]>'"
    kind, sep, raw = text.partition("=")
    kind, raw = kind.strip(), raw.strip()
    if not sep or kind not in POLICY_KINDS:
        raise ModelError(f"{OPTION}: {expected}, got {text!r}")
    try:
        value = float(raw)
    except ValueError as exc:
        raise ModelError(f"{OPTION}: {kind} needs a number, got {raw!r}") from exc
    try:
        return ThresholdPolicy(kind, value)  # type: ignore[arg-type]  # checked above
    except ModelError as exc:
        raise ModelError(f"{OPTION}: {exc}") from exc


def choose_threshold(
    scores: npt.ArrayLike, labels: npt.ArrayLike, policy: ThresholdPolicy
) -> float:
    """The alert threshold (alert when score >= threshold) that `policy` asks for.

    alert_rate: the lowest score t whose alert count, #(score >= t), is at most
    floor(value * n). Tied scores alert together, so a tie that would cross the budget is left
    out entirely: the budget is never exceeded, and may be under-used. When even the top score
    alone (with its ties) is over budget, for instance when every score is equal, no score can
    be the threshold; the result is then the next float above the top score, which alerts on
    nothing (a warning is logged). Only then can the result leave [0, 1] for probabilities, and
    only if the top score is exactly 1.0. Labels are not used, only checked for length.

    precision: among thresholds whose precision on these labels is >= value, the one with the
    highest recall; among those, the highest (fewest alerts for the same frauds caught), which
    is always the score of a fraud. If none reaches the target, the threshold of best precision
    (ties: highest recall) is returned and a warning is logged. Labels must contain a fraud.
    """
    score_array = _as_scores(scores)
    label_array = _as_labels(labels, len(score_array))
    # Distinct scores from the highest down, with how many rows and frauds share each.
    distinct, inverse = np.unique(score_array, return_inverse=True)
    rows = np.bincount(inverse, minlength=len(distinct))[::-1]
    frauds = np.bincount(inverse, weights=label_array, minlength=len(distinct))[::-1]
    frauds = frauds.astype(np.int64)
    distinct = distinct[::-1]
    alerts = np.cumsum(rows)  # alerts[i] = #(score >= distinct[i])
    caught = np.cumsum(frauds)
    if policy.kind == "alert_rate":
        return _by_alert_rate(distinct, alerts, policy)
    return _by_precision(distinct, alerts, caught, policy)


def _by_alert_rate(
    distinct: npt.NDArray[np.float64], alerts: npt.NDArray[np.int64], policy: ThresholdPolicy
) -> float:
    """Lowest distinct score whose cumulative alert count fits the budget."""
    n = int(alerts[-1])
    max_alerts = math.floor(policy.value * n * (1.0 + _RELATIVE_SLACK))
    fitting = int(np.searchsorted(alerts, max_alerts, side="right"))  # alerts is increasing
    if fitting == 0:
        logger.warning(
            "%s allows %d of %d transactions, but the top score %.6g is shared by %d; "
            "the threshold is set just above it, so nothing alerts",
            policy.describe(),
            max_alerts,
            n,
            distinct[0],
            alerts[0],
        )
        return float(np.nextafter(distinct[0], np.inf))
    return float(distinct[fitting - 1])


def _by_precision(
    distinct: npt.NDArray[np.float64],
    alerts: npt.NDArray[np.int64],
    caught: npt.NDArray[np.int64],
    policy: ThresholdPolicy,
) -> float:
    """Highest-recall threshold meeting the target precision, else the most precise one."""
    if caught[-1] == 0:
        raise ModelError(
            "labels: the precision policy needs at least one fraud among the labels, found none"
        )
    precision = caught / alerts
    meets = precision >= policy.value - _PRECISION_SLACK
    if meets.any():
        best_caught = caught[meets].max()
        # First (highest) threshold that meets the target and catches that many frauds.
        return float(distinct[np.flatnonzero(meets & (caught == best_caught))[0]])
    best = precision.max()
    index = int(np.flatnonzero(precision >= best - _PRECISION_SLACK)[-1])
    logger.warning(
        "no threshold reaches %s (best precision is %.4f, at threshold %.6g catching %d of %d "
        "frauds); using that threshold",
        policy.describe(),
        best,
        distinct[index],
        caught[index],
        caught[-1],
    )
    return float(distinct[index])


def _as_scores(scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Scores as a non-empty 1-D float array without NaN or infinity."""
    try:
        array = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"scores must be numbers: {exc}") from exc
    if array.ndim != 1:
        raise ModelError(f"scores must be one-dimensional, got shape {array.shape}")
    if len(array) == 0:
        raise ModelError("scores is empty: cannot choose a threshold without scores")
    if not np.isfinite(array).all():
        raise ModelError("scores contains NaN or infinite values")
    return array


def _as_labels(labels: npt.ArrayLike, n: int) -> npt.NDArray[np.float64]:
    """Labels as 0.0/1.0 floats (fraud = 1), checked against the number of scores."""
    array = np.asarray(labels)
    if array.shape != (n,):
        raise ModelError(f"labels must have one value per score ({n}), got shape {array.shape}")
    if array.dtype != np.bool_ and not np.isin(array, (0, 1)).all():
        raise ModelError("labels must be booleans or 0/1")
    return array.astype(np.float64)


def _percent(share: float) -> str:
    """0.005 -> '0.50%'; shares that two decimals would blur keep four significant digits."""
    percent = share * 100
    text = f"{percent:.2f}"
    if not math.isclose(float(text), percent, rel_tol=1e-9):
        text = f"{percent:.4g}"
    return text + "%"


def _fraction(value: float) -> str:
    """0.8 -> '0.80'; 0.825 -> '0.825'."""
    text = f"{value:.2f}"
    return text if math.isclose(float(text), value, rel_tol=1e-9) else f"{value:.4g}"
