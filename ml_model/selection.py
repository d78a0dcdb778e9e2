"""Prequential model selection: rolling folds before the test period, a small search, one rule.

Fold layout. The selection days run from the first training day (after the warm-up) to the day
before the test period; the test period is never looked at. With n folds (--folds), V
validation days per fold (--fold-days) and a gap G of the label delay (7 days: a chargeback
arrives that long after its transaction, so a fold's training labels are all known when its
validation starts), every fold trains on the same number of days W = span - G - n * V and the
folds roll forward by V days, so that their validation days tile the last n * V selection days:

    day:    start                                                        test start
    fold 1  |---- train W ----|---- gap G ----|-- val V --|                  |
    fold 2  .    |---- train W ----|---- gap G ----|-- val V --|             |
    ...                                                       ...            |
    fold n  .          |---- train W ----|---- gap G ----|-- val V --|       |

No fold validates on a day it trains on, or on a test day; later folds train on days that
earlier folds validated on (their labels have arrived by then), as a model retrained weekly
would. W must be at least MIN_TRAIN_DAYS; a shorter history is one ModelError naming --folds.

The choice. Each candidate (a set of HistGradientBoostingClassifier parameters and a fraud
weight) is fitted on every fold's training days and scored on its validation days: average
precision (AP) and card precision@100 (ml_model.evaluation). The first candidate (the default
parameters) is the incumbent. Another candidate is eligible only when, fold by fold against the
incumbent (paired: the same days), its mean AP gain is more than MARGIN_SE standard errors of
those gains, and its mean card precision@100 change is not below -MARGIN_SE standard errors.
The winner is the eligible candidate (the incumbent always is) with the highest mean AP across
folds; a tie goes to the higher mean card precision@100, then to the earlier candidate.

Why not simply the best mean: with four folds the candidates' mean APs differ by less than
their fold-to-fold spread, and card precision@100 sits at its ceiling (about 15 fraudulent
cards a day), so the best of six means is mostly the luckiest; a challenger must win clearly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from config.exceptions import ModelError
from ml_model.evaluation import evaluate
from ml_model.features import FEATURE_NAMES
from ml_model.features.definitions import DAY as DAY_MS
from ml_model.features.definitions import LABEL_DELAY

logger = logging.getLogger(__name__)

GAP_DAYS = LABEL_DELAY // DAY_MS
DEFAULT_FOLDS = 4
DEFAULT_FOLD_DAYS = 2
MIN_TRAIN_DAYS = 3
TOP_K = 100
MARGIN_SE = 2.0
RULE = (
    "highest mean average precision across folds among the eligible candidates (ties: higher "
    "mean card precision@100, then the earlier candidate); the first candidate is always "
    f"eligible, another when, paired by fold against the first, its mean AP gain exceeds "
    f"{MARGIN_SE:g} standard errors of the gains and its mean card precision@100 change is "
    f"not below -{MARGIN_SE:g} standard errors"
)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Params:
    """HistGradientBoostingClassifier parameters, and how much a fraud row weighs.

    `fraud_weight` 1.0 weighs every row alike, 10.0 makes a fraud count ten times, "balanced"
    weighs the classes inversely to their frequency (scikit-learn's class_weight="balanced").
    """

    learning_rate: float = 0.05
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    max_iter: int = 150
    fraud_weight: float | Literal["balanced"] = 10.0

    def estimator(self, seed: int) -> HistGradientBoostingClassifier:
        class_weight: Any = {False: 1.0, True: self.fraud_weight}
        if self.fraud_weight == "balanced":
            class_weight = "balanced"
        elif self.fraud_weight == 1.0:
            class_weight = None
        return HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            class_weight=class_weight,
            early_stopping=False,
            random_state=seed,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Candidate:
    """One point of the search: a name for the card and the CLI, and its parameters."""

    name: str
    params: Params


# Fraud weighs 10x by default: enough to learn the rare class, not so much that scores saturate
# at 1.0, where ties would leave the threshold policy nothing to choose between.
DEFAULT_PARAMS = Params()
SEARCH_SPACE: tuple[Candidate, ...] = (
    Candidate("default", DEFAULT_PARAMS),
    Candidate("unweighted", Params(fraud_weight=1.0)),
    Candidate("balanced", Params(fraud_weight="balanced")),
    Candidate(
        "slow-regularised",
        Params(
            learning_rate=0.03,
            max_leaf_nodes=15,
            min_samples_leaf=80,
            l2_regularization=3.0,
            max_iter=300,
        ),
    ),
    Candidate(
        "fast-deep",
        Params(
            learning_rate=0.1,
            max_leaf_nodes=63,
            min_samples_leaf=20,
            l2_regularization=0.1,
            max_iter=150,
        ),
    ),
    Candidate("more-trees", Params(min_samples_leaf=20, max_iter=300)),
)


@dataclass(frozen=True)
class Fold:
    """One fold's UTC days, both ends inclusive."""

    train: tuple[date, date]
    validation: tuple[date, date]

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {
            period: {"start": days[0].isoformat(), "end": days[1].isoformat()}
            for period, days in (("train", self.train), ("validation", self.validation))
        }


def fold_layout(
    start: date,
    test_start: date,
    folds: int = DEFAULT_FOLDS,
    fold_days: int = DEFAULT_FOLD_DAYS,
    gap_days: int = GAP_DAYS,
) -> list[Fold]:
    """The folds in [start, test_start), oldest first (module docstring); too few days raise."""
    if folds < 2:
        raise ModelError(f"--folds must be at least 2, got {folds}")
    if fold_days < 1:
        raise ModelError(f"--fold-days must be at least 1, got {fold_days}")
    span = (test_start - start).days
    train_days = span - gap_days - folds * fold_days
    if train_days < MIN_TRAIN_DAYS:
        need = folds * fold_days + gap_days + MIN_TRAIN_DAYS
        raise ModelError(
            f"history too short for --folds {folds}: {folds} folds of {fold_days} validation "
            f"day(s) (--fold-days), a {gap_days}-day label-delay gap and at least "
            f"{MIN_TRAIN_DAYS} training days need {need} days between {start} and the test "
            f"period ({test_start}), there are {max(span, 0)}: pass fewer --folds, more --days "
            "or --no-search"
        )
    layout = []
    for i in range(folds):
        validation_start = test_start - (folds - i) * fold_days * DAY
        train_end = validation_start - (gap_days + 1) * DAY
        layout.append(
            Fold(
                train=(train_end - (train_days - 1) * DAY, train_end),
                validation=(validation_start, validation_start + (fold_days - 1) * DAY),
            )
        )
    return layout


def rows_in(frame: pd.DataFrame, days: tuple[date, date]) -> pd.DataFrame:
    """The rows of `frame` whose UTC event day lies in `days` (both ends inclusive)."""
    day = frame["event_time"].dt.tz_convert("UTC").dt.floor("D")
    first, last = (pd.Timestamp(d.isoformat(), tz="UTC") for d in days)
    return frame[(day >= first) & (day <= last)]


@dataclass
class Score:
    """A candidate's fold scores: average precision and card precision@k, one per fold."""

    average_precision: list[float] = field(default_factory=list)
    card_precision: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @staticmethod
    def summary(values: list[float]) -> dict[str, Any]:
        """Mean and sample standard deviation (ddof 1) over the folds, and the fold values."""
        array = np.asarray(values, dtype=float)
        std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
        return {"mean": float(array.mean()), "std": std, "folds": [float(v) for v in values]}


@dataclass(frozen=True)
class Versus:
    """A candidate against the incumbent, fold by fold: mean change and its standard error."""

    ap_gain: float
    ap_gain_se: float
    cp_change: float
    cp_change_se: float
    eligible: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _paired(ours: list[float], theirs: list[float]) -> tuple[float, float]:
    """Mean of the per-fold differences and its standard error (ddof 1)."""
    diff = np.asarray(ours, dtype=float) - np.asarray(theirs, dtype=float)
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return float(diff.mean()), se


def versus(score: Score, incumbent: Score) -> Versus:
    """Whether `score` clearly beats the incumbent's (module docstring: eligible)."""
    ap_gain, ap_se = _paired(score.average_precision, incumbent.average_precision)
    cp_change, cp_se = _paired(score.card_precision, incumbent.card_precision)
    eligible = ap_gain > MARGIN_SE * ap_se and cp_change >= -MARGIN_SE * cp_se
    return Versus(ap_gain, ap_se, cp_change, cp_se, eligible)


def choose(
    candidates: Sequence[Candidate], scores: Sequence[Score]
) -> tuple[Candidate, list[Versus]]:
    """The winner by the module's rule, and each candidate against the first (the incumbent)."""
    against = [versus(score, scores[0]) for score in scores]
    against[0] = replace(against[0], eligible=True)
    ap = [float(np.mean(s.average_precision)) for s in scores]
    cp = [float(np.mean(s.card_precision)) for s in scores]
    eligible = [i for i, v in enumerate(against) if v.eligible]
    best = min(eligible, key=lambda i: (-ap[i], -cp[i], i))
    return candidates[best], against


@dataclass(frozen=True)
class Selection:
    folds: list[Fold]
    candidates: list[Candidate]
    scores: list[Score]
    against: list[Versus]
    winner: Candidate

    def as_card(self) -> dict[str, Any]:
        """What the model card records (ModelCard.selection)."""
        return {
            "rule": RULE,
            "top_k": TOP_K,
            "gap_days": GAP_DAYS,
            "folds": [fold.as_dict() for fold in self.folds],
            "search_space": [
                {"name": c.name, "params": c.params.as_dict()} for c in self.candidates
            ],
            "candidates": [
                {
                    "name": candidate.name,
                    "average_precision": Score.summary(score.average_precision),
                    "card_precision_at_100": Score.summary(score.card_precision),
                    "versus_first": versus.as_dict(),
                    "fit_seconds": round(score.seconds, 2),
                }
                for candidate, score, versus in zip(
                    self.candidates, self.scores, self.against, strict=True
                )
            ],
            "winner": self.winner.name,
        }


def _matrix(part: pd.DataFrame) -> np.ndarray:
    return part[list(FEATURE_NAMES)].to_numpy(dtype=float)


def select(
    frame: pd.DataFrame,
    folds: Sequence[Fold],
    candidates: Sequence[Candidate] = SEARCH_SPACE,
    seed: int = 0,
) -> Selection:
    """Fit every candidate on every fold; the winner by the module's rule.

    `frame` is `train.training_frame`'s: features, `is_fraud`, `fraud_scenario`, `card`,
    `event_time`. A fold whose training or validation days hold no fraud is a ModelError.
    """
    if not candidates:
        raise ModelError("the search space is empty")
    parts = []
    for number, fold in enumerate(folds, start=1):
        train, validation = rows_in(frame, fold.train), rows_in(frame, fold.validation)
        checks = (("training", train, fold.train), ("validation", validation, fold.validation))
        for name, part, days in checks:
            if not part["is_fraud"].any() or part["is_fraud"].all():
                raise ModelError(
                    f"fold {number}'s {name} days {days[0]}..{days[1]} hold no fraud (or only "
                    "fraud): pass fewer --folds, more --fold-days or more --days"
                )
        parts.append((train, validation))
    scores = [Score() for _ in candidates]
    for candidate, score in zip(candidates, scores, strict=True):
        started = time.perf_counter()
        for train, validation in parts:
            model = candidate.params.estimator(seed)
            model.fit(_matrix(train), train["is_fraud"].to_numpy())
            scored = validation[["is_fraud", "fraud_scenario", "card", "event_time"]].assign(
                score=model.predict_proba(_matrix(validation))[:, 1]
            )
            metrics = evaluate(scored, 0.5, top_k=TOP_K, period="fold validation")
            score.average_precision.append(float(metrics["average_precision"]))
            score.card_precision.append(float(metrics["card_precision_at_k"]))
        score.seconds = time.perf_counter() - started
        logger.info(
            "candidate %s: AP %.3f ± %.3f, card precision@%d %.3f ± %.3f (%.1f s)",
            candidate.name,
            np.mean(score.average_precision),
            np.std(score.average_precision, ddof=1),
            TOP_K,
            np.mean(score.card_precision),
            np.std(score.card_precision, ddof=1),
            score.seconds,
        )
    winner, against = choose(candidates, scores)
    logger.info("model selection: %s wins (%s)", winner.name, RULE)
    return Selection(list(folds), list(candidates), scores, against, winner)


def format_selection(selection: Selection) -> str:
    """A few lines for the CLI: the folds, each candidate's fold means ± std, the winner."""
    first, last = selection.folds[0], selection.folds[-1]
    train_days = (first.train[1] - first.train[0]).days + 1
    fold_days = (first.validation[1] - first.validation[0]).days + 1
    incumbent = selection.candidates[0].name
    lines = [
        f"model selection: {len(selection.folds)} folds of {train_days} training days, a "
        f"{GAP_DAYS}-day gap, {fold_days} validation day(s) each "
        f"({first.validation[0]}..{last.validation[1]})",
        f"  {'candidate':<18} {'AP mean ± std':>15} {f'CP@{TOP_K} mean ± std':>17} "
        f"{f'AP gain vs {incumbent} ± se':>26}",
    ]
    for candidate, score, versus in zip(
        selection.candidates, selection.scores, selection.against, strict=True
    ):
        ap, cp = Score.summary(score.average_precision), Score.summary(score.card_precision)
        mark = "  <- winner" if candidate is selection.winner else ""
        mark = mark or ("" if versus.eligible else "  (not clearly better)")
        lines.append(
            f"  {candidate.name:<18} {ap['mean']:>7.3f} ± {ap['std']:.3f} "
            f"{cp['mean']:>9.3f} ± {cp['std']:.3f} "
            f"{versus.ap_gain:>+18.4f} ± {versus.ap_gain_se:.4f}{mark}"
        )
    return "\n".join(lines)
