"""Keep Python's cyclic garbage collector off the driver's long-lived heap.

The driver holds the engine's state (every card, terminal and dedupe id) for the life of the
job. CPython's full collection walks every tracked object each time it runs, and NamedTuple
records stay tracked (only exact tuples are untracked): at 1,000 events/s the driver paused
117-640 ms every 15-25 s, more as the state grew, and a collection during a snapshot child's
life wrote to every page the two processes share, so both paid copy-on-write faults (ADR 0021).

So before each batch, what survived the last one is collected once (only objects since the
previous freeze are walked: a few ms) and the rest is frozen: moved to the permanent generation,
which later collections skip. Reference counting still frees frozen objects; only a cycle among
objects that were alive at a freeze and die later is never collected. The engine's state has no
cycles, and `FROZEN_BATCHES` bounds the rest: every so many batches everything is unfrozen and
collected once.

While a batch runs, automatic collections are paused (`during_batch`): a 40,000-event batch
allocates millions of short-lived objects, and the collector's own thresholds ran 670-900 young,
60-80 middle and 4-5 full collections in it, 0.75-0.95 s of its ~6.5 s of driver CPU, without
finding a cycle to free (docs/benchmarks.md). Reference counting frees that garbage as before,
and the collection before the next batch finds any cycle the batch left.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

# Batches between two full collections of everything, frozen objects included.
FROZEN_BATCHES = 1_000


class HeapKeeper:
    """`during_batch` around each batch (or `before_batch` once per batch, before it starts)."""

    def __init__(self, unfreeze_every: int = FROZEN_BATCHES) -> None:
        self.unfreeze_every = unfreeze_every
        self._batches = 0

    def before_batch(self) -> None:
        self._batches += 1
        if self._batches % self.unfreeze_every == 0:
            began = time.perf_counter()
            gc.unfreeze()
            found = gc.collect()
            logger.info(
                "full collection of %d frozen batches: %d objects freed in %.0f ms",
                self.unfreeze_every,
                found,
                (time.perf_counter() - began) * 1000,
            )
        else:
            gc.collect()
        gc.freeze()

    @contextmanager
    def during_batch(self) -> Iterator[None]:
        """Collect and freeze what the last batch left, then run the batch with automatic
        collections paused; they resume afterwards (if they were on), even if it fails."""
        self.before_batch()
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if was_enabled:
                gc.enable()
