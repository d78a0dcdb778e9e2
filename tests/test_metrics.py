"""The per-batch summary and its Prometheus exposition."""

from __future__ import annotations

import json
import urllib.request
from types import SimpleNamespace
from typing import Any

from prometheus_client import generate_latest

from processor.alerts import RECENT_LATENCIES, AlertStats
from processor.metrics import ProgressMetrics, batch_summary
from processor.sinks import BatchCounts
from scripts.local_aws import free_port

PROGRESS = {
    "batchId": 7,
    "numInputRows": 1200,
    "inputRowsPerSecond": 950.5,
    "processedRowsPerSecond": 1100.25,
    "batchDuration": 1090,
    "eventTime": {"watermark": "2026-01-01T10:00:00.000Z"},
    "sources": [
        {"latestOffset": json.dumps({"millisBehindLatest": {"shard-0": 1500, "shard-1": 0}})}
    ],
}


def test_summary_reads_progress_and_what_the_sinks_wrote() -> None:
    counts = BatchCounts(
        batch_id=7,
        counts={"transactions": 1100, "dead_letters": 12},
        late=9,
        duplicates=4,
        watermark_ms=1_767_225_600_000,
        state_entries={"cards": 30, "terminals": 12, "ids": 5_000, "held": 3},
    )
    summary = batch_summary(PROGRESS, counts)
    assert summary["input_rows"] == 1200
    assert summary["processed_rows_per_s"] == 1100.2
    assert summary["dead_letters"] == 12
    assert summary["late_events"] == 9 and summary["duplicates"] == 4
    assert summary["watermark_ms"] == 1_767_225_600_000
    assert summary["source_lag_ms"] == {"shard-0": 1500, "shard-1": 0}
    assert summary["max_source_lag_ms"] == 1500
    assert summary["state_entries"] == {"cards": 30, "terminals": 12, "ids": 5_000, "held": 3}
    # Counts of another batch are not attributed to this one.
    assert (
        batch_summary(PROGRESS, BatchCounts(batch_id=6, counts={"dead_letters": 5}))["dead_letters"]
        == 0
    )


def test_a_spooled_batch_counts_the_rows_the_sink_took() -> None:
    """Spark reads nothing of a batch the sink takes from the driver's spool (ADR 0048): its
    progress counts no input rows, so the summary counts the sink's, over the batch's time."""
    spooled = {**PROGRESS, "numInputRows": 0, "inputRowsPerSecond": 0.0,
               "processedRowsPerSecond": 0.0}  # fmt: skip
    summary = batch_summary(spooled, BatchCounts(batch_id=7, rows_in=2180, spooled=True))
    assert summary["input_rows"] == 2180
    assert summary["processed_rows_per_s"] == summary["input_rows_per_s"] == 2000.0
    # A batch Spark read keeps Spark's figures.
    collected = batch_summary(PROGRESS, BatchCounts(batch_id=7, rows_in=1200, spooled=False))
    assert collected["input_rows"] == 1200 and collected["input_rows_per_s"] == 950.5


def test_prometheus_endpoint_serves_the_same_figures() -> None:
    port = free_port()
    counts = BatchCounts(
        batch_id=7,
        counts={"dead_letters": 12},
        late=2,
        dead_letter_reasons={"not_json": 10, "invalid_value": 2},
        state_entries={"cards": 30, "ids": 5_000},
    )
    alerts = AlertStats(written=5, retries=1)
    listener = ProgressMetrics(counts, port, alerts=alerts)
    listener.onQueryProgress(SimpleNamespace(progress=SimpleNamespace(json=json.dumps(PROGRESS))))
    listener.observe_alert_latencies([0.4, 3.0, 3.5])
    alerts.written, alerts.retries = 8, 1  # the next batch wrote three more, no retry
    listener.onQueryProgress(SimpleNamespace(progress=SimpleNamespace(json=json.dumps(PROGRESS))))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "fraud_input_rows_total 2400.0" in text
    assert 'fraud_dead_letters_total{reason="not_json"} 20.0' in text
    assert 'fraud_dead_letters_total{reason="invalid_value"} 4.0' in text
    assert "fraud_late_events_total 4.0" in text
    assert 'fraud_source_lag_ms{shard="shard-0"} 1500.0' in text
    assert "fraud_alerts_total 8.0" in text and "fraud_alert_write_retries_total 1.0" in text
    assert 'fraud_engine_state_entries{kind="ids"} 5000.0' in text
    # Histograms in seconds: two batches of 1.09 s; alert latencies 0.4, 3.0 and 3.5 s.
    assert 'fraud_batch_duration_seconds_bucket{le="1.0"} 0.0' in text
    assert 'fraud_batch_duration_seconds_bucket{le="2.0"} 2.0' in text
    assert "fraud_batch_duration_seconds_count 2.0" in text
    assert 'fraud_alert_latency_seconds_bucket{le="0.5"} 1.0' in text
    assert 'fraud_alert_latency_seconds_bucket{le="5.0"} 3.0' in text
    assert "fraud_alert_latency_seconds_sum 6.9" in text


def test_scorer_breaker_state_and_retries_are_exported(monkeypatch: Any) -> None:
    import processor.metrics as metrics

    health = {"fraud-endpoint": ("open", 7)}
    monkeypatch.setattr(metrics, "endpoint_health", lambda: health)
    listener = ProgressMetrics(BatchCounts(), 0)
    text = generate_latest(listener.registry).decode()
    assert 'fraud_scorer_breaker_state{endpoint="fraud-endpoint"} 2.0' in text
    assert 'fraud_scorer_retries_total{endpoint="fraud-endpoint"} 7.0' in text
    health["fraud-endpoint"] = ("closed", 7)
    text = generate_latest(listener.registry).decode()
    assert 'fraud_scorer_breaker_state{endpoint="fraud-endpoint"} 0.0' in text


def test_alert_latencies_kept_for_benchmarks_are_bounded() -> None:
    stats = AlertStats()
    stats.latencies_ms.extend(range(RECENT_LATENCIES + 500))
    assert len(stats.latencies_ms) == RECENT_LATENCIES and stats.latencies_ms[0] == 500
