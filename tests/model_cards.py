"""A model card for the tests' tiny models: the defaults every such test would otherwise repeat."""

from __future__ import annotations

from dataclasses import replace
from importlib.metadata import version
from typing import Any

from ml_model.artifacts import ModelCard
from ml_model.features import FEATURE_NAMES


def small_card(name: str, features: list[str] | None = None, **changes: Any) -> ModelCard:
    """A card for a scikit-learn LogisticRegression over `features` (the pipeline's by default),
    threshold 0.5, saved with the running scikit-learn and numpy; `changes` override fields."""
    card = ModelCard(
        version=name,
        created_at="2026-01-01T00:00:00+00:00",
        model_type="sklearn.linear_model.LogisticRegression",
        feature_names=list(FEATURE_NAMES) if features is None else features,
        threshold=0.5,
        threshold_policy="fixed:0.5",
        review_threshold=0.25,
        training_window={},
        test_window={},
        data_hash="0",
        library_versions={lib: version(lib) for lib in ("scikit-learn", "numpy")},
    )
    return replace(card, **changes)
