"""Send counters: what was sent, retried and failed, the fraud share, throughput, per shard."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from producer.records import OutgoingRecord


@dataclass
class SendStats:
    """Mutable counters of one producer run; `snapshot()` is what the CLI and API report."""

    sent: int = 0
    failed: int = 0
    retried: int = 0
    fraud_sent: int = 0
    transactions_sent: int = 0
    per_shard: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def record_sent(self, record: OutgoingRecord, shard_id: str | None = None) -> None:
        self.sent += 1
        if record.event_type == "transaction" and record.anomaly is None:
            self.transactions_sent += 1
            self.fraud_sent += record.is_fraud
        if shard_id is not None:
            self.per_shard[shard_id] += 1

    def snapshot(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {
            "sent": self.sent,
            "failed": self.failed,
            "retried": self.retried,
            "fraud_share": round(self.fraud_sent / self.transactions_sent, 5)
            if self.transactions_sent
            else 0.0,
            "events_per_s": round(self.sent / elapsed, 1),
            "elapsed_s": round(elapsed, 2),
            "per_shard": dict(sorted(self.per_shard.items())),
        }

    def line(self) -> str:
        snap = self.snapshot()
        shards = " ".join(f"{k[-4:]}={v}" for k, v in snap["per_shard"].items())
        return (
            f"sent={snap['sent']} failed={snap['failed']} retried={snap['retried']} "
            f"fraud_share={snap['fraud_share']:.4f} rate={snap['events_per_s']}/s {shards}"
        ).rstrip()
