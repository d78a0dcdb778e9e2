"""Running aggregates of an entity's short windows, kept beside its recent list.

A card's windows up to a day (the 10-minute and 1-hour amounts; the 24-hour amount, distinct
merchants and countries) and a terminal's distinct cards over 1 and 24 hours were read from the
window's slice of the recent list on every transaction: their cost followed the entity's density
(docs/decisions/0029 for the day, 0030 for the shorter windows). A `RunningWindow` holds those
aggregates for the entries newer than its `cut` (time > cut), and moves its cut forward with the
events, so an event later than everything its entity holds reads them in O(1) plus the entries
that left the window. Keeping a window costs each entry an update on the way in and one on the
way out, more than reading a short slice, so an entity keeps one per window width only while
that window is dense: from `DENSE_FROM` entries, dropped below `SPARSE_BELOW` (ADR 0029).

The windows are derived data, rebuilt from the recent list when missing: they are not saved
with the state (`WINDOWS`, processor/engine/packing.py), and an event that sorts before some
entry of the list (a late one) is computed from the slice as before. Both paths give the same
values: a window sums amounts exactly, as integers in units of 2**-1074 (the finest step a
float has), and its total is that sum correctly rounded, which is what `math.fsum` returns for
the slice.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

_time = itemgetter(0)
# The state's key of an entity's windows, {width in ms: RunningWindow}: derived, never saved.
WINDOWS = "windows"
# A window is built when it holds this many entries, and dropped below the second figure
# (apart, so that an entity near the edge does not build and drop one on every event).
DENSE_FROM = 64
SPARSE_BELOW = 16


# Every finite float is an integer multiple of 2**-1074.
_EXACT_BITS = 1074
_EXACT_ONE = 1 << _EXACT_BITS


def exact(amount: float) -> int:
    """`amount` as an integer number of 2**-1074: exact, so sums of these are too."""
    numerator, denominator = amount.as_integer_ratio()  # the denominator is a power of two
    return numerator << (_EXACT_BITS + 1 - denominator.bit_length())


def exact_total(units: int) -> float:
    """A sum of `exact` values as the float nearest to it (int division rounds correctly),
    the value `math.fsum` gives for the same amounts."""
    return units / _EXACT_ONE


@dataclass(frozen=True)
class WindowFields:
    """What a window aggregates of each entry: values counted distinct, and an amount."""

    distinct: tuple[Callable[[Any], Any], ...]
    amount: Callable[[Any], float] | None = None


class RunningWindow:
    """Aggregates of the entries of a time-sorted list with time > `cut`: how many, the exact
    sum of their amounts (`exact`), and a count per distinct value of each field (zero counts
    removed)."""

    __slots__ = ("amount", "count", "cut", "distinct", "fields")

    def __init__(self, fields: WindowFields, cut: int, entries: Sequence[Any] = ()) -> None:
        self.fields = fields
        self.cut = cut
        self.count = 0
        self.amount = 0
        self.distinct: tuple[dict[Any, int], ...] = tuple({} for _ in fields.distinct)
        for entry in entries:
            self.add(entry)

    @classmethod
    def of(cls, fields: WindowFields, entries: Sequence[Any], cut: int) -> RunningWindow:
        """The window of `entries` (sorted by time) newer than `cut`."""
        return cls(fields, cut, entries[bisect_right(entries, cut, key=_time) :])

    def add(self, entry: Any) -> None:
        self.count += 1
        if self.fields.amount is not None:
            self.amount += exact(self.fields.amount(entry))
        for counts, value in zip(self.distinct, self.fields.distinct, strict=True):
            key = value(entry)
            counts[key] = counts.get(key, 0) + 1

    def remove(self, entry: Any) -> None:
        self.count -= 1
        if self.fields.amount is not None:
            self.amount -= exact(self.fields.amount(entry))
        for counts, value in zip(self.distinct, self.fields.distinct, strict=True):
            key = value(entry)
            left = counts[key] - 1
            if left:
                counts[key] = left
            else:
                del counts[key]

    def advance(self, entries: Sequence[Any], cut: int) -> None:
        """Move the cut forward to `cut`: the entries of `entries` that fall out leave."""
        if cut <= self.cut:
            return
        start = bisect_right(entries, self.cut, key=_time)
        for entry in entries[start : bisect_right(entries, cut, lo=start, key=_time)]:
            self.remove(entry)
        self.cut = cut

    def added(self, entry: Any) -> None:
        """An entry was inserted in the list: counted when it is inside the window."""
        if entry[0] > self.cut:
            self.add(entry)

    def removed(self, entries: Sequence[Any]) -> None:
        """Entries (sorted by time) are about to be deleted from the list."""
        for entry in entries[bisect_right(entries, self.cut, key=_time) :]:
            self.remove(entry)


def running_window(
    state: dict[str, Any], width: int, fields: WindowFields, cut: int, entries: int
) -> RunningWindow | None:
    """The entity's window of width `width` over its recent list `state["tx"]`: the entries
    newer than `cut`, for an event later than every entry. Kept and moved forward, or built
    once the window holds `DENSE_FROM` entries (`entries`); None while it is sparse (read its
    slice instead)."""
    windows: dict[int, RunningWindow] | None = state.get(WINDOWS)
    window = windows.get(width) if windows else None
    if window is None:
        if entries < DENSE_FROM:
            return None
        window = RunningWindow.of(fields, state["tx"], cut)
        state.setdefault(WINDOWS, {})[width] = window
    elif window.cut > cut:
        window = state[WINDOWS][width] = RunningWindow.of(fields, state["tx"], cut)
    else:
        window.advance(state["tx"], cut)
    if window.count < SPARSE_BELOW:
        # Still right for this event; the next ones read the slice.
        windows = state[WINDOWS]
        del windows[width]
        if not windows:
            del state[WINDOWS]
    return window


def entry_added(state: dict[str, Any], entry: Any) -> None:
    """An entry was inserted in the entity's recent list: its windows count it."""
    if windows := state.get(WINDOWS):
        for window in windows.values():
            window.added(entry)


def entries_pruned(state: dict[str, Any], entries: Sequence[Any], end: int) -> None:
    """The first `end` entries of the entity's recent list `entries` are about to be deleted."""
    if windows := state.get(WINDOWS):
        pruned = entries[:end]
        for window in windows.values():
            window.removed(pruned)
