"""The local model's native thread pools during a prediction (ADR 0041).

The job's driver shares two vCPUs with Spark and the source; a pool of one thread per core
spun waiting for the busy one. The profile's `model.threads` caps the pools while the model
predicts, and leaves them as they were afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# The libraries a scikit-learn model predicts with (OpenMP for the gradient boosting that
# training selects), loaded before the pools are read.
import sklearn.ensemble  # noqa: F401
from threadpoolctl import threadpool_info

from config.exceptions import ConfigError
from config.settings import load_config
from ml_model.features import FEATURE_NAMES
from ml_model.scorer import LocalScorer
from processor.scoring import ShadowScorer, frame_scorer
from tests.model_cards import small_card
from tests.test_challenger import champion_at, everything_at


def _pool_sizes() -> dict[str, int]:
    return {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()}


class PoolRecorder:
    """A model that records the native pools' sizes while it predicts."""

    def __init__(self) -> None:
        self.seen: list[dict[str, int]] = []

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        self.seen.append(_pool_sizes())
        return np.full((len(features), 2), 0.5)


def _features(rows: int) -> np.ndarray:
    return np.zeros((rows, len(FEATURE_NAMES)))


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: every pool already has one")
def test_a_scorer_given_one_thread_predicts_with_every_pool_at_one() -> None:
    before = _pool_sizes()
    assert any(size > 1 for size in before.values()), before  # else there is nothing to cap
    model = PoolRecorder()
    LocalScorer(model, small_card("v1"), threads=1).predict(_features(3))
    assert model.seen and all(size == 1 for size in model.seen[0].values()), model.seen
    assert _pool_sizes() == before  # restored after the call


def test_a_scorer_without_a_thread_count_leaves_the_pools_alone() -> None:
    before = _pool_sizes()
    model = PoolRecorder()
    LocalScorer(model, small_card("v1")).predict(_features(3))
    assert model.seen == [before]


def test_the_jobs_champion_and_challenger_score_with_the_profiles_threads(tmp_path: Path) -> None:
    settings = load_config("local", environ={}).with_overrides(
        model={
            "path": champion_at(tmp_path / "current"),
            "challenger_path": everything_at(tmp_path / "next"),
        }
    )
    assert settings.model.threads == 1  # config/config.yaml's default
    scorer = frame_scorer(settings)
    assert isinstance(scorer, ShadowScorer)
    champion: Any = scorer.champion
    assert champion.__self__.threads == 1 and scorer.challenger.threads == 1
    unlimited = frame_scorer(settings.with_overrides(model={"threads": None}))
    assert isinstance(unlimited, ShadowScorer)
    assert unlimited.challenger.threads is None


def test_model_threads_is_a_positive_count_or_null() -> None:
    settings = load_config("local", environ={})
    assert settings.with_overrides(model={"threads": 4}).model.threads == 4
    with pytest.raises(ConfigError, match=r"model\.threads"):
        settings.with_overrides(model={"threads": 0})
