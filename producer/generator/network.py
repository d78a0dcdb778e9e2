"""Network profiles: per-record delivery delay, so records arrive late and out of order.

A record enters at its event time and leaves at event time + delay; a heap releases records
whose send time has passed, so memory is bounded by the longest delay.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np

from producer.records import OutgoingRecord


@dataclass(frozen=True, slots=True)
class NetworkProfile:
    """Delay = base + exponential(mean); with `spike_share`, + uniform(spike range)."""

    base_ms: int
    mean_ms: float
    spike_share: float
    spike_min_ms: int
    spike_max_ms: int


PROFILES: Final = {
    # Constant delay: order is kept exactly.
    "excellent": NetworkProfile(20, 0.0, 0.0, 0, 0),
    "good": NetworkProfile(20, 150.0, 0.0, 0, 0),
    "normal": NetworkProfile(50, 1_000.0, 0.01, 5_000, 30_000),
    "poor": NetworkProfile(100, 5_000.0, 0.03, 30_000, 300_000),
    # Some records arrive more than the processor's 10-minute watermark late.
    "terrible": NetworkProfile(200, 30_000.0, 0.05, 60_000, 1_200_000),
}


class NetworkDelay:
    """Reorders records by simulated delivery time."""

    def __init__(self, profile: str, rng: np.random.Generator) -> None:
        self.profile = PROFILES[profile]
        self._rng = rng
        self._heap: list[tuple[int, int, OutgoingRecord]] = []
        self._seq = 0
        self._constant = not self.profile.mean_ms and not self.profile.spike_share

    def _delay(self) -> int:
        p = self.profile
        delay = p.base_ms
        if p.mean_ms:
            delay += int(self._rng.exponential(p.mean_ms))
        if p.spike_share and self._rng.random() < p.spike_share:
            delay += int(self._rng.integers(p.spike_min_ms, p.spike_max_ms))
        return delay

    def send_time(self, now_ms: int) -> int:
        """When a record created at `now_ms` is delivered."""
        return now_ms + self._delay()

    def push(self, record: OutgoingRecord, now_ms: int) -> Iterator[OutgoingRecord]:
        """Add a record (its send_time_ms from `send_time`); yield every record delivered by
        `now_ms`. A constant delay keeps order, so it skips the heap."""
        if self._constant:
            yield record
            return
        self._seq += 1
        heapq.heappush(self._heap, (record.send_time_ms, self._seq, record))
        while self._heap and self._heap[0][0] <= now_ms:
            yield heapq.heappop(self._heap)[2]

    def flush(self) -> Iterator[OutgoingRecord]:
        while self._heap:
            yield heapq.heappop(self._heap)[2]
