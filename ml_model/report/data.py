"""What a report shows, as typed values: the model card, an evaluation set, and a run's records.

A training report has an evaluation (the test split) and no run; a run report (the demo) has
both, its evaluation being the scored transactions of the lake. The figures and the page are
built from these values only, so both kinds go through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from ml_model.evaluation import evaluate
from ml_model.report.tables import window_text

if TYPE_CHECKING:
    from ml_model.artifacts import ModelCard
    from processor.batch_progress import BatchProgress

ReportKind = Literal["training", "run"]

# The columns of Evaluation.frame (one row per scored transaction).
EVALUATION_COLUMNS = ("score", "baseline_score", "is_fraud", "fraud_scenario", "card", "event_time")


@dataclass(frozen=True)
class Evaluation:
    """Scored, labelled transactions: the model's score and the amount-only baseline's.

    `threshold` is the model's alert threshold (`review_threshold` its review one), and
    `baseline_threshold` the baseline rule's (`amount >= t`, chosen on the validation period);
    both metrics dicts are those of `ml_model.evaluation.evaluate`.
    """

    source: str
    frame: pd.DataFrame
    threshold: float
    baseline_threshold: float
    metrics: dict[str, Any]
    baseline_metrics: dict[str, Any]
    review_threshold: float | None = None


@dataclass(frozen=True)
class RunData:
    """What one pipeline run left behind: alerts, the job's batches, dead letters, lake rows.

    `alert_event_times` are the alerted transactions' event times; `latencies_ms` are per
    alert, from the record's arrival in Kinesis to the alert being written (`latency_basis`
    says so, or names the item field used instead).
    """

    run_id: str
    alert_event_times: list[datetime] = field(default_factory=list)
    latencies_ms: list[int] = field(default_factory=list)
    latency_basis: str = "Kinesis arrival -> alert written"
    progress: list[BatchProgress] = field(default_factory=list)
    dead_letters: dict[str, int] = field(default_factory=dict)
    lake_rows: dict[str, int] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # what was read from where


@dataclass(frozen=True)
class ReportData:
    """Everything one report page shows."""

    kind: ReportKind
    title: str
    card: ModelCard
    evaluation: Evaluation | None
    run: RunData | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def evaluation_of(
    frame: pd.DataFrame,
    threshold: float,
    baseline_threshold: float,
    source: str,
    review_threshold: float | None = None,
) -> Evaluation:
    """An Evaluation of a frame with EVALUATION_COLUMNS; metrics for the model and baseline.

    Raises ModelError (from `evaluate`) on an empty frame or one that breaks its contract.
    """
    frame = frame.loc[:, list(EVALUATION_COLUMNS)].reset_index(drop=True)
    metrics = evaluate(frame, threshold, period=source)
    baseline = evaluate(
        frame.assign(score=frame["baseline_score"]), baseline_threshold, period=source
    )
    return Evaluation(
        source, frame, threshold, baseline_threshold, metrics, baseline, review_threshold
    )


def training_report_data(card: ModelCard, test: pd.DataFrame) -> ReportData:
    """The report of a training run: its card and the test split it was measured on.

    `test` holds EVALUATION_COLUMNS: the model's test scores, and the amount the baseline
    scores with as `baseline_score`.
    """
    evaluation = evaluation_of(
        test,
        card.threshold,
        float(card.baseline_metrics["threshold"]),
        f"the test split, {window_text(card.test_window)}",
        card.review_threshold,
    )
    return ReportData("training", f"Training report: model {card.version}", card, evaluation)
