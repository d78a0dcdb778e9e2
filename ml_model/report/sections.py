"""The report's figure sections: ReportData -> [Section], each a PNG or a note saying why not.

Section ids (`fig-...`) are stable: the page anchors and the tests find figures by them. A
training report has only the evaluation sections; the run-only ones need a RunData, and the
drift section a run whose batch records hold PSI values (the job's drift monitor).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ml_model.drift import PSI_ALERT, SCORE
from ml_model.report import figures

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ml_model.report.data import Evaluation, ReportData, RunData

EVALUATION_IDS = ("fig-pr-curve", "fig-roc-curve", "fig-score-histogram", "fig-scenario-recall")
RUN_IDS = (
    "fig-alerts-per-minute",
    "fig-batch-throughput",
    "fig-batch-duration",
    "fig-latency",
    "fig-dead-letters",
)
CONSOLE_ID = "fig-console"
DRIFT_ID = "fig-drift"  # a run's, only when its batch records hold PSI values


@dataclass(frozen=True)
class Section:
    """One figure of the page: its PNG, or (no data to draw) a note in its place."""

    id: str
    title: str
    caption: str
    png: bytes | None = None
    note: str | None = None
    alt: str = ""

    @property
    def data_uri(self) -> str:
        assert self.png is not None
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _figure(id_: str, title: str, caption: str, figure: Figure) -> Section:
    try:
        png = figures.to_png(figure)
    finally:
        figure.clear()
    return Section(id_, title, caption, png=png, alt=title)


def evaluation_sections(evaluation: Evaluation) -> list[Section]:
    """PR and ROC against the baseline, score histograms by label, recall per scenario."""
    frame = evaluation.frame
    labels, scores = frame["is_fraud"].to_numpy(bool), frame["score"].to_numpy(float)
    baseline = frame["baseline_score"].to_numpy(float)
    source = evaluation.source
    sections: list[Section] = []
    if labels.any() and not labels.all():
        curves = (labels, scores, baseline, evaluation.threshold, evaluation.baseline_threshold)
        sections += [
            _figure(
                "fig-pr-curve", "Precision-recall: model vs amount-only baseline",
                f"On {source}. AP is the area under each curve; the baseline scores with the "
                "amount alone. The dashed line is the fraud share (a random ranking).",
                figures.pr_curve(*curves),
            ),
            _figure(
                "fig-roc-curve", "ROC: model vs amount-only baseline",
                f"On {source}. True-positive rate (recall) against false-positive rate.",
                figures.roc_curve(*curves),
            ),
        ]  # fmt: skip
    else:
        note = f"Only one class in {source}: no curve ranks anything."
        sections += [
            Section("fig-pr-curve", "Precision-recall", "", note=note),
            Section("fig-roc-curve", "ROC", "", note=note),
        ]
    sections.append(
        _figure(
            "fig-score-histogram", "Model scores by label",
            f"On {source}. Counts on a log scale: fraud is rare.",
            figures.score_histogram(
                labels, scores, evaluation.threshold, evaluation.review_threshold
            ),
        )
    )  # fmt: skip
    per_scenario = evaluation.metrics["per_scenario_recall"]
    if per_scenario:
        sections.append(
            _figure(
                "fig-scenario-recall", "Recall per fraud scenario",
                f"On {source}, model at threshold {evaluation.threshold:.4f}, baseline at "
                f"amount >= {evaluation.baseline_threshold:.2f}.",
                figures.scenario_recall(
                    per_scenario, evaluation.baseline_metrics["per_scenario_recall"]
                ),
            )
        )  # fmt: skip
    else:
        sections.append(
            Section("fig-scenario-recall", "Recall per fraud scenario", "", note="No fraud.")
        )
    return sections


def run_sections(run: RunData) -> list[Section]:
    """Alerts per minute, the job's batches, alert latency, dead letters; drift when measured."""
    sections: list[Section] = []
    if run.alert_event_times:
        sections.append(
            _figure(
                "fig-alerts-per-minute", "Alerts per minute",
                "Alerts from the alerts table, by the event time of the alerted transaction.",
                figures.alerts_per_minute(run.alert_event_times),
            )
        )  # fmt: skip
    else:
        sections.append(
            Section("fig-alerts-per-minute", "Alerts per minute", "", note="No alerts.")
        )
    progress = run.progress
    if progress:
        ids = [p.batch_id for p in progress]
        sections += [
            _figure(
                "fig-batch-throughput", "Events per second, per batch",
                "Records read by each micro-batch over the time the job's sink spent on it "
                "(collect, features, scoring, alerts, Delta commits, state).",
                figures.batch_throughput(ids, [p.events_per_s for p in progress]),
            ),
            _figure(
                "fig-batch-duration", "Batch duration over time",
                "Each batch's duration against the time it was committed.",
                figures.batch_duration(
                    [p.committed_at for p in progress], [p.duration_ms for p in progress], ids
                ),
            ),
        ]  # fmt: skip
    else:
        note = "The job recorded no batches (no progress records beside its checkpoint)."
        sections += [
            Section("fig-batch-throughput", "Events per second, per batch", "", note=note),
            Section("fig-batch-duration", "Batch duration over time", "", note=note),
        ]
    if run.latencies_ms:
        sections.append(
            _figure(
                "fig-latency", "Alert latency",
                f"Per alert: {run.latency_basis}. When the job starts after the events were "
                "sent (as in `make demo`), this includes its start-up and the backlog.",
                figures.latency_histogram(run.latencies_ms, run.latency_basis),
            )
        )  # fmt: skip
    else:
        sections.append(Section("fig-latency", "Alert latency", "", note="No alerts."))
    if run.dead_letters:
        sections.append(
            _figure(
                "fig-dead-letters", "Dead letters by reason",
                "Records the job could not accept, from the lake's dead_letters table.",
                figures.dead_letters(run.dead_letters),
            )
        )  # fmt: skip
    else:
        sections.append(
            Section("fig-dead-letters", "Dead letters by reason", "", note="No dead letters.")
        )
    if any(p.psi for p in progress):
        sections.append(drift_section(run))
    return sections


def drift_section(run: RunData) -> Section:
    """PSI of the features and the score against the model card's reference, per batch."""
    measured = [p for p in run.progress if p.psi]
    return _figure(
        DRIFT_ID, "Drift: PSI of features and score",
        "Population stability index of each feature against the training split, and of the "
        "score against the test split (the model card's reference bins), over the job's window "
        f"of recent transactions, as of each batch. Above {PSI_ALERT:g} (dashed) a distribution "
        "is usually taken to have shifted; the job logs a warning when a column crosses it.",
        figures.drift_psi(
            [p.batch_id for p in measured], [p.psi for p in measured], PSI_ALERT, SCORE
        ),
    )  # fmt: skip


def console_section(png: bytes) -> Section:
    """The alert console's queue, as the screenshot saved in the run folder."""
    return Section(
        CONSOLE_ID, "Alert console: the queue",
        "A screenshot of the alert console's queue taken at the end of the run.",
        png=png, alt="alert console queue screenshot",
    )  # fmt: skip


def all_sections(data: ReportData, console_png: bytes | None = None) -> list[Section]:
    """Every section of the page, in page order."""
    sections: list[Section] = []
    if data.evaluation is not None:
        sections += evaluation_sections(data.evaluation)
    if data.run is not None:
        sections += run_sections(data.run)
    if console_png is not None:
        sections.append(console_section(console_png))
    return sections
