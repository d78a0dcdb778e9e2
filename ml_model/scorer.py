"""Scoring with a trained model: score, decision and analyst-readable reason codes.

Vectorised over a pandas frame (one Arrow batch in the stream). Reason codes are occlusion
attributions: for each flagged row, every feature in turn is set back to its typical genuine
value (the model card's reference), and the features whose reset lowers the score most are
named with their value and how much score they add.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController

from config.exceptions import ModelError
from ml_model.artifacts import ModelCard

ALERT, REVIEW, OK = "ALERT", "REVIEW", "OK"
SCORE_COLUMNS = ("fraud_score", "model_version", "decision", "reason_codes")
TOP_REASONS = 3


def check_features(card: ModelCard, available: Sequence[str]) -> None:
    """Refuse a model whose feature list the pipeline does not compute (in the same order)."""
    if list(card.feature_names) == list(available):
        return
    missing = [name for name in card.feature_names if name not in available]
    extra = [name for name in available if name not in card.feature_names]
    detail = f"missing {missing}" if missing else "same names, different order"
    if extra:
        detail += f"; not in the model: {extra}"
    raise ModelError(
        f"model {card.version} expects features {card.feature_names}, but the pipeline "
        f"computes {list(available)} ({detail}): retrain with `python -m ml_model.train`"
    )


def thresholds(
    card: ModelCard, threshold: float | None = None, review_band: float | None = None
) -> tuple[float, float]:
    """(alert threshold, review threshold): the card's, unless config overrides them."""
    alert = card.threshold if threshold is None else threshold
    if review_band is None:
        return alert, min(card.review_threshold, alert)
    return alert, alert * review_band


def decide(scores: np.ndarray, threshold: float, review_threshold: float) -> np.ndarray:
    return np.where(scores >= threshold, ALERT, np.where(scores >= review_threshold, REVIEW, OK))


def _format_value(value: float) -> str:
    if np.isnan(value):
        return "none"
    return f"{value:.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.2f}"


class LocalScorer:
    """A scikit-learn model plus its card; thresholds may be overridden by config.

    `threads`: the most native threads (OpenMP, BLAS) a prediction may use; None leaves the
    libraries' default, one per core. The stream's driver shares its cores with Spark and the
    source, and a pool sized to every core then spins waiting for a busy one
    (docs/decisions/0041).
    """

    def __init__(
        self,
        model: Any,
        card: ModelCard,
        threshold: float | None = None,
        review_band: float | None = None,
        threads: int | None = None,
    ) -> None:
        self.model = model
        self.card = card
        self.threads = threads
        # Built once, after the model (and so its native libraries) is loaded: a limit from a
        # kept controller costs microseconds, a fresh lookup of the libraries milliseconds.
        self._pools = ThreadpoolController() if threads is not None else None
        self.threshold, self.review_threshold = thresholds(card, threshold, review_band)
        self.names = list(card.feature_names)
        self._reference = np.array(
            [card.reference_values.get(name, np.nan) for name in self.names], dtype=float
        )

    def predict(self, features: np.ndarray) -> np.ndarray:
        if features.shape[0] == 0:
            return np.zeros(0)
        pools = nullcontext() if self._pools is None else self._pools.limit(limits=self.threads)
        with pools:
            return np.asarray(self.model.predict_proba(features)[:, 1], dtype=float)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [name for name in self.names if name not in frame.columns]
        if missing:
            raise ModelError(f"feature columns missing from the batch: {missing}")
        return frame[self.names].to_numpy(dtype=float, na_value=np.nan)

    def reasons(self, features: np.ndarray, scores: np.ndarray) -> list[list[str]]:
        """Top contributing features per row (occlusion against the reference values)."""
        n, k = features.shape
        if n == 0:
            return []
        occluded = np.repeat(features, k, axis=0)
        columns = np.tile(np.arange(k), n)
        occluded[np.arange(n * k), columns] = self._reference[columns]
        drops = scores.repeat(k) - self.predict(occluded)
        drops = drops.reshape(n, k)
        out: list[list[str]] = []
        for row in range(n):
            order = np.argsort(-drops[row])[:TOP_REASONS]
            out.append(
                [
                    f"{self.names[j]}={_format_value(features[row, j])} (+{drops[row, j]:.2f})"
                    for j in order
                    if drops[row, j] > 0.005
                ]
            )
        return out

    def score_matrix(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
        scores = self.predict(features)
        decisions = decide(scores, self.threshold, self.review_threshold)
        reasons: list[list[str]] = [[] for _ in range(len(scores))]
        flagged = np.flatnonzero(decisions != OK)
        for index, codes in zip(
            flagged, self.reasons(features[flagged], scores[flagged]), strict=True
        ):
            reasons[index] = codes
        return scores, decisions, reasons

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame's rows with SCORE_COLUMNS added."""
        scores, decisions, reasons = self.score_matrix(self.matrix(frame))
        out = frame.copy()
        out["fraud_score"] = scores
        out["model_version"] = self.card.version
        out["decision"] = decisions
        out["reason_codes"] = reasons
        return out
