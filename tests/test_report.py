"""Run and training reports: every figure embedded as a valid PNG under its id, a page that loads
nothing from elsewhere, the model card's values, run-only sections only in a run's report.

The run report is built from real sources without Spark: the session's trained model, a tiny
Delta lake written with deltalake in the lake's own Arrow schemas, alert items written to moto
by the job's AlertWriter, and batch records written by the sink's own recorder.
"""

from __future__ import annotations

import base64
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from deltalake import write_deltalake
from PIL import Image

from config.aws import make_client
from config.settings import Settings
from ml_model.artifacts import ModelCard, read_card
from ml_model.report import (
    CONSOLE_ID,
    CONSOLE_SCREENSHOT,
    EVALUATION_IDS,
    RUN_IDS,
    ReportData,
    RunData,
    evaluation_of,
    render_html,
    write_report,
)
from ml_model.report.figures import bin_minutes, new_figure, to_png
from ml_model.report.run_data import run_report_data
from ml_model.report.sections import console_section
from ml_model.report.tables import window_text
from ml_model.train import build_parser, report_folder
from processor.alerts import AlertWriter
from processor.batch_progress import (
    FOLDER,
    RETAINED_BATCHES,
    BatchProgress,
    read_progress,
    record_batch,
)
from processor.checkpoint_files import CheckpointFiles
from processor.job import ingest, lake_writer, write
from processor.lake_tables import SCORED_TRANSACTION_TABLE, dead_letter_table, event_table
from processor.scoring import frame_scorer
from processor.sinks import BatchCounts, table_path
from producer.generator import GeneratorOptions, TransactionGenerator
from scripts.setup_aws import ensure_alerts_table, ensure_stream

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
SCENARIOS = ("card_testing", "account_takeover", "atm_cashout_abroad")
DEAD_LETTER_REASONS = {"not_json": 3, "missing_field": 2, "future_event_time": 1}


def figures_of(page: str) -> dict[str, bytes | None]:
    """{section id: its embedded PNG, or None for a note} of every fig-* section."""
    found: dict[str, bytes | None] = {}
    for section_id, body in re.findall(
        r'<section id="(fig-[a-z-]+)">(.*?)</section>', page, re.DOTALL
    ):
        image = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', body)
        found[section_id] = base64.b64decode(image.group(1)) if image else None
    return found


def assert_valid_png(blob: bytes | None) -> None:
    assert blob is not None and blob.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(blob)) as image:
        image.verify()
    with Image.open(io.BytesIO(blob)) as image:
        assert image.width >= 300 and image.height >= 150


def assert_self_contained(page: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "url(" not in page


def assert_card_shown(page: str, card: ModelCard) -> None:
    assert card.version in page
    assert f"{card.threshold:.6g}" in page
    assert card.threshold_policy in page
    assert card.data_hash in page
    for name in card.feature_names:
        assert name in page
    for lib, release in card.library_versions.items():
        assert f"{lib} {release}" in page
    assert f"{card.metrics['average_precision']:.4f}" in page
    assert f"{card.baseline_metrics['average_precision']:.4f}" in page


# ---------------------------------------------------------------------------------- training
def test_training_writes_a_report_beside_the_model(trained_model: Path) -> None:
    page = (trained_model / "report" / "index.html").read_text()
    card = read_card(str(trained_model))
    assert_self_contained(page)
    assert_card_shown(page, card)
    found = figures_of(page)
    assert set(found) == set(EVALUATION_IDS)  # no run-only sections in a training report
    for section_id in EVALUATION_IDS:
        assert_valid_png(found[section_id])
    assert f"the test split, {window_text(card.test_window)}" in page
    assert 'id="run-summary"' not in page and "Alert console" not in page


def test_report_options_of_the_training_cli() -> None:
    args = build_parser().parse_args(["--no-report", "--report-dir", "elsewhere"])
    assert args.no_report and args.report_dir == "elsewhere"
    defaults = build_parser().parse_args([])
    assert not defaults.no_report and defaults.report_dir is None
    assert report_folder(None, "data/models/current", "v1") == Path("data/models/current/report")
    assert report_folder(None, "s3://bucket/models/x", "v1") == Path("reports/train-v1")
    assert report_folder("mine", "s3://bucket/models/x", "v1") == Path("mine")


# ---------------------------------------------------------------------------------- a run
def transactions(card: ModelCard, n: int = 400, seed: int = 5) -> list[dict[str, Any]]:
    """Scored transaction rows over two hours: 1 in 20 fraud, 18 of 20 alerted, 2 false alerts."""
    rng = np.random.default_rng(seed)
    arrival = datetime.now(UTC) - timedelta(seconds=30)
    rows = []
    for i in range(n):
        fraud = i % 20 == 7
        cut = card.threshold
        score = float(cut + (1 - cut) * rng.uniform() if fraud else rng.beta(1, 30) * cut)
        if i in (67, 187):  # missed fraud
            score = cut / 2
        if i in (13, 101):  # genuine rows scored high: false alerts
            score = cut
        rows.append(
            {
                "event_type": "transaction",
                "event_id": f"e{i}",
                "transaction_id": f"tx{i:04d}",
                "card_token": f"pan_{i % 37}",
                "card_last4": f"{i % 10000:04d}",
                "amount": float(rng.gamma(2, 30) + (400 if fraud and i % 3 == 0 else 0)),
                "currency": "EUR",
                "merchant_id": f"m{i % 11}",
                "terminal_id": f"t{i % 13}",
                "event_time": T0 + timedelta(seconds=18 * i),
                "approximateArrivalTimestamp": arrival + timedelta(milliseconds=20 * i),
                "label_is_fraud": fraud,
                "label_fraud_scenario": SCENARIOS[i % 3] if fraud else None,
                "late": False,
                "fraud_score": score,
                "model_version": card.version,
                "decision": "ALERT" if score >= card.threshold else "OK",
                "reason_codes": ["tx_amount=1 (+0.40)"] if score >= card.threshold else [],
            }
        )
    for row in rows:
        row["tx_amount"] = row["amount"]
    return rows


def dead_letters() -> list[dict[str, Any]]:
    return [
        {
            "dead_letter_reason": reason,
            "dead_letter_field": None,
            "dead_letter_detail": "test",
            "raw_payload_masked": b"{}",
            "shardId": "shardId-000000000000",
            "sequenceNumber": str(n),
            "subSequenceNumber": 0,
            "approximateArrivalTimestamp": T0,
        }
        for reason, count in DEAD_LETTER_REASONS.items()
        for n in range(count)
    ]


@pytest.fixture
def run_settings(settings: Settings, trained_model: Path) -> Settings:
    """A finished run: lake, alerts in moto and batch records, with the session's model."""
    run = settings.with_overrides(model={"path": str(trained_model)})
    card = read_card(str(trained_model))
    rows = transactions(card)
    lake = run.processor.lake_path
    write_deltalake(
        table_path(lake, "transactions"),
        event_table(rows, SCORED_TRANSACTION_TABLE),
        partition_by=["event_date"],
    )
    write_deltalake(table_path(lake, "dead_letters"), dead_letter_table(dead_letters()))
    ensure_alerts_table(make_client("dynamodb", run.aws), run.dynamodb.alerts_table)
    alerts = AlertWriter(run)
    files = CheckpointFiles(run.processor.checkpoint_location)
    for batch_id, start in enumerate(range(0, len(rows), 150)):
        batch = rows[start : start + 150]
        alerts(batch, batch_id)
        counts = BatchCounts(
            batch_id=batch_id,
            counts={"transactions": len(batch), "dead_letters": 2},
            timings_ms={"collect": 400 + 100 * batch_id, "delta": 900, "state": 30},
        )
        record_batch(files, batch_id, len(batch) + 2, counts)
    return run


def test_run_report_from_lake_alerts_and_batch_records(
    run_settings: Settings, tmp_path: Path
) -> None:
    data = run_report_data(run_settings, "test-run")
    card = data.card
    page = write_report(tmp_path / "run", data).read_text()
    assert_self_contained(page)
    assert_card_shown(page, card)
    found = figures_of(page)
    assert set(found) == {*EVALUATION_IDS, *RUN_IDS}
    for section_id in found:
        assert_valid_png(found[section_id])
    # What the figures were drawn from: the lake, the alert items and the batch records.
    assert data.evaluation is not None and len(data.evaluation.frame) == 400
    assert data.evaluation.metrics["frauds"] == 20
    assert set(data.evaluation.metrics["per_scenario_recall"]) == set(SCENARIOS)
    assert data.run is not None
    alerted = sum(row["decision"] == "ALERT" for row in transactions(card))
    assert len(data.run.alert_event_times) == len(data.run.latencies_ms) == alerted
    assert data.run.latency_basis.startswith("Kinesis arrival")
    assert [p.batch_id for p in data.run.progress] == [0, 1, 2]
    assert data.run.dead_letters == DEAD_LETTER_REASONS
    assert data.run.lake_rows["transactions"] == 400
    assert data.run.lake_rows["labels"] == 0  # a table the run never wrote
    assert 'id="run-summary"' in page and "test-run" in page
    assert CONSOLE_ID not in found  # no screenshot in the folder


def test_console_screenshot_in_the_run_folder_gets_a_section(
    run_settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    screenshot = to_png(console_like_figure())
    (folder / CONSOLE_SCREENSHOT).write_bytes(screenshot)
    page = write_report(folder, run_report_data(run_settings, "with-console")).read_text()
    found = figures_of(page)
    assert found[CONSOLE_ID] == screenshot
    assert_self_contained(page)


def console_like_figure() -> Any:
    figure = new_figure(6, 3)
    figure.text(0.1, 0.5, "alert queue")
    return figure


def test_a_run_without_alerts_batches_or_dead_letters_says_so(trained_model: Path) -> None:
    card = read_card(str(trained_model))
    page = render_html(ReportData("run", "empty run", card, None, RunData(run_id="empty")))
    found = figures_of(page)
    assert set(found) == set(RUN_IDS)
    assert all(blob is None for blob in found.values())  # notes, not empty figures
    assert "No alerts." in page and "No dead letters." in page
    assert_self_contained(page)


def test_single_class_evaluation_has_notes_for_the_curves(trained_model: Path) -> None:
    card = read_card(str(trained_model))
    rows = [r for r in transactions(card) if not r["label_is_fraud"]]
    frame = evaluation_frame(rows)
    evaluation = evaluation_of(frame, card.threshold, 500.0, "genuine only")
    found = figures_of(render_html(ReportData("training", "t", card, evaluation)))
    assert found["fig-pr-curve"] is None and found["fig-roc-curve"] is None
    assert_valid_png(found["fig-score-histogram"])


def evaluation_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "score": [r["fraud_score"] for r in rows],
            "baseline_score": [r["amount"] for r in rows],
            "is_fraud": [r["label_is_fraud"] for r in rows],
            "fraud_scenario": [r["label_fraud_scenario"] for r in rows],
            "card": [r["card_token"] for r in rows],
            "event_time": pd.to_datetime([r["event_time"] for r in rows], utc=True),
        }
    )


def test_console_section_embeds_the_png_as_is() -> None:
    blob = to_png(console_like_figure())
    section = console_section(blob)
    assert section.data_uri == "data:image/png;base64," + base64.b64encode(blob).decode()


def test_alert_bins_stay_few_for_long_spans() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert bin_minutes(pd.Timestamp(start), pd.Timestamp(start + timedelta(minutes=40))) == 1
    assert bin_minutes(pd.Timestamp(start), pd.Timestamp(start + timedelta(hours=18))) == 30
    assert bin_minutes(pd.Timestamp(start), pd.Timestamp(start + timedelta(days=90))) == 1440


# ---------------------------------------------------------------------------------- batch records
def test_batch_records_round_trip_and_a_replay_overwrites(tmp_path: Path) -> None:
    files = CheckpointFiles(str(tmp_path))
    counts = BatchCounts(counts={"transactions": 90}, timings_ms={"collect": 200, "delta": 300})
    record_batch(files, 0, 100, counts)
    record_batch(files, 1, 50, counts)
    record_batch(files, 1, 50, counts)  # the replay of batch 1
    progress = read_progress(files)
    assert [p.batch_id for p in progress] == [0, 1]
    first = progress[0]
    assert first.rows_in == 100 and first.duration_ms == 500 and first.events_per_s == 200.0
    assert first.written == {"transactions": 90}
    assert datetime.fromisoformat(first.committed_at).tzinfo is not None
    raw = json.loads((tmp_path / FOLDER / "0.json").read_text())
    assert BatchProgress(**raw) == first


def test_batch_records_keep_the_newest_only(tmp_path: Path) -> None:
    files = CheckpointFiles(str(tmp_path))
    counts = BatchCounts(timings_ms={"collect": 1})
    for batch_id in (0, 1, RETAINED_BATCHES, RETAINED_BATCHES + 1):
        record_batch(files, batch_id, 1, counts)
    assert files.batch_ids(FOLDER, ".json") == [RETAINED_BATCHES, RETAINED_BATCHES + 1]


def test_a_batch_record_that_cannot_be_written_never_fails_the_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    record_batch(CheckpointFiles(str(blocked)), 3, 10, BatchCounts())
    assert "batch 3: progress record not written" in caplog.text


# ---------------------------------------------------------------------------------- the job
@pytest.mark.integration
@pytest.mark.slow
def test_the_job_records_its_batches_and_the_report_reads_them(
    spark: Any, settings: Settings, trained_model: Path, tmp_path: Path
) -> None:
    run = settings.with_overrides(
        kinesis={"shard_count": 1},
        processor={"max_records_per_shard": 400},
        model={"path": str(trained_model)},
    )
    options = GeneratorOptions(
        seed=21, num_transactions=1_000, fraud_rate=0.05, anomaly_rate=0.02, num_customers=80,
        num_terminals=30,
    )  # fmt: skip
    records = list(TransactionGenerator(options).records())
    kinesis = make_client("kinesis", run.aws)
    ensure_stream(kinesis, run.kinesis.stream_name, 1)
    ensure_alerts_table(make_client("dynamodb", run.aws), run.dynamodb.alerts_table)
    for start in range(0, len(records), 500):
        entries = [
            {"Data": r.data, "PartitionKey": r.partition_key} for r in records[start : start + 500]
        ]
        kinesis.put_records(StreamName=run.kinesis.stream_name, Records=entries)

    writer = lake_writer(run, frame_scorer(run), AlertWriter(run))
    query = write(ingest(spark, run), run, writer, True)
    query.awaitTermination()
    assert query.exception() is None
    batches = [p["batchId"] for p in query.recentProgress if p["numInputRows"]]

    progress = read_progress(CheckpointFiles(run.processor.checkpoint_location))
    assert [p.batch_id for p in progress] == batches and len(batches) >= 3
    assert sum(p.rows_in for p in progress) == len(records)
    assert all(p.duration_ms > 0 and p.events_per_s > 0 for p in progress)
    assert sum(p.written["dead_letters"] for p in progress) == writer.stats.totals["dead_letters"]

    data = run_report_data(run, "job-run")
    page = write_report(tmp_path / "job-run", data).read_text()
    found = figures_of(page)
    assert set(found) == {*EVALUATION_IDS, *RUN_IDS}
    for section_id, blob in found.items():
        assert blob is not None, section_id
    assert data.run is not None and data.run.lake_rows["dead_letters"] > 0
