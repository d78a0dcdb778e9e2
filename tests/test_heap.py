"""The driver's heap policy: what a batch leaves is frozen, and a periodic full collection
still frees frozen cycles."""

from __future__ import annotations

import gc
import weakref

from processor.heap import HeapKeeper


class Node:
    """An object in a reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


def test_a_frozen_cycle_waits_for_the_periodic_full_collection() -> None:
    keeper = HeapKeeper(unfreeze_every=3)
    young = Node()
    young_ref = weakref.ref(young)
    del young
    keeper.before_batch()  # batch 1: garbage of the last batch is collected, not frozen
    assert young_ref() is None
    survivor = Node()
    survivor_ref = weakref.ref(survivor)
    keeper.before_batch()  # batch 2: the survivor is frozen
    assert gc.get_freeze_count() > 0
    del survivor
    gc.collect()
    assert survivor_ref() is not None, "a frozen object is skipped by collections"
    keeper.before_batch()  # batch 3: everything unfrozen and collected once
    assert survivor_ref() is None
    assert gc.get_freeze_count() > 0  # and what is alive frozen again
