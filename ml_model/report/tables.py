"""The report's tables as rows of text: the model card, and metrics of model vs baseline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_model.artifacts import ModelCard
    from ml_model.report.data import RunData

Row = tuple[str, ...]


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def short_time(text: str) -> str:
    """An ISO time as '2026-01-03 00:05 UTC' (to the minute); other text as it is."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def window_text(window: dict[str, str]) -> str:
    """A card's {start, end} window as 'start to end', to the minute."""
    return f"{short_time(window.get('start', '?'))} to {short_time(window.get('end', '?'))}"


def card_rows(card: ModelCard) -> list[Row]:
    """(field, value) for the model card's identity, threshold, data and libraries."""
    libraries = ", ".join(f"{lib} {ver}" for lib, ver in sorted(card.library_versions.items()))
    rows: list[Row] = [
        ("version", card.version),
        ("created at", card.created_at),
        ("model type", card.model_type),
        ("alert threshold", f"{card.threshold:.6g}"),
        ("threshold policy", card.threshold_policy),
        ("review threshold", f"{card.review_threshold:.6g}"),
        ("baseline rule", str(card.baseline_metrics.get("rule", "n/a"))),
        ("training window", window_text(card.training_window)),
        ("test window", window_text(card.test_window)),
    ]
    validation = card.metrics.get("validation_period")
    if isinstance(validation, dict):
        rows.append(("validation window", window_text(validation)))
    rows += [
        ("data hash", card.data_hash),
        ("library versions", libraries or "not recorded"),
        (f"features ({len(card.feature_names)})", ", ".join(card.feature_names)),
    ]
    return rows


_METRICS: tuple[tuple[str, str], ...] = (
    ("roc_auc", "ROC AUC"),
    ("average_precision", "average precision"),
    ("precision_at_threshold", "precision at threshold"),
    ("recall_at_threshold", "recall at threshold"),
    ("card_precision_at_k", "card precision@k (daily mean)"),
    ("card_precision_at_k_max", "card precision@k, best possible"),
    ("alerts", "alerts"),
    ("alert_rate", "alert rate"),
    ("frauds", "frauds"),
    ("transactions", "transactions"),
    ("threshold", "threshold"),
)


def metric_rows(model: dict[str, Any], baseline: dict[str, Any]) -> list[Row]:
    """(metric, model, baseline) for the headline metrics both dicts hold."""
    rows: list[Row] = []
    for key, label in _METRICS:
        if key in model or key in baseline:
            if key == "card_precision_at_k" and "top_k" in model:
                label = f"card precision@{model['top_k']} (daily mean)"
            rows.append((label, _num(model.get(key)), _num(baseline.get(key))))
    return rows


def run_rows(run: RunData) -> list[Row]:
    """(what, value) for a pipeline run: rows per lake table, alerts, batches, sources."""
    rows: list[Row] = [("run", run.run_id)]
    rows += [(f"lake rows: {table}", f"{count:,}") for table, count in run.lake_rows.items()]
    rows.append(("alerts", f"{len(run.alert_event_times):,}"))
    rows.append(("micro-batches recorded", f"{len(run.progress):,}"))
    if run.progress:
        rows.append(("events read", f"{sum(p.rows_in for p in run.progress):,}"))
    rows += [(f"source: {what}", where) for what, where in run.sources.items()]
    return rows
