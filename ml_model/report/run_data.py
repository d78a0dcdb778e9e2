"""Gather a pipeline run's report data after the job has ended, without Spark.

The evaluation comes from the lake's scored transactions (labels from `label_is_fraud`), read
with `deltalake`; alerts from the DynamoDB alerts table; dead letters from the lake; the job's
batches from the progress records beside its checkpoint (processor/batch_progress.py). A table
or file the run never wrote is simply empty in the result.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
from deltalake import DeltaTable

from config.aws import make_client
from config.lake import delta_uri
from config.lake import options_for as lake_options
from ml_model.artifacts import read_card
from ml_model.report.data import Evaluation, ReportData, RunData, evaluation_of
from ml_model.scorer import thresholds
from processor.batch_progress import FOLDER as PROGRESS_FOLDER
from processor.batch_progress import read_progress
from processor.checkpoint_files import CheckpointFiles

if TYPE_CHECKING:
    import boto3

    from config.settings import Settings
    from ml_model.artifacts import ModelCard

logger = logging.getLogger(__name__)

LAKE_TABLES = ("transactions", "auth_events", "labels", "dead_letters")
_TRANSACTION_COLUMNS = [
    "fraud_score", "tx_amount", "label_is_fraud", "label_fraud_scenario", "card_token",
    "event_time", "model_version",
]  # fmt: skip


def lake_uri(settings: Settings, table: str) -> str:
    """A lake table's URI for deltalake (which spells s3a:// as s3://)."""
    return delta_uri(settings.processor.lake_path, table)


def storage_options(settings: Settings) -> dict[str, str]:
    """deltalake's object-store options for the profile (empty for a local lake)."""
    return lake_options(lake_uri(settings, ""), settings.aws) or {}


def _table(settings: Settings, name: str) -> DeltaTable | None:
    uri, options = lake_uri(settings, name), storage_options(settings)
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        return None
    return DeltaTable(uri, storage_options=options)


def lake_rows(settings: Settings) -> dict[str, int]:
    """Rows per lake table (0 for one the run never wrote)."""
    counts = {}
    for name in LAKE_TABLES:
        table = _table(settings, name)
        counts[name] = 0 if table is None else table.to_pyarrow_dataset().count_rows()
    return counts


def dead_letter_counts(settings: Settings) -> dict[str, int]:
    """Dead letters per reason."""
    table = _table(settings, "dead_letters")
    if table is None:
        return {}
    reasons = table.to_pandas(columns=["reason"])["reason"].fillna("unknown")
    return {str(reason): int(n) for reason, n in reasons.value_counts().sort_index().items()}


def lake_evaluation(settings: Settings, card: ModelCard) -> Evaluation | None:
    """The scored transactions of the lake as an Evaluation, or None when there are none.

    Only rows scored by `card`'s model count; others are left out (and logged). The threshold
    is the one the job applied (the card's, or the profile's override); the baseline's is the
    card's amount rule, chosen on the validation period.
    """
    version = card.version
    table = _table(settings, "transactions")
    if table is None or "fraud_score" not in table.schema().to_arrow().names:
        return None
    rows = table.to_pandas(columns=_TRANSACTION_COLUMNS)
    rows = rows[rows["fraud_score"].notna()]
    others = int((rows["model_version"] != version).sum())
    if others:
        logger.warning("%d transactions scored by other models than %s: left out", others, version)
        rows = rows[rows["model_version"] == version]
    if rows.empty:
        return None
    frame = pd.DataFrame(
        {
            "score": rows["fraud_score"].astype(float),
            "baseline_score": rows["tx_amount"].astype(float),
            "is_fraud": rows["label_is_fraud"].fillna(False).astype(bool),
            "fraud_scenario": rows["label_fraud_scenario"],
            "card": rows["card_token"],
            "event_time": rows["event_time"],
        }
    )
    alert, review = thresholds(card, settings.model.threshold, settings.model.review_band)
    source = (
        f"the lake's scored transactions ({len(frame):,} in {lake_uri(settings, 'transactions')})"
    )
    baseline_threshold = float(card.baseline_metrics["threshold"])
    return evaluation_of(frame, alert, baseline_threshold, source, review)


def read_alerts(settings: Settings, session: boto3.Session | None = None) -> list[dict[str, Any]]:
    """Every item of the alerts table, in DynamoDB's typed JSON (a demo's table is small)."""
    client = make_client("dynamodb", settings.aws, session)
    pages = client.get_paginator("scan").paginate(TableName=settings.dynamodb.alerts_table)
    return [item for page in pages for item in page["Items"]]


def alert_figures(items: list[dict[str, Any]]) -> tuple[list[datetime], list[int], str]:
    """(event times, latencies in ms, what the latency measures) of the alert items.

    Latency is taken from Kinesis arrival to the alert (`arrival_to_alert_ms`): a replayed or
    generated stream's event times can be days old, which would measure the data, not the
    pipeline. Items without an arrival time fall back to `alert_latency_ms` (event time).
    """
    times = [datetime.fromisoformat(item["event_time"]["S"]) for item in items]
    arrival = [
        int(item["arrival_to_alert_ms"]["N"]) for item in items if "arrival_to_alert_ms" in item
    ]
    if arrival or not items:
        return times, arrival, "Kinesis arrival -> alert written"
    event = [int(item["alert_latency_ms"]["N"]) for item in items if "alert_latency_ms" in item]
    return times, event, "event time -> alert written"


def run_report_data(
    settings: Settings, run_id: str, session: boto3.Session | None = None
) -> ReportData:
    """The report data of the run that just wrote the profile's lake, alerts and checkpoint."""
    card = read_card(settings.model.path, settings.aws)
    evaluation = lake_evaluation(settings, card)
    items = read_alerts(settings, session)
    event_times, latencies, basis = alert_figures(items)
    checkpoint = settings.processor.checkpoint_location.rstrip("/")
    run = RunData(
        run_id=run_id,
        alert_event_times=event_times,
        latencies_ms=latencies,
        latency_basis=basis,
        progress=read_progress(CheckpointFiles.of(settings)),
        dead_letters=dead_letter_counts(settings),
        lake_rows=lake_rows(settings),
        sources={
            "lake": settings.processor.lake_path,
            "alerts": f"DynamoDB table {settings.dynamodb.alerts_table}",
            "batches": f"{checkpoint}/{PROGRESS_FOLDER}/",
            "model": settings.model.path,
        },
    )
    return ReportData("run", f"Run report: {run_id}", card, evaluation, run)
