"""Per-card features: velocity, amount vs history, travel, merchants, devices, failed logins.

State is a dict of named entries (picklable, compact), one per card:

    tx:     [CardTx, ...]               the last RECENT_RETENTION of transactions, and the one
                                        before them (the previous transaction), sorted by
                                        (time, id): the windows up to 24 h, travel, merchants
    hours:  [hour, ...]                 hour tiles (time // HOUR) with transactions, sorted,
    counts: [int, ...]                  how many each,
    sums:   [int, ...]                  and their amounts in micro-units: the 7- and 30-day
                                        windows
    dev:    {device_id: FirstUse}       first use of each device
    fail:   [FailedLogin, ...]          failed logins, sorted
    max:    newest event time seen (drives pruning)
    windows: {width: RunningWindow} of a busy card's 10-minute, 1-hour and 24-hour windows
            (derived, not saved; running_window.py)
    tile_totals: (array, array) running totals of counts and sums (int64), one more entry
            than the tiles (derived, not saved; `_tile_totals`)

Windows longer than a day are read from the tiles: the whole hours after the hour that holds
t - W, plus the current hour's transactions before the event (ADR 0017). Tile sums are
integers, so they do not depend on the order the amounts were added in, and a window's sum is
the difference of two running totals (ADR 0047): the same integer as summing its tiles.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right, insort
from itertools import accumulate
from operator import itemgetter
from typing import Any, NamedTuple

from ml_model.features.definitions import (
    CARD_MEAN_WINDOW,
    CARD_RETENTION,
    CARD_WINDOWS,
    DAY,
    FAILED_LOGIN_WINDOW,
    HOUR,
    LATE_EVENT_SLACK,
    MIN_TRAVEL_GAP,
)
from ml_model.features.events import AUTH, TRANSACTION, FeatureEvent
from ml_model.features.running_window import (
    WindowFields,
    entries_pruned,
    entry_added,
    exact_total,
    running_window,
)

CardState = dict[str, Any]
Features = dict[str, float]


class CardTx(NamedTuple):
    time_ms: int
    tx_id: str
    amount: float
    merchant: str | None
    country: str | None
    latitude: float | None
    longitude: float | None


class FirstUse(NamedTuple):
    time_ms: int
    tx_id: str


class FailedLogin(NamedTuple):
    time_ms: int
    auth_id: str


# Key functions of both lists: (time, id), their sort order, and time. bisect calls its key on
# every probe, so they are C-level getters rather than Python functions.
_order = itemgetter(0, 1)
_time = itemgetter(0)
# Fields the day's features read from each recent transaction (C-level, as above).
_amount, _merchant, _country = itemgetter(2), itemgetter(3), itemgetter(4)


_NAN = math.nan
_EARTH_KM = 6371.0


# The exact transactions kept: the longest exact window, plus the slack a late event may have.
RECENT_RETENTION = DAY + LATE_EVENT_SLACK
# The hour tiles kept: the longest window, plus the same slack.
TILE_RETENTION = CARD_MEAN_WINDOW + LATE_EVENT_SLACK
# Windows longer than this are read from the hour tiles.
EXACT_UP_TO = DAY
_MICRO = 1_000_000
# What the running windows aggregate: the amounts (10 minutes, 1 hour), and distinct merchants
# and countries too (24 hours).
_AMOUNT_FIELDS = WindowFields(distinct=(), amount=_amount)
_DAY_FIELDS = WindowFields(distinct=(_merchant, _country), amount=_amount)


def empty_card_state() -> CardState:
    return {"tx": [], "hours": [], "counts": [], "sums": [], "dev": {}, "fail": [], "max": None}


# The state's key of a card's running tile totals: derived, never saved (processor/engine/packing).
TILE_TOTALS = "tile_totals"


def _tile_totals(state: CardState) -> tuple[array[int], array[int]]:
    """Running totals of the card's tile counts and sums: entry i is the total of the tiles
    before tile i, so tiles [a, b) total `totals[b] - totals[a]`. Built when missing.

    int64 arrays: 8 bytes an entry, where a list of Python ints took ~40 (the sums are large
    ints). A card's amounts would need ~9 million transactions of the contract's maximum
    amount to overflow one, which raises rather than wraps.
    """
    totals = state.get(TILE_TOTALS)
    if totals is None:
        totals = state[TILE_TOTALS] = (
            array("q", accumulate(state["counts"], initial=0)),
            array("q", accumulate(state["sums"], initial=0)),
        )
    return totals


def _micro(amount: float) -> int:
    return round(amount * _MICRO)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


def event_features(event: FeatureEvent) -> Features:
    """Features of the transaction itself (UTC clock: the contract carries no local time)."""
    hour = (event.time_ms // HOUR) % 24
    weekday = (event.time_ms // DAY + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    return {
        "tx_amount": float(event.amount or 0.0),
        "tx_is_ecom": float(event.channel == "ecom"),
        "tx_is_atm": float(event.channel == "atm"),
        "tx_is_night": float(hour < 6),
        "tx_is_weekend": float(weekday >= 5),
    }


# The windows, in the registry's names of their count and amount features
# (ml_model/features/registry.py): those up to EXACT_UP_TO from the recent list, the rest from
# the hour tiles.
_EXACT_WINDOWS = (
    ("card_tx_count_10m", "card_tx_amount_10m", CARD_WINDOWS["10m"]),
    ("card_tx_count_1h", "card_tx_amount_1h", CARD_WINDOWS["1h"]),
)
_DAY_WINDOW = ("card_tx_count_24h", "card_tx_amount_24h", CARD_WINDOWS["24h"])
_TILED_WINDOWS = (("card_tx_count_7d", "card_tx_amount_7d", CARD_WINDOWS["7d"]),)
# The recent list is cut at t - DAY, so the day's window is that whole slice.
assert _DAY_WINDOW[2] == DAY == EXACT_UP_TO
assert all(width < DAY for *_, width in _EXACT_WINDOWS)
assert all(DAY < width for *_, width in _TILED_WINDOWS)


def card_features(state: CardState, event: FeatureEvent) -> Features:
    """Features of a transaction from the card's events that sort before it (never itself).

    Counts of windows up to a day are binary searches on the recent list. Their amounts (and
    the day's distinct values) come from the card's running window of that width when the
    window is busy and the event is later than every transaction the card holds, else from the
    window's slice (exact sums: math.fsum). Longer windows are C-level sums over the hour
    tiles. A transaction costs O(log n) plus the short windows of a quiet card, not a Python
    loop over its busy hours or 30 days.
    """
    t = event.time_ms
    txs = state["tx"]
    pos = bisect_left(txs, (t, event.event_id), key=_order)
    # An entry is in window W when t - W < its time: the first such is bisect_right(t - W).
    day_start = bisect_right(txs, t - DAY, hi=pos, key=_time)
    # A busy card's running windows serve an event later than every transaction it holds (a
    # late one has transactions after it in the list, not in its windows).
    in_order = pos == len(txs)
    features: Features = {}
    for count_name, amount_name, width in _EXACT_WINDOWS:
        start = bisect_right(txs, t - width, lo=day_start, hi=pos, key=_time)
        features[count_name] = float(pos - start)
        window = (
            running_window(state, width, _AMOUNT_FIELDS, t - width, pos - start)
            if in_order
            else None
        )
        total = (
            exact_total(window.amount)
            if window is not None
            else math.fsum(map(_amount, txs[start:pos]))
        )
        features[amount_name] = round(total, 6)
    window = running_window(state, DAY, _DAY_FIELDS, t - DAY, pos - day_start) if in_order else None
    if window is not None:
        day_amount = exact_total(window.amount)
        merchants, countries = (len(values) for values in window.distinct)
    else:
        last_day = txs[day_start:pos]
        day_amount = math.fsum(map(_amount, last_day))
        merchants = len(set(map(_merchant, last_day)))
        countries = len(set(map(_country, last_day)))
    count_name, amount_name, _ = _DAY_WINDOW
    features[count_name] = float(pos - day_start)
    features[amount_name] = round(day_amount, 6)
    # Tiled windows: the whole hours after the one holding t - W, plus this hour's
    # transactions before the event.
    this_hour = t // HOUR
    hours, counts, sums = state["hours"], state["counts"], state["sums"]
    tiles_end = bisect_left(hours, this_hour)
    newest = state["max"]
    if in_order and (newest is None or this_hour * HOUR >= newest - RECENT_RETENTION):
        # Every transaction the card holds sorts before the event and none of this hour's was
        # pruned, so this hour's tile is exactly its transactions before the event (integer
        # sums: the same whatever the order). The usual case: events in order.
        here = tiles_end < len(hours) and hours[tiles_end] == this_hour
        hour_count = counts[tiles_end] if here else 0
        hour_micro = sums[tiles_end] if here else 0
    else:
        in_this_hour = bisect_left(txs, this_hour * HOUR, lo=day_start, hi=pos, key=_time)
        hour_count = pos - in_this_hour
        hour_micro = sum(map(_micro, map(_amount, txs[in_this_hour:pos])))
    # The whole hours' tiles, [first, tiles_end), from the running totals: O(1) a window, where
    # summing the tiles cost a card's 30 days of them.
    count_totals, micro_totals = _tile_totals(state)
    counted, summed = count_totals[tiles_end], micro_totals[tiles_end]
    for count_name, amount_name, width in _TILED_WINDOWS:
        first = bisect_left(hours, (t - width) // HOUR + 1, hi=tiles_end)
        features[count_name] = float(counted - count_totals[first] + hour_count)
        features[amount_name] = round((summed - micro_totals[first] + hour_micro) / _MICRO, 6)
    first = bisect_left(hours, (t - CARD_MEAN_WINDOW) // HOUR + 1, hi=tiles_end)
    mean_count = counted - count_totals[first] + hour_count
    mean_micro = summed - micro_totals[first] + hour_micro
    amount = float(event.amount or 0.0)
    features["card_amount_to_mean_30d"] = (
        amount / (mean_micro / _MICRO / mean_count) if mean_count and mean_micro > 0 else _NAN
    )
    seconds = km = kmh = _NAN
    if pos > 0:
        prev = txs[pos - 1]
        gap = t - prev.time_ms
        seconds = gap / 1000.0
        if None not in (prev.latitude, prev.longitude, event.latitude, event.longitude):
            km = haversine_km(prev.latitude, prev.longitude, event.latitude, event.longitude)  # type: ignore[arg-type]
            kmh = km / (max(gap, MIN_TRAVEL_GAP) / HOUR)
    features["card_seconds_since_prev"] = seconds
    features["card_km_from_prev"] = km
    features["card_kmh_from_prev"] = kmh
    features["card_merchants_24h"] = float(merchants)
    features["card_countries_24h"] = float(countries)
    first_use = state["dev"].get(event.device) if event.device else None
    seen = first_use is not None and first_use < (t, event.event_id)
    features["card_new_device"] = float(event.device is not None and not seen)
    # A failed login sorts before a transaction of the same millisecond (events.event_key).
    fails = state["fail"]
    features["card_failed_logins_1h"] = float(
        sum(1 for login in fails if t - FAILED_LOGIN_WINDOW < login.time_ms <= t) if fails else 0
    )
    return features


def apply_card_event(state: CardState, event: FeatureEvent) -> None:
    """Add an event to the card's state (after its own features were computed)."""
    t = event.time_ms
    if event.kind == TRANSACTION:
        entry = CardTx(
            t,
            event.event_id,
            float(event.amount or 0.0),
            event.merchant,
            event.country,
            event.latitude,
            event.longitude,
        )
        insort(state["tx"], entry, key=_order)
        entry_added(state, entry)
        _add_to_tile(state, t // HOUR, _micro(entry.amount))
        if event.device:
            first = state["dev"].get(event.device)
            if first is None or (t, event.event_id) < first:
                state["dev"][event.device] = FirstUse(t, event.event_id)
    elif event.kind == AUTH and event.success is False:
        insort(state["fail"], FailedLogin(t, event.event_id))
    state["max"] = t if state["max"] is None else max(state["max"], t)
    _prune(state)


def _add_to_tile(state: CardState, hour: int, micro: int) -> None:
    hours = state["hours"]
    i = bisect_left(hours, hour)
    if i < len(hours) and hours[i] == hour:
        state["counts"][i] += 1
        state["sums"][i] += micro
    else:
        hours.insert(i, hour)
        state["counts"].insert(i, 1)
        state["sums"].insert(i, micro)
    totals = state.get(TILE_TOTALS)
    if totals is None:
        return
    if i < len(hours) - 1:  # an earlier hour (a late event): every later total moves
        del state[TILE_TOTALS]
        return
    # The newest tile, the usual case: only the total after it changes.
    count_totals, micro_totals = totals
    if len(count_totals) == len(hours):  # the tile is new
        count_totals.append(count_totals[-1])
        micro_totals.append(micro_totals[-1])
    count_totals[-1] += 1
    micro_totals[-1] += micro


def _prune(state: CardState) -> None:
    # Each list is sorted, so its first entries say whether anything is due: most events prune
    # nothing, and they pay a comparison instead of a binary search.
    newest = state["max"]
    # Keep one transaction before the recent ones: the previous of any event after the cut.
    txs, oldest_tx = state["tx"], newest - RECENT_RETENTION
    if len(txs) > 1 and txs[1].time_ms < oldest_tx:
        cut = bisect_left(txs, oldest_tx, key=_time) - 1
        entries_pruned(state, txs, cut)
        del txs[:cut]
    hours, oldest_hour = state["hours"], (newest - TILE_RETENTION) // HOUR
    if hours and hours[0] < oldest_hour:
        cut = bisect_left(hours, oldest_hour)
        # Running totals keep their differences when their first entries go.
        totals = state.get(TILE_TOTALS, ())
        for tiles in (hours, state["counts"], state["sums"], *totals):
            del tiles[:cut]
    fails, oldest_fail = state["fail"], newest - FAILED_LOGIN_WINDOW - LATE_EVENT_SLACK
    if fails and fails[0].time_ms < oldest_fail:
        del fails[: bisect_left(fails, oldest_fail, key=_time)]


def with_tiles(state: CardState) -> CardState:
    """A card's state as kept before the hour tiles (every transaction of its 31 days), in
    today's form: the same tiles and recent list the current code would have built."""
    if "hours" in state:
        return state
    upgraded = {**empty_card_state(), **state}
    upgraded.pop(TILE_TOTALS, None)  # derived from tiles it did not have
    for entry in upgraded["tx"]:
        _add_to_tile(upgraded, entry.time_ms // HOUR, _micro(entry.amount))
    if upgraded["max"] is not None:
        _prune(upgraded)
    return upgraded


def update_card(
    state: CardState, events: list[FeatureEvent]
) -> tuple[CardState, list[tuple[FeatureEvent, Features]]]:
    """(state, events) -> (state, features of each transaction). Updates `state` in place.

    Events are applied in event-key order, so a batch gives the same result whatever order its
    events arrived in; each transaction's features see only events that sort before it.
    """
    out: list[tuple[FeatureEvent, Features]] = []
    for event in sorted(events, key=lambda e: e.key):
        if state["max"] is not None and event.time_ms - state["max"] >= CARD_RETENTION:
            state = empty_card_state()  # idle past retention: what the stream's timer evicts
        if event.kind == TRANSACTION:
            features = event_features(event)
            features.update(card_features(state, event))
            out.append((event, features))
        apply_card_event(state, event)
    return state, out
