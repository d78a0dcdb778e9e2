"""The dedupe index (processor/engine/dedupe_index.py): what it holds, how ids expire, and that
merging runs and pickling change nothing it answers."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from ml_model.features.definitions import DAY, HOUR
from processor.engine.dedupe_index import (
    Queries,
    Run,
    SeenIndex,
    _find,
    digest_prefixes,
    ids_of,
    key_hashes,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the start of a day


def _ids(first: int, count: int, event_ms: int = T0) -> dict[str, tuple[str, int]]:
    return {f"transaction:tx-{n}": (f"{n:032x}", event_ms + n) for n in range(first, first + count)}


def _held(index: SeenIndex, keys: list[str]) -> list[bool]:
    return index.lookup(*key_hashes(keys))[0].tolist()


def test_it_answers_with_the_first_copys_digest_and_time() -> None:
    index = SeenIndex.of(_ids(0, 3))
    found, digest, event_ms = index.lookup(*key_hashes(["transaction:tx-1", "transaction:tx-9"]))
    assert found.tolist() == [True, False]
    assert digest[0] == digest_prefixes([f"{1:032x}"])[0] and event_ms[0] == T0 + 1
    first = index.get("transaction:tx-2")
    assert first is not None and first.event_ms == T0 + 2
    assert index.get("transaction:tx-9") is None and "transaction:tx-9" not in index
    assert len(index) == 3 and index.nbytes == 3 * 32


def test_many_small_batches_merge_into_few_runs_and_keep_every_id() -> None:
    index = SeenIndex()
    for batch in range(200):
        index.add(ids_of(_ids(batch * 10, 10)))
    assert len(index) == 2_000
    # Halving sizes: at most log2(2,000 / 10) + 1 runs for the day, not 200.
    assert index.runs() <= math.log2(200) + 1
    keys = [f"transaction:tx-{n}" for n in range(2_010)]
    assert _held(index, keys) == [True] * 2_000 + [False] * 10
    assert index == SeenIndex.of(_ids(0, 2_000))


def test_a_day_expires_whole_once_the_watermark_passes_its_end_by_the_retention() -> None:
    index = SeenIndex()
    index.add(ids_of(_ids(0, 2, T0 + 23 * HOUR)))  # day 0's last hour
    index.add(ids_of(_ids(2, 2, T0 + DAY)))  # day 1
    retention = 2 * HOUR
    day = T0 // DAY
    # Day 0's newest id may be 1 ms before its end: kept until the end + retention.
    assert index.expired_days(T0 + DAY + retention - 1, retention) == []
    assert index.expired_days(T0 + DAY + retention, retention) == [day]
    index.drop_days([day])
    assert len(index) == 2
    assert _held(index, [f"transaction:tx-{n}" for n in range(4)]) == [False, False, True, True]


def test_discard_forgets_the_named_ids_only() -> None:
    index = SeenIndex.of(_ids(0, 4) | _ids(4, 2, T0 + DAY))
    index.discard(["transaction:tx-1", "transaction:tx-4", "transaction:tx-5", "transaction:tx-9"])
    assert len(index) == 3
    assert _held(index, [f"transaction:tx-{n}" for n in range(6)]) == [
        True, False, True, True, False, False,
    ]  # fmt: skip
    assert index == SeenIndex.of(_ids(0, 1) | _ids(2, 2))


def test_it_pickles_as_one_sorted_run_a_day_and_answers_the_same() -> None:
    index = SeenIndex()
    for batch in range(7):  # 7 runs of 3 do not all merge
        index.add(ids_of(_ids(batch * 3, 3) | _ids(100 + batch, 1, T0 + DAY)))
    back = pickle.loads(pickle.dumps(index))
    assert back == index and len(back) == len(index) == 28
    assert back.runs() == 2 and index.runs() > 2
    keys = [f"transaction:tx-{n}" for n in range(110)]
    assert _held(back, keys) == _held(index, keys)


def test_a_key_hash_whose_high_half_another_shares_is_still_told_apart() -> None:
    # Odds of ~n/2^64 for real keys; made here by hand.
    high = np.array([5, 7, 7, 7, 9], dtype=np.uint64)
    low = np.array([1, 3, 1, 2, 1], dtype=np.uint64)
    run = Run(high, low, np.zeros(5, np.uint64), np.arange(5, dtype=np.int64))
    queries = (np.array([7, 7, 7, 7], dtype=np.uint64), np.array([3, 1, 2, 4], dtype=np.uint64))
    assert _find(run.high, run.low, *queries).tolist() == [1, 2, 3, -1]


def test_a_lookup_answers_as_a_dict_would_whichever_side_is_searched() -> None:
    # Runs both larger and smaller than the queries (ADR 0046 searches the smaller side in the
    # larger), ids that share a high half, and queries asked more than once.
    rng = np.random.default_rng(7)
    shared_highs = rng.integers(0, 2**64 - 1, 20, dtype=np.uint64, endpoint=True)
    held: dict[tuple[int, int], tuple[int, int]] = {}
    index = SeenIndex()
    for day, size in enumerate([3, 40, 400, 2_000, 7]):
        high = rng.integers(0, 2**64 - 1, size, dtype=np.uint64, endpoint=True)
        high[: size // 3] = rng.choice(shared_highs, size // 3)
        low = rng.integers(0, 2**64 - 1, size, dtype=np.uint64, endpoint=True)
        digest = rng.integers(1, 2**64 - 1, size, dtype=np.uint64, endpoint=True)
        event_ms = T0 + day * DAY + np.arange(size, dtype=np.int64)
        index.add(Run(high, low, digest, event_ms))
        held.update(
            {
                (int(h), int(lo)): (int(d), int(t))
                for h, lo, d, t in zip(high, low, digest, event_ms, strict=True)
            }
        )
    pairs = list(held)
    asked = [pairs[i] for i in rng.integers(0, len(pairs), 150)]
    asked += [
        (int(rng.choice(shared_highs)), int(lo))
        for lo in rng.integers(0, 2**64 - 1, 50, dtype=np.uint64, endpoint=True)
    ]
    asked += asked[:30]
    high = np.array([h for h, _ in asked], dtype=np.uint64)
    low = np.array([lo for _, lo in asked], dtype=np.uint64)
    found, digest, event_ms = index.lookup(high, low)
    expected = [held.get(pair) for pair in asked]
    assert found.tolist() == [first is not None for first in expected]
    assert [(int(d), int(t)) for d, t, hit in zip(digest, event_ms, found, strict=True) if hit] == [
        first for first in expected if first is not None
    ]


def test_queries_name_each_ids_first_copy_in_query_order() -> None:
    high = np.array([9, 4, 9, 4, 9, 1], dtype=np.uint64)
    low = np.array([1, 2, 1, 2, 3, 5], dtype=np.uint64)  # (9, 3) shares only the high half
    queries = Queries.of(high, low)
    assert queries.first.tolist() == [0, 1, 0, 1, 4, 5]
    assert list(zip(queries.high.tolist(), queries.low.tolist(), strict=True)) == [
        (1, 5),
        (4, 2),
        (9, 1),
        (9, 3),
    ]
    assert queries.distinct.tolist() == [2, 1, 2, 1, 3, 0]


def test_a_digest_is_read_as_its_first_64_bits_and_a_short_one_is_refused() -> None:
    assert digest_prefixes(["00000000000000ff" + "0" * 16]).tolist() == [255]
    with pytest.raises(ValueError, match="shorter than 16 hex digits"):
        digest_prefixes(["0" * 32, "abc"])
