"""Event-time watermark per shard, combined as the minimum over the active shards (as Flink
combines per-split watermarks), so lateness follows the slowest shard, never the fastest.

Each shard's mark is the largest event time it has delivered, bounded:

- no event counts for more than its arrival time plus WATERMARK_MAX_SKEW_MS (a record dated
  tomorrow cannot make today's records late);
- no event counts for more than the second-largest time of its shard's share of the batch
  (one outlier cannot move the watermark; the share is the same records on a replay).

A shard whose newest record arrived more than the idle timeout before the newest record of any
shard is idle and does not hold the watermark back (a closed or quiet shard). Arrival times are
part of the input, so all of this is a function of the checkpointed state and the batch.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

WATERMARK_MAX_SKEW_MS = 5 * 60 * 1000
_UNITS_MS = {"second": 1_000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
_DURATION = re.compile(rf"(\d+)\s*({'|'.join(_UNITS_MS)})s?")


def delay_ms(text: str) -> int:
    """'10 minutes' (or '10minutes', as config.settings accepts a duration) -> 600000."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (e.g. '10 minutes', '2 hours', '35 days')")
    return int(match[1]) * _UNITS_MS[match[2]]


@dataclass
class ShardMark:
    """What one shard has delivered so far: its bounded largest event time, newest arrival."""

    max_event_ms: int
    last_arrival_ms: int


def bounded_times(arrivals_ms: list[int], times_ms: list[int]) -> list[int]:
    """One shard's batch of event times as the watermark may follow them (see module doc)."""
    bounded = [
        min(t, a + WATERMARK_MAX_SKEW_MS) for a, t in zip(arrivals_ms, times_ms, strict=True)
    ]
    if len(bounded) >= 2:
        cap = sorted(bounded)[-2]
        bounded = [min(t, cap) for t in bounded]
    return bounded


def advance(
    marks: dict[str, ShardMark], events: Iterable[tuple[str, int, int]]
) -> dict[str, ShardMark]:
    """Marks after a batch of (shard, arrival ms, event time ms) of valid events."""
    by_shard: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for shard, arrival, moment in events:
        by_shard[shard][0].append(arrival)
        by_shard[shard][1].append(moment)
    out = {shard: ShardMark(m.max_event_ms, m.last_arrival_ms) for shard, m in marks.items()}
    for shard, (arrivals, times) in by_shard.items():
        newest = max(bounded_times(arrivals, times))
        mark = out.get(shard)
        if mark is None:
            out[shard] = ShardMark(newest, max(arrivals))
        else:
            mark.max_event_ms = max(mark.max_event_ms, newest)
            mark.last_arrival_ms = max(mark.last_arrival_ms, max(arrivals))
    return out


def combined(marks: dict[str, ShardMark], delay: int, idle_timeout: int) -> int | None:
    """The watermark: min over active shards of their mark, minus the delay (None: no data)."""
    if not marks:
        return None
    newest_arrival = max(m.last_arrival_ms for m in marks.values())
    active = [
        m.max_event_ms for m in marks.values() if m.last_arrival_ms >= newest_arrival - idle_timeout
    ]
    return min(active) - delay
