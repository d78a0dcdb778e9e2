"""The dedupe index: every id the engine accepted within the dedupe retention, 32 bytes each.

An id is kept as a 128-bit hash of its dedupe key, its payload digest's first 64 bits and its
event time, in numpy arrays rather than as Python strings and tuples in a dict: 256 bytes an
id went to 34 (ADR 0033). The index holds rate x retention ids, so that is what bounds how
long a job at a sustained rate fits its driver's memory.

The ids are grouped by the day of their event time, which is how they expire: a day is dropped
whole once the watermark has passed its end by the retention. Within a day they are sorted runs
(by key hash); a batch's new ids become a run, and runs of similar size are merged, so a day
holds O(log n) runs and an id is copied O(log n) times. A batch looks all its ids up at once:
per run, the smaller side is searched in the larger (ADR 0046).

Two ids share a key hash with odds of ~n/2^128 per id (n ids held); two payloads of one id
share a digest's first 64 bits with odds of 2^-64 per re-sent id. Neither is worth the bytes
to rule out.

Ids a warm start takes from history (processor/engine/bootstrap.py) have no payload digest: the
lake does not keep one. They hold `UNKNOWN_DIGEST`, and any copy of them counts as re-sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ml_model.features.definitions import DAY

# A run is merged into the one before it once it is at least this fraction of its size: the
# sizes halve along a day's runs, so a day of n ids holds at most log2(n / batch) + 1 runs.
MERGE_FRACTION = 0.5
# The digest of an id whose first copy's payload is not known (taken from history). A real
# payload's digest starts with 64 zero bits with odds of 2^-64; a conflicting copy of such an
# id would then count as re-sent.
UNKNOWN_DIGEST = 0


class FirstCopy(NamedTuple):
    """What the index knows of an id's first copy: its digest's first 64 bits, its event time."""

    digest: int
    event_ms: int


class Run(NamedTuple):
    """Ids as parallel arrays: the key hash's two halves, the digest's 64 bits, the event time."""

    high: np.ndarray  # uint64, sorted within a stored run
    low: np.ndarray  # uint64
    digest: np.ndarray  # uint64
    event_ms: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.high)

    def take(self, positions: Any) -> Run:
        return Run(*(column[positions] for column in self))


EMPTY = Run(
    np.empty(0, np.uint64), np.empty(0, np.uint64), np.empty(0, np.uint64), np.empty(0, np.int64)
)


def key_hashes(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each dedupe key's 128-bit hash, as (high, low) uint64 arrays."""
    both = np.frombuffer(
        b"".join(hashlib.blake2b(key.encode(), digest_size=16).digest() for key in keys),
        dtype="<u8",
    ).reshape(-1, 2)
    return both[:, 0].astype(np.uint64), both[:, 1].astype(np.uint64)


def digest_prefixes(digests: Sequence[str]) -> np.ndarray:
    """Each payload digest's first 64 bits: processor/parse.py's digest is already a hash (a
    blake2b, in hex), so a fifth of the time a second hash would take."""
    joined = "".join(digest[:16] for digest in digests)
    if len(joined) != 16 * len(digests):
        raise ValueError("a payload digest is shorter than 16 hex digits")
    return np.frombuffer(bytes.fromhex(joined), dtype=">u8").astype(np.uint64)


def ids_of(records: Mapping[str, tuple[str, int]]) -> Run:
    """{dedupe key: (payload digest, event ms)} as a Run (state written before this index)."""
    keys = list(records)
    high, low = key_hashes(keys)
    digests = digest_prefixes([records[key][0] for key in keys])
    return Run(high, low, digests, np.array([records[key][1] for key in keys], dtype=np.int64))


def history_ids(keys: Sequence[str], event_ms: Sequence[int]) -> Run:
    """Ids known from history, their payloads unknown: each dedupe key with its event time."""
    high, low = key_hashes(keys)
    return Run(
        high,
        low,
        np.full(len(keys), UNKNOWN_DIGEST, dtype=np.uint64),
        np.asarray(event_ms, dtype=np.int64),
    )


def _sorted(run: Run) -> Run:
    # Stable: two runs concatenated are merged in linear time (numpy's timsort finds them).
    return run.take(np.argsort(run.high, kind="stable"))


def _concat(runs: Sequence[Run]) -> Run:
    return Run(*(np.concatenate(columns) for columns in zip(*runs, strict=True)))


def _find(
    sorted_high: np.ndarray, sorted_low: np.ndarray, high: np.ndarray, low: np.ndarray
) -> np.ndarray:
    """Each queried id's position among the ids (sorted_high, sorted_low), sorted by high, or -1."""
    found = np.full(len(high), -1, dtype=np.int64)
    if not len(sorted_high):
        return found
    at = np.minimum(np.searchsorted(sorted_high, high), len(sorted_high) - 1)
    same_high = sorted_high[at] == high
    hit = same_high & (sorted_low[at] == low)
    found[hit] = at[hit]
    # Another id with the same high half first (odds ~n/2^64): scan that stretch.
    for query in np.flatnonzero(same_high & ~hit):
        position = int(at[query]) + 1
        while position < len(sorted_high) and sorted_high[position] == high[query]:
            if sorted_low[position] == low[query]:
                found[query] = position
                break
            position += 1
    return found


class Queries(NamedTuple):
    """A batch's ids as asked: the distinct ones sorted, and where each query's copy is."""

    high: np.ndarray  # uint64, the distinct ids sorted by (high, low)
    low: np.ndarray
    distinct: np.ndarray  # each query's position in (high, low)
    first: np.ndarray  # each query's first copy: the smallest query position with its id

    @classmethod
    def of(cls, high: np.ndarray, low: np.ndarray) -> Queries:
        order = np.lexsort((low, high))  # stable: equal ids keep their query order
        sorted_high, sorted_low = high[order], low[order]
        starts = np.ones(len(order), dtype=bool)
        starts[1:] = (sorted_high[1:] != sorted_high[:-1]) | (sorted_low[1:] != sorted_low[:-1])
        group = np.cumsum(starts) - 1
        distinct = np.empty(len(order), dtype=np.int64)
        distinct[order] = group
        first = np.empty(len(order), dtype=np.int64)
        first[order] = order[starts][group]
        return cls(sorted_high[starts], sorted_low[starts], distinct, first)

    def matches(self, run: Run) -> tuple[np.ndarray, np.ndarray]:
        """(distinct ids, positions in `run`) of the ids both hold.

        The smaller side is searched in the larger: a batch's 40,000 ids against a day's run of
        4,000 cost 2.5 ms one way and 0.2 ms the other, and 37 such runs made the dedupe the
        engine's step that grew most with the state (ADR 0046).
        """
        if len(run) < len(self.high):
            in_queries = _find(self.high, self.low, run.high, run.low)
            positions = np.flatnonzero(in_queries >= 0)
            return in_queries[positions], positions
        in_run = _find(run.high, run.low, self.high, self.low)
        ids = np.flatnonzero(in_run >= 0)
        return ids, in_run[ids]


class SeenIndex:
    """The ids accepted and not yet expired, by day of event time."""

    def __init__(self) -> None:
        self._days: dict[int, list[Run]] = {}

    @classmethod
    def of(cls, records: Mapping[str, tuple[str, int]]) -> SeenIndex:
        """An index of {dedupe key: (payload digest, event ms)}."""
        index = cls()
        index.add(ids_of(records))
        return index

    def __len__(self) -> int:
        return sum(len(run) for runs in self._days.values() for run in runs)

    @property
    def nbytes(self) -> int:
        """The bytes its arrays hold."""
        return sum(column.nbytes for runs in self._days.values() for run in runs for column in run)

    def runs(self) -> int:
        return sum(len(runs) for runs in self._days.values())

    # ------------------------------------------------------------------ reads
    def lookup(
        self, high: np.ndarray, low: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each queried key hash: whether it is held, its digest prefix, its event ms."""
        return self.lookup_queries(Queries.of(high, low))

    def lookup_queries(self, queries: Queries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`lookup` of queries already grouped (`Queries.of`)."""
        found = np.zeros(len(queries.high), dtype=bool)
        digest = np.zeros(len(queries.high), dtype=np.uint64)
        event_ms = np.zeros(len(queries.high), dtype=np.int64)
        for runs in self._days.values():
            for run in runs:
                ids, positions = queries.matches(run)
                found[ids] = True
                digest[ids] = run.digest[positions]
                event_ms[ids] = run.event_ms[positions]
        back = queries.distinct
        return found[back], digest[back], event_ms[back]

    def get(self, key: str) -> FirstCopy | None:
        high, low = key_hashes([key])
        found, digest, event_ms = self.lookup(high, low)
        return FirstCopy(int(digest[0]), int(event_ms[0])) if found[0] else None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def _all(self) -> Run:
        runs = [run for day in sorted(self._days) for run in self._days[day]]
        every = _concat(runs) if runs else EMPTY
        return every.take(np.lexsort((every.low, every.high)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeenIndex):
            return NotImplemented
        mine, theirs = self._all(), other._all()
        return len(mine) == len(theirs) and all(
            np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    # ------------------------------------------------------------------ writes
    def add(self, ids: Run) -> None:
        """Hold `ids` (not held yet: the engine adds only what `lookup` did not find)."""
        if not len(ids):
            return
        days = ids.event_ms // DAY
        for day in np.unique(days).tolist():
            self._add_run(day, _sorted(ids.take(days == day)))

    def _add_run(self, day: int, run: Run) -> None:
        runs = self._days.setdefault(day, [])
        runs.append(run)
        while len(runs) > 1 and len(runs[-1]) >= MERGE_FRACTION * len(runs[-2]):
            last = runs.pop()
            runs[-1] = _sorted(_concat((runs[-1], last)))

    def expired_days(self, watermark_ms: int, retention_ms: int) -> list[int]:
        """The days whose every id is older than the retention at `watermark_ms`."""
        return sorted(day for day in self._days if (day + 1) * DAY + retention_ms <= watermark_ms)

    def drop_days(self, days: Iterable[int]) -> None:
        for day in days:
            self._days.pop(day, None)

    def discard(self, keys: Sequence[str]) -> None:
        """Forget single ids (changelogs written before this index evicted id by id)."""
        if not keys:
            return
        high, low = key_hashes(keys)
        for day, runs in list(self._days.items()):
            kept = []
            for run in runs:
                position = _find(run.high, run.low, high, low)
                gone = np.zeros(len(run), dtype=bool)
                gone[position[position >= 0]] = True
                if not gone.all():
                    kept.append(run.take(~gone))
            if kept:
                self._days[day] = kept
            else:
                del self._days[day]

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        # One run a day: fewer, larger arrays to write, and a loaded index starts merged.
        days = {day: _sorted(_concat(runs)) for day, runs in self._days.items()}
        return {"days": {day: tuple(run) for day, run in days.items()}}

    def __setstate__(self, saved: dict[str, Any]) -> None:
        self._days = {day: [Run(*columns)] for day, columns in saved["days"].items()}
