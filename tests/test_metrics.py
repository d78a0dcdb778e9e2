"""The per-batch summary and its Prometheus exposition."""

from __future__ import annotations

import json
import urllib.request
from types import SimpleNamespace

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
    )
    summary = batch_summary(PROGRESS, counts)
    assert summary["input_rows"] == 1200
    assert summary["processed_rows_per_s"] == 1100.2
    assert summary["dead_letters"] == 12
    assert summary["late_events"] == 9 and summary["duplicates"] == 4
    assert summary["watermark_ms"] == 1_767_225_600_000
    assert summary["source_lag_ms"] == {"shard-0": 1500, "shard-1": 0}
    assert summary["max_source_lag_ms"] == 1500
    # Counts of another batch are not attributed to this one.
    assert (
        batch_summary(PROGRESS, BatchCounts(batch_id=6, counts={"dead_letters": 5}))["dead_letters"]
        == 0
    )


def test_prometheus_endpoint_serves_the_same_figures() -> None:
    port = free_port()
    listener = ProgressMetrics(BatchCounts(batch_id=7, counts={"dead_letters": 12}, late=2), port)
    listener.onQueryProgress(SimpleNamespace(progress=SimpleNamespace(json=json.dumps(PROGRESS))))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert "fraud_input_rows_total 1200.0" in text
    assert "fraud_dead_letters_total 12.0" in text
    assert "fraud_late_events_total 2.0" in text
    assert 'fraud_source_lag_ms{shard="shard-0"} 1500.0' in text
