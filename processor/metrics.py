"""One JSON log line per micro-batch, and the same figures as Prometheus metrics.

Input rows, rows/s, batch duration, dead letters by reason, late events (behind the watermark,
scored all the same), dropped duplicates, the engine's time, state written and state entries
(cards, terminals, dedupe ids, held events: driver memory), the watermark, and
the source lag (MillisBehindLatest per shard, reported by the Kinesis source). Prometheus also gets
histograms of batch duration and of Kinesis arrival -> alert written, in seconds; alerts and their
write retries; each SageMaker endpoint's circuit-breaker state and retried calls; and the drift
monitor's PSI per feature and of the score (processor/drift.py). Retries of the Kinesis reads
happen in executors and are logged there, not counted here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pyspark.sql.streaming import StreamingQueryListener

from processor.alerts import AlertStats
from processor.sagemaker_scorer import BREAKER_STATE_VALUES, endpoint_health
from processor.sinks import BatchCounts

# Seconds: a micro-batch or an alert takes from well under a second to minutes behind a backlog.
SECONDS_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)

logger = logging.getLogger("processor.progress")


def batch_summary(progress: dict[str, Any], counts: BatchCounts) -> dict[str, Any]:
    """The per-batch figures, from Spark's progress JSON and what the sinks wrote."""
    lag: dict[str, Any] = {}
    for source in progress.get("sources", []):
        latest = source.get("latestOffset")
        if isinstance(latest, str) and latest.startswith("{"):
            lag.update(json.loads(latest).get("millisBehindLatest", {}))
    same_batch = counts.batch_id == progress.get("batchId")
    rows = progress.get("numInputRows", 0)
    input_rate = progress.get("inputRowsPerSecond") or 0.0
    processed_rate = progress.get("processedRowsPerSecond") or 0.0
    if same_batch and counts.spooled:
        # Spark read nothing (the sink took the source's spool, ADR 0048): the sink's count, and
        # both rates over the batch's duration.
        rows = counts.rows_in
        duration_s = (progress.get("batchDuration") or 0) / 1000
        input_rate = processed_rate = rows / duration_s if duration_s else 0.0
    return {
        "batch_id": progress.get("batchId"),
        "input_rows": rows,
        "input_rows_per_s": round(input_rate, 1),
        "processed_rows_per_s": round(processed_rate, 1),
        "batch_duration_ms": progress.get("batchDuration", 0),
        "written": counts.counts if same_batch else {},
        "dead_letters": counts.counts.get("dead_letters", 0) if same_batch else 0,
        "dead_letter_reasons": counts.dead_letter_reasons if same_batch else {},
        "late_events": counts.late if same_batch else 0,
        "duplicates": counts.duplicates if same_batch else 0,
        "engine_ms": counts.timings_ms.get("engine", 0) if same_batch else 0,
        "state_bytes": counts.state_bytes if same_batch else 0,
        "state_entries": counts.state_entries if same_batch else {},
        "watermark_ms": counts.watermark_ms,
        "source_lag_ms": lag,
        "max_source_lag_ms": max((v for v in lag.values() if v is not None), default=None),
    }


class ScorerHealth(Collector):
    """Each SageMaker endpoint's breaker state and retried calls, read at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = GaugeMetricFamily(
            "fraud_scorer_breaker_state",
            "SageMaker scorer circuit breaker: 0 closed, 1 half-open, 2 open",
            labels=["endpoint"],
        )
        retries = CounterMetricFamily(
            "fraud_scorer_retries", "SageMaker calls retried", labels=["endpoint"]
        )
        for endpoint, (breaker, retried) in endpoint_health().items():
            state.add_metric([endpoint], BREAKER_STATE_VALUES[breaker])
            retries.add_metric([endpoint], retried)
        yield state
        yield retries


class ProgressMetrics(StreamingQueryListener):
    """Logs each batch as JSON and updates Prometheus histograms, gauges and counters."""

    def __init__(
        self,
        counts: BatchCounts,
        port: int,
        host: str = "127.0.0.1",
        alerts: AlertStats | None = None,
        drift: Collector | None = None,
    ) -> None:
        self._counts = counts
        self._alerts = alerts
        self._alerts_seen = (0, 0)  # (written, retries) already counted
        self.registry = CollectorRegistry()
        self.input_rows = Counter("fraud_input_rows", "Records read", registry=self.registry)
        self.dead = Counter(
            "fraud_dead_letters", "Dead letters written", ["reason"], registry=self.registry
        )
        self.late = Counter(
            "fraud_late_events", "Events behind the watermark (scored)", registry=self.registry
        )
        self.duplicates = Counter(
            "fraud_duplicates", "Re-sent copies dropped", registry=self.registry
        )
        self.alerts = Counter("fraud_alerts", "Alerts written", registry=self.registry)
        self.alert_retries = Counter(
            "fraud_alert_write_retries",
            "BatchWriteItem calls repeated for unprocessed alerts",
            registry=self.registry,
        )
        self.rate = Gauge("fraud_processed_rows_per_second", "Rows/s", registry=self.registry)
        self.batch_seconds = Histogram(
            "fraud_batch_duration_seconds",
            "Micro-batch duration",
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.alert_latency = Histogram(
            "fraud_alert_latency_seconds",
            "Kinesis arrival of a transaction -> its alert written",
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.lag = Gauge(
            "fraud_source_lag_ms", "MillisBehindLatest", ["shard"], registry=self.registry
        )
        self.state_entries = Gauge(
            "fraud_engine_state_entries",
            "Entries in the engine's state (driver memory): cards, terminals, ids, held",
            ["kind"],
            registry=self.registry,
        )
        self.registry.register(ScorerHealth())
        if drift is not None:  # fraud_feature_psi, fraud_score_psi (processor/drift.py)
            self.registry.register(drift)
        self.last: dict[str, Any] | None = None
        if port:
            # Loopback unless told otherwise (--metrics-host 0.0.0.0 in a container or pod).
            start_http_server(port, addr=host, registry=self.registry)
            logger.info("Prometheus metrics on %s:%d", host, port)

    def observe_alert_latencies(self, seconds: list[float]) -> None:
        """AlertWriter.on_written: one observation per alert, no list kept."""
        for value in seconds:
            self.alert_latency.observe(value)

    def onQueryStarted(self, event: Any) -> None:
        logger.info(json.dumps({"event": "query_started", "id": str(event.id)}))

    def onQueryProgress(self, event: Any) -> None:
        summary = batch_summary(json.loads(event.progress.json), self._counts)
        self.last = summary
        self.input_rows.inc(summary["input_rows"])
        for reason, count in summary["dead_letter_reasons"].items():
            self.dead.labels(reason=reason).inc(count)
        self.late.inc(summary["late_events"])
        self.duplicates.inc(summary["duplicates"])
        self.rate.set(summary["processed_rows_per_s"])
        self.batch_seconds.observe(summary["batch_duration_ms"] / 1000)
        if self._alerts is not None:
            written, retries = self._alerts.written, self._alerts.retries
            self.alerts.inc(written - self._alerts_seen[0])
            self.alert_retries.inc(retries - self._alerts_seen[1])
            self._alerts_seen = (written, retries)
        for shard, lag in summary["source_lag_ms"].items():
            if lag is not None:
                self.lag.labels(shard=shard).set(lag)
        for kind, entries in summary["state_entries"].items():
            self.state_entries.labels(kind=kind).set(entries)
        logger.info(json.dumps(summary))

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        logger.info(json.dumps({"event": "query_terminated", "exception": event.exception}))
