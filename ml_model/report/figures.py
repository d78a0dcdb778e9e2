"""The report's figures: plain data in, a matplotlib Figure out.

Each figure is a `matplotlib.figure.Figure` with its own Agg canvas: nothing goes through
pyplot, so no global figure state is created or leaked, and no display is needed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, MultipleLocator
from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

MODEL_COLOUR, BASELINE_COLOUR = "C0", "C1"
GENUINE_COLOUR, FRAUD_COLOUR = "C2", "C3"
# Bin widths (minutes) for alerts per minute: the smallest that leaves at most MAX_BINS bins.
BIN_MINUTES = (1, 2, 5, 10, 15, 30, 60, 120, 240, 360, 720, 1440)
MAX_BINS = 60

ArrayLike = npt.ArrayLike


def new_figure(width: float = 7.0, height: float = 4.0) -> Figure:
    """A Figure on an Agg canvas, laid out so labels are never clipped."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def to_png(figure: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _operating_point(
    labels: npt.NDArray[np.bool_], scores: npt.NDArray[np.float64], threshold: float
) -> tuple[float, float, float]:
    """(precision, recall, false-positive rate) of `score >= threshold`."""
    alerted = scores >= threshold
    caught = int((alerted & labels).sum())
    precision = caught / int(alerted.sum()) if alerted.any() else math.nan
    recall = caught / int(labels.sum()) if labels.any() else math.nan
    genuine = int((~labels).sum())
    fpr = int((alerted & ~labels).sum()) / genuine if genuine else math.nan
    return precision, recall, fpr


def _arrays(
    labels: ArrayLike, scores: ArrayLike, baseline_scores: ArrayLike
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    return (
        np.asarray(labels, dtype=bool),
        np.asarray(scores, dtype=np.float64),
        np.asarray(baseline_scores, dtype=np.float64),
    )


def pr_curve(
    labels: ArrayLike,
    scores: ArrayLike,
    baseline_scores: ArrayLike,
    threshold: float,
    baseline_threshold: float,
) -> Figure:
    """Precision-recall curves of the model and the amount-only baseline, with their
    operating points (the alert thresholds) marked."""
    y, model, baseline = _arrays(labels, scores, baseline_scores)
    figure = new_figure(6.5, 5.0)
    ax = figure.add_subplot()
    # Colours come from the cycle (model C0, baseline C1): colour keywords differ between
    # scikit-learn releases (`curve_kwargs` since 1.7, plain keywords deprecated).
    PrecisionRecallDisplay.from_predictions(y, model, name="model", ax=ax, plot_chance_level=True)
    PrecisionRecallDisplay.from_predictions(y, baseline, name="amount-only baseline", ax=ax)
    for values, cut, colour in (
        (model, threshold, MODEL_COLOUR),
        (baseline, baseline_threshold, BASELINE_COLOUR),
    ):
        precision, recall, _ = _operating_point(y, values, cut)
        if not math.isnan(precision):
            ax.plot(recall, precision, "o", color=colour, markersize=8, markeredgecolor="black")
    ax.set_title("Precision-recall (dots: alert thresholds)")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.legend(loc="best", fontsize="small")
    return figure


def roc_curve(
    labels: ArrayLike,
    scores: ArrayLike,
    baseline_scores: ArrayLike,
    threshold: float,
    baseline_threshold: float,
) -> Figure:
    """ROC curves of the model and the baseline, operating points marked; the false-positive
    axis is logarithmic, since alerts live at the far left of a linear one."""
    y, model, baseline = _arrays(labels, scores, baseline_scores)
    figure = new_figure(6.5, 5.0)
    ax = figure.add_subplot()
    RocCurveDisplay.from_predictions(y, model, name="model", ax=ax)
    RocCurveDisplay.from_predictions(y, baseline, name="amount-only baseline", ax=ax)
    lowest = 1 / max(int((~y).sum()), 2)
    chance = np.logspace(math.log10(lowest), 0, 100)  # the diagonal, curved by the log axis
    ax.plot(chance, chance, "k--", label="Chance level (AUC = 0.5)")
    for values, cut, colour in (
        (model, threshold, MODEL_COLOUR),
        (baseline, baseline_threshold, BASELINE_COLOUR),
    ):
        _, recall, fpr = _operating_point(y, values, cut)
        if fpr > 0:
            ax.plot(fpr, recall, "o", color=colour, markersize=8, markeredgecolor="black")
    ax.set_xscale("log")
    ax.set_aspect("auto")  # the display makes it square, which a log axis squashes
    ax.set_xlim(lowest, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false-positive rate (log scale)")
    ax.set_ylabel("true-positive rate (recall)")
    ax.set_title("ROC (dots: alert thresholds)")
    ax.legend(loc="lower right", fontsize="small")
    return figure


def score_histogram(
    labels: ArrayLike, scores: ArrayLike, threshold: float, review_threshold: float | None = None
) -> Figure:
    """The model's scores of genuine and fraudulent transactions (log counts), thresholds drawn."""
    y = np.asarray(labels, dtype=bool)
    values = np.asarray(scores, dtype=np.float64)
    figure = new_figure()
    ax = figure.add_subplot()
    top = max(1.0, float(values.max(initial=1.0)))
    bins = np.linspace(0.0, top, 51).tolist()
    for mask, name, colour in ((~y, "genuine", GENUINE_COLOUR), (y, "fraud", FRAUD_COLOUR)):
        ax.hist(
            values[mask], bins=bins, histtype="stepfilled", alpha=0.45, color=colour,
            edgecolor=colour, label=f"{name} ({int(mask.sum()):,})",
        )  # fmt: skip
    ax.axvline(threshold, color="black", linestyle="--", label=f"alert threshold {threshold:.3f}")
    if review_threshold is not None and review_threshold < threshold:
        ax.axvline(
            review_threshold, color="grey", linestyle=":",
            label=f"review threshold {review_threshold:.3f}",
        )  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("model score")
    ax.set_ylabel("transactions (log scale)")
    ax.set_title("Scores by label")
    ax.legend(fontsize="small")
    return figure


def scenario_recall(
    model: Mapping[str, Mapping[str, float]], baseline: Mapping[str, Mapping[str, float]]
) -> Figure:
    """Recall per fraud scenario at each side's threshold (`per_scenario_recall` of evaluate),
    each model bar labelled with detected / frauds."""
    scenarios = sorted(model.keys() | baseline.keys())
    figure = new_figure(7.0, 0.9 + 0.55 * max(len(scenarios), 1))
    ax = figure.add_subplot()
    positions = np.arange(len(scenarios))
    height = 0.38
    for offset, entries, name, colour in (
        (-height / 2, model, "model", MODEL_COLOUR),
        (height / 2, baseline, "amount-only baseline", BASELINE_COLOUR),
    ):
        recalls = [float(entries.get(s, {}).get("recall", 0.0)) for s in scenarios]
        bars = ax.barh(positions + offset, recalls, height, color=colour, label=name)
        if entries is model:
            labels = [
                f"{int(entries[s]['detected'])}/{int(entries[s]['frauds'])}" if s in entries else ""
                for s in scenarios
            ]
            ax.bar_label(bars, labels=labels, padding=3, fontsize="small")
    ax.set_yticks(positions, scenarios)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("recall at the alert threshold (labels: detected / frauds)")
    ax.set_title("Recall per fraud scenario")
    ax.legend(loc="lower right", fontsize="small")
    return figure


def bin_minutes(start: pd.Timestamp, end: pd.Timestamp) -> int:
    """The smallest of BIN_MINUTES that covers [start, end] in at most MAX_BINS bins."""
    span = (end - start).total_seconds() / 60
    for minutes in BIN_MINUTES:
        if span / minutes <= MAX_BINS:
            return minutes
    return BIN_MINUTES[-1]


def alerts_per_minute(event_times: Sequence[datetime]) -> Figure:
    """Alerts per minute over the alerted transactions' event time; wide spans are binned
    (the rate is the bin's count over its minutes)."""
    times = pd.to_datetime(pd.Series(list(event_times)), utc=True)
    minutes = bin_minutes(times.min(), times.max())
    counts = times.dt.floor(f"{minutes}min").value_counts().sort_index()
    full = pd.date_range(counts.index.min(), counts.index.max(), freq=f"{minutes}min")
    rate = counts.reindex(full, fill_value=0) / minutes
    figure = new_figure(7.5, 3.5)
    ax = figure.add_subplot()
    width = pd.Timedelta(minutes=minutes) * 0.9
    ax.bar(rate.index, rate.to_numpy(), width=width, align="edge", color=FRAUD_COLOUR)
    ax.set_xlabel("event time (UTC)" + (f", {minutes}-minute bins" if minutes > 1 else ""))
    ax.set_ylabel("alerts per minute")
    ax.set_title(f"Alerts per minute ({len(times):,} alerts)")
    figure.autofmt_xdate()
    return figure


def batch_throughput(batch_ids: Sequence[int], events_per_s: Sequence[float]) -> Figure:
    """Events per second of each micro-batch."""
    figure = new_figure(7.0, 3.5)
    ax = figure.add_subplot()
    ax.bar(list(batch_ids), events_per_s, color=MODEL_COLOUR, width=0.8)
    ax.xaxis.set_major_locator(MultipleLocator(max(len(batch_ids) // 15, 1)))
    ax.set_xlabel("batch id")
    ax.set_ylabel("events / s")
    ax.set_title("Throughput per batch")
    return figure


def batch_duration(
    committed_at: Sequence[datetime | str], durations_ms: Sequence[int], batch_ids: Sequence[int]
) -> Figure:
    """Each batch's duration against when it was committed, in seconds since the first batch
    started (its commit time less its duration); batch ids annotated."""
    times = pd.to_datetime(pd.Series(list(committed_at)), utc=True)
    seconds = np.asarray(durations_ms, dtype=np.float64) / 1000
    start = times.iloc[0] - pd.Timedelta(seconds=float(seconds[0]))
    elapsed = (times - start).dt.total_seconds().to_numpy()
    figure = new_figure(7.0, 3.5)
    ax = figure.add_subplot()
    ax.plot(elapsed, seconds, "o-", color=MODEL_COLOUR)
    if len(batch_ids) <= 30:
        for moment, value, batch in zip(elapsed, seconds, batch_ids, strict=True):
            ax.annotate(str(batch), (moment, value), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize="small")  # fmt: skip
    ax.set_xlim(0, max(float(elapsed.max()) * 1.05, 1.0))
    ax.set_ylim(0, max(float(seconds.max(initial=0.0)) * 1.2, 1.0))
    ax.set_xlabel(f"committed at: seconds since the first batch started ({start:%H:%M:%S} UTC)")
    ax.set_ylabel("batch duration (s)")
    ax.set_title("Batch duration over time (labels: batch id)")
    return figure


def latency_histogram(latencies_ms: Sequence[int], basis: str) -> Figure:
    """Alert latency, with p50 and p95 marked; `basis` says from what to what."""
    values = np.asarray(latencies_ms, dtype=np.float64) / 1000
    figure = new_figure(7.0, 3.5)
    ax = figure.add_subplot()
    ax.hist(values, bins=min(40, max(5, len(values) // 2)), color=MODEL_COLOUR, alpha=0.8)
    for quantile, style in ((50, "--"), (95, ":")):
        value = float(np.percentile(values, quantile))
        ax.axvline(value, color="black", linestyle=style, label=f"p{quantile} {value:.2f} s")
    ax.set_xlabel(f"seconds, {basis}")
    ax.set_ylabel("alerts")
    ax.set_title(f"Alert latency ({len(values):,} alerts)")
    ax.legend(fontsize="small")
    return figure


def dead_letters(counts: Mapping[str, int]) -> Figure:
    """Dead letters per reason, most frequent first."""
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    figure = new_figure(7.0, 0.9 + 0.4 * max(len(ordered), 1))
    ax = figure.add_subplot()
    bars = ax.barh([reason for reason, _ in ordered], [n for _, n in ordered], color="C7")
    ax.bar_label(bars, padding=3, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("records")
    ax.set_title(f"Dead letters by reason ({sum(counts.values()):,} records)")
    ax.margins(x=0.12)
    return figure


def drift_psi(
    batch_ids: Sequence[int],
    psi: Sequence[Mapping[str, float]],
    threshold: float,
    score: str,
    lines: int = 5,
    bars: int = 12,
) -> Figure:
    """PSI over the run: left, per batch, of the `lines` features that peaked highest and of the
    score (`score` names it); right, each column's peak, highest `bars` first. The dashed line
    is `threshold`, where a shift is usually called significant."""
    names = sorted({name for values in psi for name in values})
    peaks = {name: max(values.get(name, 0.0) for values in psi) for name in names}
    ranked = sorted(names, key=lambda name: (-peaks[name], name))
    figure = new_figure(10.0, 4.2)
    over_time, by_column = figure.subplots(1, 2, width_ratios=(3, 2))
    shown = [name for name in ranked if name != score][:lines] + ([score] if score in names else [])
    for index, name in enumerate(shown):
        values = [entry.get(name, math.nan) for entry in psi]
        style = {"color": "black", "linewidth": 2.0} if name == score else {"color": f"C{index}"}
        over_time.plot(list(batch_ids), values, "o-", markersize=3, label=name, **style)
    top = max([threshold * 1.25, *peaks.values()]) * 1.1
    for ax in (over_time, by_column):
        line = ax.axhline if ax is over_time else ax.axvline
        line(threshold, color=FRAUD_COLOUR, linestyle="--", label=f"PSI {threshold:g}")
    over_time.set_ylim(0, top)
    over_time.xaxis.set_major_locator(MaxNLocator(integer=True))
    over_time.set_xlabel("batch id")
    over_time.set_ylabel("PSI over the recent window")
    over_time.set_title("PSI per batch (top features, score in black)")
    over_time.legend(fontsize="x-small", loc="upper left")
    ranked = ranked[:bars]
    colours = [
        "black" if name == score else FRAUD_COLOUR if peaks[name] > threshold else MODEL_COLOUR
        for name in ranked
    ]
    drawn = by_column.barh(ranked, [peaks[name] for name in ranked], color=colours)
    by_column.bar_label(drawn, fmt="%.2f", padding=2, fontsize="x-small")
    by_column.invert_yaxis()
    by_column.set_xlim(0, top * 1.15)
    by_column.tick_params(axis="y", labelsize="small")
    by_column.set_xlabel("highest PSI of the run")
    by_column.set_title(f"Top {len(ranked)} by PSI")
    return figure
