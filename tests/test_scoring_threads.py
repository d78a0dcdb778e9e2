"""The job's local scoring holds OpenMP to `model.threads` while a batch is scored (ADR 0035)."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_info

from config.exceptions import ConfigError
from config.settings import load_config
from processor.scoring import with_threads

assert HistGradientBoostingClassifier  # imported for scikit-learn's OpenMP runtime


def openmp_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "openmp"}


@pytest.mark.parametrize("threads", [1, 3])
def test_a_batch_is_scored_with_the_configured_openmp_threads(threads: int) -> None:
    before = openmp_threads()
    assert before, "scikit-learn's OpenMP runtime is not loaded"
    seen: list[set[int]] = []

    def score(frame: pd.DataFrame) -> pd.DataFrame:
        seen.append(openmp_threads())
        return frame

    with_threads(score, threads)(pd.DataFrame({"x": [1.0]}))
    assert seen == [{threads}]
    assert openmp_threads() == before  # given back after the batch


def test_one_thread_by_default_and_zero_is_refused() -> None:
    assert load_config(profile="local").model.threads == 1
    with pytest.raises(ConfigError, match="model.threads"):
        load_config(profile="local").with_overrides(model={"threads": 0})
