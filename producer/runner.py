"""The send loop shared by the CLI and the control API: pacing, auto-stop, periodic stats."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from producer.records import OutgoingRecord
    from producer.sinks import Sink

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pacing:
    """`rate` events/s (0 = as fast as possible), or event-time pacing sped up `speedup` times."""

    rate: float = 0.0
    by_event_time: bool = False
    speedup: float = 1.0
    duration_s: float | None = None


def run(
    records: Iterable[OutgoingRecord],
    sink: Sink,
    pacing: Pacing,
    stop: threading.Event | None = None,
    stats_interval_s: float = 5.0,
    on_stats: Callable[[str], None] | None = None,
    chunk: int = 100,
) -> None:
    """Send `records` to `sink` until exhausted, `duration_s` passed or `stop` is set."""
    stop = stop or threading.Event()
    started = time.monotonic()
    next_stats = started + stats_interval_s
    first_event_ms: int | None = None
    buffer: list[OutgoingRecord] = []
    for count, record in enumerate(records, start=1):
        if stop.is_set():
            break
        now = time.monotonic()
        if pacing.duration_s is not None and now - started >= pacing.duration_s:
            break
        if pacing.by_event_time:
            first_event_ms = record.send_time_ms if first_event_ms is None else first_event_ms
            due = started + (record.send_time_ms - first_event_ms) / 1000.0 / pacing.speedup
        elif pacing.rate > 0:
            due = started + count / pacing.rate
        else:
            due = now
        if due > now:
            if buffer:  # don't hold records back while waiting
                sink.send(buffer)
                buffer = []
            stop.wait(due - now)
        buffer.append(record)
        if len(buffer) >= chunk:
            sink.send(buffer)
            buffer = []
        if on_stats is not None and now >= next_stats:
            on_stats(sink.stats.line())
            next_stats = now + stats_interval_s
    if buffer:
        sink.send(buffer)
    sink.close()
