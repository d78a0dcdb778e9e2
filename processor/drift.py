"""Drift of the model's inputs and score: PSI over the last scored transactions, per batch.

`DriftMonitor` is a transaction sink (processor/sinks.py RowSink) placed after the alerts: it
keeps the features and score of the last WINDOW scored transactions in a fixed-size ring buffer
and, after each batch, measures every column's PSI against the reference the model card was
trained with (ml_model/drift.py). The values go to Prometheus (`fraud_feature_psi{feature}`,
`fraud_score_psi`, read at scrape time), into the batch's record for the run report, and, when
a column crosses PSI_ALERT, into one WARNING naming it (again only after it has come back).

The window, not the batch, is compared: a batch of a few dozen transactions says little about a
distribution. Below MIN_ROWS transactions nothing is measured, so a job that has just started
does not report the noise of a small sample as drift. The window lives in the driver's memory
and starts empty on every start of the job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ml_model.drift import PSI_ALERT, SCORE, Bins, psi
from ml_model.features.definitions import DAY, FEATURE_NAMES, LONGEST_LOOKBACK

if TYPE_CHECKING:
    from ml_model.artifacts import ModelCard
    from processor.sinks import BatchColumns, BatchCounts

logger = logging.getLogger(__name__)

WINDOW = 5_000
# PSI of a sample of n rows against its own population is about (bins - 1) / n: 0.01 at 1,000.
MIN_ROWS = 1_000


class DriftMonitor(Collector):
    """A RowSink and a Prometheus collector: PSI per feature and of the score over the window.

    `counts` (the LakeWriter's BatchCounts) gets each batch's values as `psi`, which the batch
    record keeps; `psi` holds the latest values (empty until MIN_ROWS have been seen, or when
    the card has no drift reference).
    """

    def __init__(
        self,
        card: ModelCard,
        counts: BatchCounts | None = None,
        window: int = WINDOW,
        min_rows: int = MIN_ROWS,
        threshold: float = PSI_ALERT,
        history_ms: Callable[[], int | None] | None = None,
    ) -> None:
        self.version = card.version
        self.references = {
            name: Bins.from_dict(bins) for name, bins in card.drift_reference.items()
        }
        # The features in the model's order, then the score.
        self.columns = [name for name in card.feature_names if name in self.references]
        if SCORE in self.references:
            self.columns.append(SCORE)
        # Where each feature column sits in the feature matrix a batch comes with.
        self._in_matrix = {n: FEATURE_NAMES.index(n) for n in self.columns if n in FEATURE_NAMES}
        self.window, self.min_rows, self.threshold = window, max(min_rows, 1), threshold
        self._counts = counts
        self._history_ms = history_ms  # the feature state's reach (FeatureEngine.history_ms)
        self._rows = np.full((window, len(self.columns)), np.nan)
        self._next = 0  # the ring buffer's next slot
        self._filled = 0
        self._last_batch = -1
        self._above: frozenset[str] = frozenset()
        self.psi: dict[str, float] = {}
        if not self.columns:
            logger.warning(
                "model %s has no drift reference (trained before drift was monitored): "
                "no PSI is computed; retrain to get one",
                card.version,
            )

    def __call__(
        self, rows: list[dict[str, Any]], batch_id: int, columns: BatchColumns | None = None
    ) -> None:
        """Take a batch's scored rows; their features and scores from `columns` where it has
        them (the job's), else from the rows themselves."""
        if not self.columns:
            return
        try:
            self._update(rows, batch_id, columns)
        except Exception:  # noqa: BLE001 - a diagnostic never fails the batch it watches
            logger.exception("drift: batch %d not measured", batch_id)

    def _update(
        self, rows: list[dict[str, Any]], batch_id: int, columns: BatchColumns | None
    ) -> None:
        # A batch replayed in this process is in the window already.
        if batch_id > self._last_batch:
            self._append(rows, columns)
            self._last_batch = batch_id
        values = self._measure() if self._filled >= self.min_rows else {}
        self.psi = values
        if self._counts is not None:
            self._counts.psi = values
        if values:
            self._warn(values, batch_id)

    def _append(self, rows: list[dict[str, Any]], columns: BatchColumns | None) -> None:
        """The rows' columns into the ring buffer; only the last `window` of a big batch."""
        rows = rows[-self.window :]
        if not rows:
            return
        first = -len(rows)  # the window's first row, counted from the batch's end
        block = np.empty((len(rows), len(self.columns)))
        for j, name in enumerate(self.columns):
            if columns is not None and name in self._in_matrix:
                block[:, j] = columns.features[first:, self._in_matrix[name]]
            elif columns is not None and name in columns.scores:
                block[:, j] = [_number(value) for value in columns.scores[name][first:]]
            else:
                block[:, j] = [_number(row.get(name)) for row in rows]
        slots = (self._next + np.arange(len(block))) % self.window
        self._rows[slots] = block
        self._next = (self._next + len(block)) % self.window
        self._filled = min(self._filled + len(block), self.window)

    def _measure(self) -> dict[str, float]:
        window = self._rows[: self._filled]
        return {
            name: round(psi(self.references[name], window[:, i]), 4)
            for i, name in enumerate(self.columns)
        }

    def _warn(self, values: dict[str, float], batch_id: int) -> None:
        """One WARNING for the columns that crossed the threshold in this batch."""
        above = frozenset(name for name, value in values.items() if value > self.threshold)
        crossed = sorted(above - self._above, key=lambda name: -values[name])
        if crossed:
            logger.warning(
                "drift: PSI above %.2g over the last %d transactions (batch %d, model %s): %s%s",
                self.threshold,
                self._filled,
                batch_id,
                self.version,
                ", ".join(f"{name} {values[name]:.3f}" for name in crossed),
                self._cold_state_note(),
            )
        back = sorted(self._above - above)
        if back:
            logger.info("drift: PSI back under %.2g for %s", self.threshold, ", ".join(back))
        self._above = above

    def _cold_state_note(self) -> str:
        """Why a job started without history drifts: its windows are not full yet."""
        reach = self._history_ms() if self._history_ms is not None else None
        if reach is None or reach >= LONGEST_LOOKBACK:
            return ""
        return (
            f" (the feature state reaches back {reach / DAY:.1f} days of event time, the longest"
            f" windows {LONGEST_LOOKBACK // DAY}: expected until it fills;"
            " `--bootstrap-from` starts a job warm)"
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The metric names, without values: registering never waits for a batch."""
        yield from self._families({})

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families(self.psi)

    def _families(self, values: dict[str, float]) -> Iterator[GaugeMetricFamily]:
        features = GaugeMetricFamily(
            "fraud_feature_psi",
            f"PSI of each feature over the last {self.window} scored transactions vs training",
            labels=["feature"],
        )
        score = GaugeMetricFamily(
            "fraud_score_psi",
            f"PSI of the fraud score over the last {self.window} scored transactions vs the "
            "model's test split",
        )
        for name, value in values.items():
            if name == SCORE:
                score.add_metric([], value)
            else:
                features.add_metric([name], value)
        yield features
        yield score


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)
