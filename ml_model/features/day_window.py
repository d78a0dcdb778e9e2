"""Running aggregates of an entity's last day, kept beside its recent list.

A card's 24-hour features (amount, distinct merchants and countries) and a terminal's distinct
cards over 24 hours were read from the day's slice of the recent list on every transaction:
their cost followed the entity's density (a card with 300 transactions a day paid 71-101 µs
per event against 39-40 with 10; docs/decisions/0029). A `DayWindow` holds those aggregates for the
entries newer than its `cut` (time > cut), and moves its cut forward with the events, so an event
later than everything its entity holds reads them in O(1) plus the entries that left the day.
Keeping a window costs each entry an update on the way in and one on the way out, more than
reading a short slice, so an entity has one only while its day is dense: from `DENSE_FROM`
entries, dropped below `SPARSE_BELOW` (docs/decisions/0029).

The window is derived data, rebuilt from the recent list when missing: it is not saved with the
state (processor/engine/packing.py), and an event that sorts before some entry of the list (a
late one) is computed from the slice as before. Both paths give the same values: the window
sums amounts exactly, as integers in units of 2**-1074 (the finest step a float has), and its
total is that sum correctly rounded, which is what `math.fsum` returns for the slice.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

_time = itemgetter(0)
# A window is built when the day holds this many entries, and dropped below the second figure
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


class DayWindow:
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
    def of(cls, fields: WindowFields, entries: Sequence[Any], cut: int) -> DayWindow:
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


def day_window(
    state: dict[str, Any], fields: WindowFields, cut: int, day_entries: int
) -> DayWindow | None:
    """The entity's window of its recent list `state["tx"]` newer than `cut`, for an event later
    than every entry: kept and moved forward, or built once the day holds `DENSE_FROM`
    entries (`day_entries`); None while the day is sparse (read its slice instead)."""
    window: DayWindow | None = state.get("day")
    if window is None:
        if day_entries < DENSE_FROM:
            return None
        window = state["day"] = DayWindow.of(fields, state["tx"], cut)
    elif window.cut > cut:
        window = state["day"] = DayWindow.of(fields, state["tx"], cut)
    else:
        window.advance(state["tx"], cut)
    if window.count < SPARSE_BELOW:
        del state["day"]  # still right for this event; the next ones read the slice
    return window
