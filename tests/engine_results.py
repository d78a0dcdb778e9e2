"""A FeatureEngine batch as tests read it: the engine hands each transaction's features over
apart from its row (`BatchResult.features`), not as the row's keys."""

from __future__ import annotations

from typing import Any

import numpy as np

from ml_model.features import FEATURE_NAMES
from processor.engine import BatchResult


def featured(result: BatchResult) -> list[dict[str, Any]]:
    """Each transaction's row with its features added as keys."""
    return [
        {**row, **dict(zip(FEATURE_NAMES, values, strict=True))}
        for row, values in zip(result.transactions, result.features.tolist(), strict=True)
    ]


def same_transactions(first: BatchResult, second: BatchResult) -> bool:
    """The same transaction rows, in the same order, with the same features (NaN equals NaN)."""
    return first.transactions == second.transactions and np.array_equal(
        first.features, second.features, equal_nan=True
    )
