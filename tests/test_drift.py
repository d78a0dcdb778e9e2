"""Drift: reference bins in the model card, PSI against them, the job's per-batch monitor.

Fast and without Spark: the monitor is a RowSink and is fed rows directly, as the LakeWriter
does after the alerts; its gauges are read from the ProgressMetrics registry's exposition, its
values from the batch records the run report reads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from prometheus_client import generate_latest

from config.settings import Settings
from ml_model.artifacts import ModelCard, read_card
from ml_model.drift import (
    EPSILON,
    PSI_ALERT,
    SCORE,
    Bins,
    psi,
    reference_bins,
    reference_distributions,
)
from ml_model.features import FEATURE_NAMES
from ml_model.report import DRIFT_ID, RUN_IDS, ReportData, RunData, render_html
from processor.alerts import AlertWriter
from processor.batch_progress import BatchProgress, read_progress, record_batch
from processor.checkpoint_files import CheckpointFiles
from processor.drift import DriftMonitor
from processor.job import scoring_writer
from processor.metrics import ProgressMetrics
from processor.scoring import frame_scorer
from processor.sinks import BatchColumns, BatchCounts
from tests.test_report import assert_valid_png, figures_of

FEATURES = ["tx_amount", "card_tx_count_1h", "card_seconds_since_prev"]


def sample(rng: np.random.Generator, n: int, amount_factor: float = 1.0) -> pd.DataFrame:
    """Transactions' features and scores: log-normal amounts, Poisson counts, some nulls."""
    gaps = rng.exponential(3_600.0, n)
    gaps[rng.random(n) < 0.1] = np.nan  # a card's first transaction
    return pd.DataFrame(
        {
            "tx_amount": rng.lognormal(3.5, 1.0, n) * amount_factor,
            "card_tx_count_1h": rng.poisson(0.8, n).astype(float),
            "card_seconds_since_prev": gaps,
            SCORE: rng.beta(0.5, 20.0, n),
        }
    )


def rows_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Scored transaction rows as the sink sees them: nulls are None."""
    return [
        {name: (None if pd.isna(value) else value) for name, value in row.items()}
        for row in frame.to_dict("records")
    ]


def card_with_reference(reference: dict[str, dict[str, Any]]) -> ModelCard:
    return ModelCard(
        version="test-drift",
        created_at="2026-01-01T00:00:00+00:00",
        model_type="test",
        feature_names=FEATURES,
        threshold=0.5,
        threshold_policy="alert_rate=0.01",
        review_threshold=0.25,
        training_window={"start": "2026-01-01T00:00:00+00:00", "end": "2026-01-08T00:00:00+00:00"},
        test_window={"start": "2026-01-10T00:00:00+00:00", "end": "2026-01-12T00:00:00+00:00"},
        data_hash="sha256:test",
        drift_reference=reference,
    )


@pytest.fixture
def card() -> ModelCard:
    training = sample(np.random.default_rng(1), 20_000)
    return card_with_reference(reference_distributions(training[FEATURES], training[SCORE]))


# ---------------------------------------------------------------------------------- bins and PSI
def test_psi_of_the_same_distribution_is_about_zero() -> None:
    rng = np.random.default_rng(0)
    values = rng.lognormal(3.5, 1.0, 10_000)
    reference = reference_bins(values)
    assert len(reference.cuts) == 9 and len(reference.shares) == 10
    assert all(share == pytest.approx(0.1, abs=0.001) for share in reference.shares)
    assert psi(reference, values) == pytest.approx(0.0, abs=1e-9)
    assert psi(reference, rng.lognormal(3.5, 1.0, 5_000)) < 0.01  # another sample of it
    assert psi(reference, values * 3) > 1.0  # the same amounts, tripled


def test_flags_and_counts_get_the_bins_their_values_allow() -> None:
    flags = np.array([0.0] * 70 + [1.0] * 30)
    reference = reference_bins(flags)
    assert reference.cuts == (0.0, 1.0)
    assert reference.shares == pytest.approx((0.7, 0.3, 0.0))
    assert psi(reference, flags) == pytest.approx(0.0, abs=1e-12)
    assert psi(reference, np.array([0.0] * 30 + [1.0] * 70)) > PSI_ALERT


def test_nulls_are_a_bin_of_their_own() -> None:
    values = [1.0, 2.0, 3.0, None, 5.0, 6.0, 7.0, 8.0, None, 10.0]
    reference = reference_bins(values)
    assert reference.null_share == pytest.approx(0.2)
    assert sum(reference.shares) + reference.null_share == pytest.approx(1.0)
    assert psi(reference, values) == pytest.approx(0.0, abs=1e-12)
    # The same non-null values, but half the rows null: a shift of the null bin alone.
    assert psi(reference, [*values, *[None] * 10]) > PSI_ALERT
    # Nothing in a bin the reference fills: EPSILON stands in for the empty share.
    only_nulls = psi(reference, [None, None])
    assert np.isfinite(only_nulls) and only_nulls > -np.log(EPSILON) / 2


def test_bins_round_trip_through_the_cards_json() -> None:
    reference = reference_bins(pd.Series([1.5, None, 3.0, 4.5], dtype="Float64"))
    assert Bins.from_dict(json.loads(json.dumps(reference.as_dict()))) == reference
    with pytest.raises(ValueError, match="PSI of no values"):
        psi(reference, [])


def test_a_card_written_before_drift_loads_without_a_reference(card: ModelCard) -> None:
    data = dataclasses.asdict(card)
    del data["drift_reference"]
    old = ModelCard.from_json(json.dumps(data), "old card")
    assert old.drift_reference == {}
    assert ModelCard.from_json(card.to_json(), "card") == card


# ---------------------------------------------------------------------------------- the monitor
def feed(monitor: DriftMonitor, frames: list[pd.DataFrame], first_batch: int = 0) -> int:
    for batch_id, frame in enumerate(frames, start=first_batch):
        monitor(rows_of(frame), batch_id)
    return first_batch + len(frames)


def test_a_shifted_feature_rises_above_the_line_and_the_others_stay_low(card: ModelCard) -> None:
    rng = np.random.default_rng(2)
    counts = BatchCounts()
    monitor = DriftMonitor(card, counts)
    assert monitor.columns == [*FEATURES, SCORE]
    monitor(rows_of(sample(rng, 400)), 0)
    assert monitor.psi == {} and counts.psi == {}  # under MIN_ROWS: nothing measured yet
    feed(monitor, [sample(rng, 1_000) for _ in range(5)], first_batch=1)
    assert max(monitor.psi.values()) < 0.05  # the training distribution, sampled again
    feed(monitor, [sample(rng, 1_000, amount_factor=3.0) for _ in range(5)], first_batch=6)
    assert monitor.psi["tx_amount"] > PSI_ALERT
    for name in ("card_tx_count_1h", "card_seconds_since_prev", SCORE):
        assert monitor.psi[name] < 0.05, name
    assert counts.psi == monitor.psi  # what the batch record keeps


def test_the_window_is_bounded_and_a_replayed_batch_is_not_counted_twice(
    card: ModelCard,
) -> None:
    rng = np.random.default_rng(3)
    monitor = DriftMonitor(card, window=2_000, min_rows=500)
    monitor(rows_of(sample(rng, 600)), 0)
    monitor(rows_of(sample(rng, 600)), 0)  # the replay of batch 0
    assert monitor._filled == 600
    shifted = sample(rng, 5_000, amount_factor=3.0)
    monitor(rows_of(shifted), 1)
    assert monitor._filled == 2_000 and monitor._rows.shape == (2_000, len(FEATURES) + 1)
    # Only the newest 2,000 rows are compared.
    newest = shifted["tx_amount"].iloc[-2_000:]
    reference = Bins.from_dict(card.drift_reference["tx_amount"])
    assert monitor.psi["tx_amount"] == round(psi(reference, newest), 4)


def test_columns_from_the_sink_equal_the_same_values_read_from_rows(
    card: ModelCard,
) -> None:
    """The job's rows carry neither features nor scores: the sink passes them as columns."""
    rng = np.random.default_rng(8)
    frames = [sample(rng, 1_500), sample(rng, 2_500, amount_factor=3.0)]
    from_rows = DriftMonitor(card, window=2_000, min_rows=500)
    from_matrix = DriftMonitor(card, window=2_000, min_rows=500)
    for batch_id, frame in enumerate(frames):
        from_rows(rows_of(frame), batch_id)
        matrix = np.full((len(frame), len(FEATURE_NAMES)), np.nan)
        for name in FEATURES:
            matrix[:, FEATURE_NAMES.index(name)] = frame[name]
        scores = {SCORE: frame[SCORE].tolist()}
        from_matrix([{} for _ in range(len(frame))], batch_id, BatchColumns(matrix, scores))
    # The second batch is bigger than the window: its newest 2,000 rows, from both.
    assert np.array_equal(from_matrix._rows, from_rows._rows, equal_nan=True)
    assert from_matrix.psi == from_rows.psi and from_matrix.psi["tx_amount"] > PSI_ALERT


@pytest.mark.parametrize(("reach_days", "noted"), [(4.5, True), (40.0, False), (None, False)])
def test_a_cold_state_is_named_in_the_warning(
    card: ModelCard, caplog: pytest.LogCaptureFixture, reach_days: float | None, noted: bool
) -> None:
    rng = np.random.default_rng(5)
    reach = None if reach_days is None else int(reach_days * 86_400_000)
    monitor = DriftMonitor(card, history_ms=lambda: reach)
    caplog.set_level(logging.WARNING, logger="processor.drift")
    feed(monitor, [sample(rng, 1_000, amount_factor=3.0) for _ in range(2)])
    (warning,) = [r.getMessage() for r in caplog.records if "PSI above" in r.getMessage()]
    note = "the feature state reaches back 4.5 days of event time, the longest windows 37"
    assert (note in warning) is noted
    assert ("--bootstrap-from" in warning) is noted


def test_the_warning_fires_once_per_crossing(
    card: ModelCard, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(4)
    monitor = DriftMonitor(card)
    caplog.set_level(logging.INFO, logger="processor.drift")

    def warnings() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and "PSI above" in r.getMessage()
        ]

    batch = feed(monitor, [sample(rng, 1_000) for _ in range(5)])
    assert warnings() == []
    batch = feed(monitor, [sample(rng, 1_000, amount_factor=3.0) for _ in range(8)], batch)
    assert len(warnings()) == 1  # not once per batch above the line
    assert "tx_amount" in warnings()[0] and "card_tx_count_1h" not in warnings()[0]
    batch = feed(monitor, [sample(rng, 1_000) for _ in range(6)], batch)  # the window recovers
    assert monitor.psi["tx_amount"] < PSI_ALERT
    assert any("back under" in r.getMessage() and "tx_amount" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    feed(monitor, [sample(rng, 1_000, amount_factor=3.0) for _ in range(5)], batch)
    assert len(warnings()) == 2  # a new crossing, a new warning


def test_a_batch_it_cannot_measure_is_logged_and_never_fails(
    card: ModelCard, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(8)
    monitor = DriftMonitor(card)
    feed(monitor, [sample(rng, 1_500)])
    before = dict(monitor.psi)
    broken = rows_of(sample(rng, 10))
    broken[3]["tx_amount"] = "not a number"
    monitor(broken, 1)
    assert "drift: batch 1 not measured" in caplog.text
    assert monitor.psi == before and monitor._filled == 1_500


def test_the_gauges_appear_in_the_prometheus_text(card: ModelCard) -> None:
    monitor = DriftMonitor(card)
    listener = ProgressMetrics(BatchCounts(), 0, drift=monitor)
    text = generate_latest(listener.registry).decode()
    assert "# TYPE fraud_feature_psi gauge" in text and "# TYPE fraud_score_psi gauge" in text
    assert 'fraud_feature_psi{feature="tx_amount"}' not in text  # nothing measured yet
    rng = np.random.default_rng(5)
    feed(monitor, [sample(rng, 1_000, amount_factor=3.0) for _ in range(2)])
    text = generate_latest(listener.registry).decode()
    for name in FEATURES:
        line = next(
            x for x in text.splitlines() if x.startswith(f'fraud_feature_psi{{feature="{name}"}}')
        )
        assert float(line.split()[-1]) == pytest.approx(monitor.psi[name])
    score = next(x for x in text.splitlines() if x.startswith("fraud_score_psi "))
    assert float(score.split()[-1]) == pytest.approx(monitor.psi[SCORE])


def test_a_card_without_a_reference_measures_nothing(
    card: ModelCard, caplog: pytest.LogCaptureFixture
) -> None:
    old = dataclasses.replace(card, drift_reference={})
    counts = BatchCounts()
    monitor = DriftMonitor(old, counts)
    assert "no drift reference" in caplog.text
    monitor(rows_of(sample(np.random.default_rng(6), 2_000)), 0)
    assert monitor.psi == {} and counts.psi == {}
    assert (
        "fraud_feature_psi{"
        not in generate_latest(ProgressMetrics(BatchCounts(), 0, drift=monitor).registry).decode()
    )


def test_the_batch_record_keeps_the_psi_values(card: ModelCard, tmp_path: Path) -> None:
    files = CheckpointFiles(str(tmp_path))
    counts = BatchCounts(timings_ms={"collect": 10})
    monitor = DriftMonitor(card, counts)
    record_batch(files, 0, 10, counts)
    monitor(rows_of(sample(np.random.default_rng(7), 1_500)), 1)
    record_batch(files, 1, 1_500, counts)
    first, second = read_progress(files)
    assert first.psi == {}
    assert second.psi == monitor.psi and set(second.psi) == {*FEATURES, SCORE}


# ---------------------------------------------------------------------------------- model and job
def test_the_trained_card_has_a_reference_for_every_feature_and_the_score(
    trained_model: Path,
) -> None:
    card = read_card(str(trained_model))
    assert set(card.drift_reference) == {*FEATURE_NAMES, SCORE}
    for name, data in card.drift_reference.items():
        bins = Bins.from_dict(data)
        assert bins.rows > 0, name
        assert sum(bins.shares) + bins.null_share == pytest.approx(1.0), name
        assert list(bins.cuts) == sorted(set(bins.cuts)), name
    amounts = Bins.from_dict(card.drift_reference["tx_amount"])
    assert len(amounts.cuts) == 9 and amounts.null_share == 0.0  # continuous, never null
    assert Bins.from_dict(card.drift_reference[SCORE]).cuts[-1] <= 1.0


def test_the_job_measures_drift_after_the_alerts(settings: Settings, trained_model: Path) -> None:
    run = settings.with_overrides(model={"path": str(trained_model)})
    writer = scoring_writer(run, frame_scorer(run))
    kinds = [type(sink) for sink in writer.transaction_sinks]
    assert kinds == [AlertWriter, DriftMonitor]
    drift = cast(DriftMonitor, writer.transaction_sinks[1])
    assert drift._counts is writer.stats
    assert drift._history_ms == writer.engine.history_ms  # its cold-state note reads the engine
    assert drift.columns == [*FEATURE_NAMES, SCORE]


# ---------------------------------------------------------------------------------- the report
def progress_with(psi_values: list[dict[str, float]]) -> list[BatchProgress]:
    return [
        BatchProgress(batch_id, 1_000, 900, 1_111.1, f"2026-01-01T08:00:{batch_id:02d}.000+00:00",
                      psi=values)
        for batch_id, values in enumerate(psi_values)
    ]  # fmt: skip


def test_the_run_report_has_a_drift_section_when_psi_was_recorded(card: ModelCard) -> None:
    rising = [
        {"tx_amount": 0.02 + 0.05 * i, "card_tx_count_1h": 0.01, SCORE: 0.01 + 0.01 * i}
        for i in range(8)
    ]
    run = RunData(run_id="drifting", progress=progress_with([{}, *rising]))
    found = figures_of(render_html(ReportData("run", "drift", card, None, run)))
    assert set(found) == {*RUN_IDS, DRIFT_ID}
    assert_valid_png(found[DRIFT_ID])


def test_no_drift_section_without_psi(card: ModelCard) -> None:
    run = RunData(run_id="no-drift", progress=progress_with([{}, {}]))
    found = figures_of(render_html(ReportData("run", "no drift", card, None, run)))
    assert DRIFT_ID not in found and set(found) == set(RUN_IDS)


def _batch(batch_id: int, psi: dict[str, float]) -> BatchProgress:
    return BatchProgress(batch_id, 1_000, 500, 2_000.0, "2026-12-01T00:00:00.000+00:00", psi=psi)


def test_the_demo_summary_names_the_drift_and_why_a_cold_job_shows_it() -> None:
    from scripts.demo_summary import drift_lines

    cold = {"card_tx_count_7d": 7.9, "tx_amount": 0.01, "card_seconds_since_prev": 3.2}
    progress = [_batch(0, {}), _batch(1, {**cold, "fraud_score": 0.72}), _batch(2, {})]
    lines = drift_lines(progress)
    assert lines[0] == (
        "  drift: 2 of 3 features above PSI 0.2 against the training reference after the last "
        "batch, fraud_score 0.72 (most: card_tx_count_7d, card_seconds_since_prev)"
    )
    assert "--bootstrap-from" in lines[-1] and len(lines) == 4
    calm = drift_lines([_batch(0, {"tx_amount": 0.01, "card_tx_count_7d": 0.05})])
    assert calm == [
        "  drift: 0 of 2 features above PSI 0.2 against the training reference after the last batch"
    ]
    assert drift_lines([_batch(0, {})]) == []  # the window never filled: nothing measured
