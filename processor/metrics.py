"""One JSON log line per micro-batch, and the same figures as Prometheus metrics.

Input rows, rows/s, batch duration, dead letters, late events (behind the watermark, scored all
the same), dropped duplicates, the engine's time and state written, the watermark, and the source
lag (MillisBehindLatest per shard, reported by the Kinesis source).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from pyspark.sql.streaming import StreamingQueryListener

from processor.sinks import BatchCounts

logger = logging.getLogger("processor.progress")


def batch_summary(progress: dict[str, Any], counts: BatchCounts) -> dict[str, Any]:
    """The per-batch figures, from Spark's progress JSON and what the sinks wrote."""
    lag: dict[str, Any] = {}
    for source in progress.get("sources", []):
        latest = source.get("latestOffset")
        if isinstance(latest, str) and latest.startswith("{"):
            lag.update(json.loads(latest).get("millisBehindLatest", {}))
    same_batch = counts.batch_id == progress.get("batchId")
    return {
        "batch_id": progress.get("batchId"),
        "input_rows": progress.get("numInputRows", 0),
        "input_rows_per_s": round(progress.get("inputRowsPerSecond") or 0.0, 1),
        "processed_rows_per_s": round(progress.get("processedRowsPerSecond") or 0.0, 1),
        "batch_duration_ms": progress.get("batchDuration", 0),
        "written": counts.counts if same_batch else {},
        "dead_letters": counts.counts.get("dead_letters", 0) if same_batch else 0,
        "late_events": counts.late if same_batch else 0,
        "duplicates": counts.duplicates if same_batch else 0,
        "engine_ms": counts.timings_ms.get("engine", 0) if same_batch else 0,
        "state_bytes": counts.state_bytes if same_batch else 0,
        "watermark_ms": counts.watermark_ms,
        "source_lag_ms": lag,
        "max_source_lag_ms": max((v for v in lag.values() if v is not None), default=None),
    }


class ProgressMetrics(StreamingQueryListener):
    """Logs each batch as JSON and updates Prometheus gauges and counters."""

    def __init__(self, counts: BatchCounts, port: int, host: str = "127.0.0.1") -> None:
        self._counts = counts
        self.registry = CollectorRegistry()
        self.input_rows = Counter("fraud_input_rows", "Records read", registry=self.registry)
        self.dead = Counter("fraud_dead_letters", "Dead letters written", registry=self.registry)
        self.late = Counter(
            "fraud_late_events", "Events behind the watermark (scored)", registry=self.registry
        )
        self.duplicates = Counter(
            "fraud_duplicates", "Re-sent copies dropped", registry=self.registry
        )
        self.rate = Gauge("fraud_processed_rows_per_second", "Rows/s", registry=self.registry)
        self.duration = Gauge("fraud_batch_duration_ms", "Batch duration", registry=self.registry)
        self.lag = Gauge(
            "fraud_source_lag_ms", "MillisBehindLatest", ["shard"], registry=self.registry
        )
        self.last: dict[str, Any] | None = None
        if port:
            # Loopback unless told otherwise (--metrics-host 0.0.0.0 in a container or pod).
            start_http_server(port, addr=host, registry=self.registry)
            logger.info("Prometheus metrics on %s:%d", host, port)

    def onQueryStarted(self, event: Any) -> None:
        logger.info(json.dumps({"event": "query_started", "id": str(event.id)}))

    def onQueryProgress(self, event: Any) -> None:
        summary = batch_summary(json.loads(event.progress.json), self._counts)
        self.last = summary
        self.input_rows.inc(summary["input_rows"])
        self.dead.inc(summary["dead_letters"])
        self.late.inc(summary["late_events"])
        self.duplicates.inc(summary["duplicates"])
        self.rate.set(summary["processed_rows_per_s"])
        self.duration.set(summary["batch_duration_ms"])
        for shard, lag in summary["source_lag_ms"].items():
            if lag is not None:
                self.lag.labels(shard=shard).set(lag)
        logger.info(json.dumps(summary))

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        logger.info(json.dumps({"event": "query_terminated", "exception": event.exception}))
