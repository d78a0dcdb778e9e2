"""The driver's heap policy: what a batch leaves is frozen, a periodic full collection still
frees frozen cycles, and no automatic collection runs during a batch."""

from __future__ import annotations

import gc
import weakref

import pytest

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


def test_automatic_collection_is_paused_while_a_batch_runs() -> None:
    keeper = HeapKeeper()
    assert gc.isenabled()
    with keeper.during_batch():
        assert not gc.isenabled()
        cycle = Node()
        cycle_ref = weakref.ref(cycle)
        del cycle
        # Enough new containers to set off young collections, were they running.
        churn = [[] for _ in range(20 * gc.get_threshold()[0])]
        del churn
        assert cycle_ref() is not None, "no collection ran during the batch"
    assert gc.isenabled()
    with keeper.during_batch():  # the next batch's collection frees what the last one left
        assert cycle_ref() is None


def test_collection_resumes_when_a_batch_fails_and_stays_off_if_it_was() -> None:
    keeper = HeapKeeper()
    with pytest.raises(RuntimeError), keeper.during_batch():
        raise RuntimeError("the batch failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with keeper.during_batch():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
