"""Per-terminal features: traffic, distinct cards, and fraud risk from arrived chargebacks.

State is a dict of named entries (picklable, compact), one per terminal:

    tx:     [TerminalTx, ...]             the last RECENT_RETENTION of transactions, sorted by
                                          (time, id): the 1h/24h counts and distinct cards
    hours:  [hour, ...]                   hour tiles (time // HOUR) with transactions, sorted,
    counts: [int, ...]                    and how many each: the 38 days the risk windows read
    cb:     {transaction_id: Disputed}    the chargebacks each transaction has had
    max:    newest event time seen
    windows: {width: RunningWindow} of a busy terminal's distinct cards in 1 and 24 hours
            (derived, not saved; running_window.py)

The risk windows are whole hours, so a terminal keeps one small integer per busy hour for its
38 days instead of every transaction (ADR 0017).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from operator import itemgetter
from typing import Any, NamedTuple

from ml_model.features.definitions import (
    HOUR,
    LABEL_DELAY,
    LATE_EVENT_SLACK,
    LONGEST_LOOKBACK,
    TERMINAL_RETENTION,
    TERMINAL_RISK_WINDOWS,
    TERMINAL_WINDOWS,
)
from ml_model.features.events import CHARGEBACK, TRANSACTION, FeatureEvent
from ml_model.features.running_window import (
    RunningWindow,
    WindowFields,
    entries_pruned,
    entry_added,
    running_window,
)

TerminalState = dict[str, Any]
Features = dict[str, float]


class TerminalTx(NamedTuple):
    time_ms: int
    tx_id: str
    card: str | None


class Chargeback(NamedTuple):
    arrival_ms: int  # its event time: when the label became known
    chargeback_id: str
    confirmed: bool  # False: the issuer confirmed the transaction genuine


class Disputed(NamedTuple):
    tx_time_ms: int
    chargebacks: list[Chargeback]


# Key functions of the recent list: (time, id), its sort order, and time (C-level getters:
# bisect calls its key on every probe).
_order = itemgetter(0, 1)
_time = itemgetter(0)


# The exact transactions kept: the longest traffic window, plus the slack a late event may have.
RECENT_RETENTION = max(TERMINAL_WINDOWS.values()) + LATE_EVENT_SLACK
# Hour tiles kept: the longest risk window, the hour its end is rounded down to, the same slack.
TILE_RETENTION = LONGEST_LOOKBACK + HOUR + LATE_EVENT_SLACK


def empty_terminal_state() -> TerminalState:
    return {"tx": [], "hours": [], "counts": [], "cb": {}, "max": None}


def risk_window_hours(t: int) -> dict[str, tuple[int, int]]:
    """Each risk window of an event at `t` as hour tiles [first, end): the whole hours before
    the hour that holds t - LABEL_DELAY (a label needs the delay to arrive)."""
    end = (t - LABEL_DELAY) // HOUR
    return {name: (end - width // HOUR, end) for name, width in TERMINAL_RISK_WINDOWS.items()}


def _confirmed_by(chargebacks: list[Chargeback], t: int) -> bool:
    """Whether the latest chargeback that had arrived by `t` confirms fraud.

    A chargeback sorts before a transaction of the same millisecond, so arrival <= t counts.
    """
    if len(chargebacks) == 1:  # the usual case, on every transaction's path: no list, no max
        only = chargebacks[0]
        return only.arrival_ms <= t and only.confirmed
    arrived = [c for c in chargebacks if c.arrival_ms <= t]
    if not arrived:
        return False
    return max(arrived, key=lambda c: (c.arrival_ms, c.chargeback_id)).confirmed


# The registry's names of each window's features (ml_model/features/registry.py).
_HOUR_WINDOW, _DAY_WINDOW = TERMINAL_WINDOWS["1h"], TERMINAL_WINDOWS["24h"]
_RISK_FEATURES = {"1d": "terminal_risk_1d", "7d": "terminal_risk_7d", "30d": "terminal_risk_30d"}
_NO_RISK = dict.fromkeys(_RISK_FEATURES.values(), 0.0)
_card = itemgetter(2)
_CARD_FIELDS = WindowFields(distinct=(_card,))


def terminal_features(state: TerminalState, event: FeatureEvent) -> Features:
    """Traffic from the terminal's recent transactions; risk from its hour tiles and chargebacks.

    Counts come from binary searches on the time-sorted recent list; distinct cards from a
    busy terminal's running windows (else the window's slice); risk from C-level sums over the
    tiles and the (few) chargebacks. So a terminal costs O(log n) plus its labels (and a quiet
    terminal's day), not its busy hours or its 38-day history.
    Without a confirmed chargeback in its windows a terminal's risk is 0 whatever its traffic,
    so its tiles are not read (most terminals, on most transactions).
    """
    t = event.time_ms
    txs = state["tx"]
    pos = bisect_left(txs, (t, event.event_id), key=_order)
    # An entry is in window W when t - W < its time: the first such is bisect_right(t - W).
    # The last hour's entries are among the last day's.
    hour_start = bisect_right(txs, t - _HOUR_WINDOW, hi=pos, key=_time)
    day_start = bisect_right(txs, t - _DAY_WINDOW, hi=hour_start, key=_time)
    # A busy terminal's running windows, for an event later than every transaction it holds.
    hour = day = None
    if pos == len(txs):
        hour = running_window(state, _HOUR_WINDOW, _CARD_FIELDS, t - _HOUR_WINDOW, pos - hour_start)
        day = running_window(state, _DAY_WINDOW, _CARD_FIELDS, t - _DAY_WINDOW, pos - day_start)
    features: Features = {
        "terminal_tx_count_1h": float(pos - hour_start),
        "terminal_tx_count_24h": float(pos - day_start),
        "terminal_cards_1h": float(_distinct_cards(hour, txs, hour_start, pos)),
        "terminal_cards_24h": float(_distinct_cards(day, txs, day_start, pos)),
    }
    if not state["cb"]:
        features.update(_NO_RISK)
        return features
    windows = risk_window_hours(t)
    oldest = min(first for first, _ in windows.values()) * HOUR
    confirmed = [
        disputed.tx_time_ms // HOUR
        for disputed in state["cb"].values()
        if disputed.tx_time_ms >= oldest and _confirmed_by(disputed.chargebacks, t)
    ]
    if not confirmed:
        features.update(_NO_RISK)
        return features
    hours, counts = state["hours"], state["counts"]
    for name, (first, end) in windows.items():
        n = sum(counts[bisect_left(hours, first) : bisect_left(hours, end)])
        frauds = sum(1 for hour in confirmed if first <= hour < end)
        features[_RISK_FEATURES[name]] = min(frauds, n) / n if n else 0.0
    return features


def _distinct_cards(
    window: RunningWindow | None, txs: list[TerminalTx], start: int, end: int
) -> int:
    """Distinct cards of the window txs[start:end]: from its running window if it has one."""
    if window is not None:
        return len(window.distinct[0])
    return len(set(map(_card, txs[start:end])))


def apply_terminal_event(state: TerminalState, event: FeatureEvent) -> None:
    t = event.time_ms
    if event.kind == TRANSACTION:
        entry = TerminalTx(t, event.event_id, event.card)
        insort(state["tx"], entry, key=_order)
        entry_added(state, entry)
        _count_in_tile(state, t // HOUR)
    elif event.kind == CHARGEBACK and event.transaction_id is not None:
        tx_time = event.transaction_time_ms if event.transaction_time_ms is not None else t
        disputed = state["cb"].setdefault(event.transaction_id, Disputed(tx_time, []))
        if not any(c.chargeback_id == event.event_id for c in disputed.chargebacks):
            disputed.chargebacks.append(Chargeback(t, event.event_id, bool(event.confirmed_fraud)))
    state["max"] = t if state["max"] is None else max(state["max"], t)
    _prune(state)


def _count_in_tile(state: TerminalState, hour: int) -> None:
    hours, counts = state["hours"], state["counts"]
    i = bisect_left(hours, hour)
    if i < len(hours) and hours[i] == hour:
        counts[i] += 1
    else:
        hours.insert(i, hour)
        counts.insert(i, 1)


def _prune(state: TerminalState) -> None:
    # The lists are sorted: their first entries say whether anything is due (usually not).
    newest = state["max"]
    txs, oldest_tx = state["tx"], newest - RECENT_RETENTION
    if txs and txs[0].time_ms < oldest_tx:
        cut = bisect_left(txs, oldest_tx, key=_time)
        entries_pruned(state, txs, cut)
        del txs[:cut]
    first_hour = (newest - TILE_RETENTION) // HOUR
    if state["hours"] and state["hours"][0] < first_hour:
        cut = bisect_left(state["hours"], first_hour)
        del state["hours"][:cut]
        del state["counts"][:cut]
        horizon = first_hour * HOUR
        stale = [tx_id for tx_id, d in state["cb"].items() if d.tx_time_ms < horizon]
        for tx_id in stale:
            del state["cb"][tx_id]


def with_tiles(state: TerminalState) -> TerminalState:
    """A terminal's state as kept before the hour tiles (every transaction of its 38 days),
    in today's form: the same tiles and recent list the current code would have built."""
    if "hours" in state:
        return state
    upgraded = {**empty_terminal_state(), "tx": state["tx"], "cb": state["cb"], "max": state["max"]}
    for entry in upgraded["tx"]:
        _count_in_tile(upgraded, entry.time_ms // HOUR)
    if upgraded["max"] is not None:
        _prune(upgraded)
    return upgraded


def update_terminal(
    state: TerminalState, events: list[FeatureEvent]
) -> tuple[TerminalState, list[tuple[FeatureEvent, Features]]]:
    """(state, events) -> (state, terminal features of each transaction); in place, key order."""
    out: list[tuple[FeatureEvent, Features]] = []
    for event in sorted(events, key=lambda e: e.key):
        if state["max"] is not None and event.time_ms - state["max"] >= TERMINAL_RETENTION:
            state = empty_terminal_state()  # idle past retention: what the stream's timer evicts
        if event.kind == TRANSACTION:
            out.append((event, terminal_features(state, event)))
        apply_terminal_event(state, event)
    return state, out
