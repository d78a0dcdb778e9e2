"""Reference distributions of the model's inputs and score, and the population stability index.

A reference is a column's quantile bins on the data the model was built from: cut points at
its deciles, the share of rows in each bin, and the share of nulls, which are a bin of their
own (a feature that starts coming in null has drifted too). PSI compares a sample's shares with
the reference's: `sum((a - e) * ln(a / e))` over the bins, a share of 0 counting as EPSILON so
that an empty bin gives a large term instead of an infinite one. Below 0.1 is read as stable,
above PSI_ALERT (0.2) as a shift worth a look.

Bins are right-closed (`cuts[i-1] < x <= cuts[i]`) and repeated cut points are merged, so a
flag or a mostly-zero count gets the bins its values allow (`<= 0`, `(0, 1]`, `> 1`) rather
than ten empty ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

N_BINS = 10
EPSILON = 1e-4
PSI_ALERT = 0.2
# The key of the score's reference in a card's `drift_reference`, beside the feature names.
SCORE = "fraud_score"

__all__ = [
    "EPSILON",
    "N_BINS",
    "PSI_ALERT",
    "SCORE",
    "Bins",
    "reference_bins",
    "reference_distributions",
    "psi",
]


@dataclass(frozen=True)
class Bins:
    """A column's reference: `shares[i]` of the rows fall in bin i, `null_share` are null.

    `shares` has one bin more than `cuts`; shares and null_share add up to 1 (when `rows`).
    """

    cuts: tuple[float, ...]
    shares: tuple[float, ...]
    null_share: float
    rows: int

    def as_dict(self) -> dict[str, Any]:
        """The card's JSON form."""
        return {
            "cuts": list(self.cuts),
            "shares": list(self.shares),
            "null_share": self.null_share,
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Bins:
        cuts = tuple(float(v) for v in data["cuts"])
        shares = tuple(float(v) for v in data["shares"])
        if len(shares) != len(cuts) + 1:
            raise ValueError(f"{len(shares)} shares for {len(cuts)} cuts: want one more share")
        return cls(cuts, shares, float(data["null_share"]), int(data["rows"]))


def as_floats(values: npt.ArrayLike | pd.Series) -> npt.NDArray[np.float64]:
    """Values as a float array, None and pandas' NA as NaN (the null bin)."""
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(values, dtype=np.float64)


def _counts(cuts: tuple[float, ...], values: npt.NDArray[np.float64]) -> tuple[np.ndarray, int]:
    """(rows per bin, null rows) of `values`."""
    nulls = np.isnan(values)
    bins = np.digitize(values[~nulls], np.asarray(cuts, dtype=np.float64), right=True)
    return np.bincount(bins, minlength=len(cuts) + 1), int(nulls.sum())


def reference_bins(values: npt.ArrayLike | pd.Series, n_bins: int = N_BINS) -> Bins:
    """Quantile bins of `values`: cut at the n_bins - 1 inner quantiles of its finite values.

    The quantiles are values of the sample (no interpolation), so a flag is cut at 0 and 1,
    never at 0.3.
    """
    array = as_floats(values)
    finite = array[np.isfinite(array)]
    cuts: tuple[float, ...] = ()
    if finite.size:
        quantiles = np.quantile(
            finite, np.linspace(0.0, 1.0, n_bins + 1)[1:-1], method="inverted_cdf"
        )
        cuts = tuple(float(cut) for cut in np.unique(quantiles))
    counts, nulls = _counts(cuts, array)
    rows = len(array)
    if not rows:
        return Bins(cuts, tuple(0.0 for _ in range(len(cuts) + 1)), 0.0, 0)
    return Bins(cuts, tuple(float(n) / rows for n in counts), nulls / rows, rows)


def psi(reference: Bins, values: npt.ArrayLike | pd.Series) -> float:
    """The population stability index of `values` against `reference` (nulls a bin of their own).

    Raises ValueError for no values: a share of nothing has no meaning.
    """
    array = as_floats(values)
    if not len(array):
        raise ValueError("PSI of no values")
    counts, nulls = _counts(reference.cuts, array)
    actual = np.append(counts, nulls) / len(array)
    expected = np.asarray([*reference.shares, reference.null_share], dtype=np.float64)
    actual, expected = np.clip(actual, EPSILON, None), np.clip(expected, EPSILON, None)
    value = float(np.sum((actual - expected) * np.log(actual / expected)))
    return 0.0 if math.isclose(value, 0.0, abs_tol=1e-12) else value


def reference_distributions(
    features: pd.DataFrame, scores: npt.ArrayLike | pd.Series
) -> dict[str, dict[str, Any]]:
    """The card's `drift_reference`: bins of every column of `features`, and of `scores`."""
    reference = {name: reference_bins(features[name]).as_dict() for name in features.columns}
    reference[SCORE] = reference_bins(scores).as_dict()
    return reference
