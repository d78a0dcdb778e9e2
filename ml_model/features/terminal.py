"""Per-terminal features: traffic, distinct cards, and fraud risk from arrived chargebacks.

State is a dict of named entries (picklable, compact: tuples), one per terminal:

    tx:  [TerminalTx, ...]                        sorted by (time, id)
    cb:  {transaction_id: Disputed}               the chargebacks each transaction has had
    max: newest event time seen
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import Any, NamedTuple

from ml_model.features.definitions import (
    LABEL_DELAY,
    TERMINAL_RETENTION,
    TERMINAL_RISK_WINDOWS,
    TERMINAL_WINDOWS,
)
from ml_model.features.events import CHARGEBACK, TRANSACTION, FeatureEvent

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


def _order(entry: TerminalTx) -> tuple[int, str]:
    return entry[0], entry[1]


def _time(entry: TerminalTx) -> int:
    return entry[0]


def empty_terminal_state() -> TerminalState:
    return {"tx": [], "cb": {}, "max": None}


def _confirmed_by(chargebacks: list[Chargeback], t: int) -> bool:
    """Whether the latest chargeback that had arrived by `t` confirms fraud.

    A chargeback sorts before a transaction of the same millisecond, so arrival <= t counts.
    """
    arrived = [c for c in chargebacks if c.arrival_ms <= t]
    if not arrived:
        return False
    return max(arrived, key=lambda c: (c.arrival_ms, c.chargeback_id)).confirmed


# The registry's names of each window's features (ml_model/features/registry.py).
_COUNT_FEATURES = {"1h": "terminal_tx_count_1h", "24h": "terminal_tx_count_24h"}
_CARDS_FEATURES = {"1h": "terminal_cards_1h", "24h": "terminal_cards_24h"}
_RISK_FEATURES = {"1d": "terminal_risk_1d", "7d": "terminal_risk_7d", "30d": "terminal_risk_30d"}


def terminal_features(state: TerminalState, event: FeatureEvent) -> Features:
    """Traffic from the terminal's recent transactions; risk from the chargebacks it has.

    Counts come from binary searches on the time-sorted list, distinct cards from the last
    day's slice, and risk from the (few) chargebacks, so a busy terminal costs O(log n) plus
    its last day and its labels, not its whole 38-day history.
    """
    t = event.time_ms
    txs = state["tx"]
    pos = bisect_left(txs, (t, event.event_id), key=_order)

    def since(horizon: int) -> int:
        """Index of the first earlier transaction with time > horizon."""
        return bisect_right(txs, horizon, hi=pos, key=_time)

    features: Features = {}
    starts = {name: since(t - width) for name, width in TERMINAL_WINDOWS.items()}
    for name in TERMINAL_WINDOWS:
        features[_COUNT_FEATURES[name]] = float(pos - starts[name])
    for name in TERMINAL_WINDOWS:
        cards = {txs[i].card for i in range(starts[name], pos)}
        features[_CARDS_FEATURES[name]] = float(len(cards))
    # Risk windows hold transactions with t - D - W < time <= t - D.
    delayed_end = since(t - LABEL_DELAY)
    confirmed = [
        disputed.tx_time_ms
        for disputed in state["cb"].values()
        if disputed.tx_time_ms <= t - LABEL_DELAY and _confirmed_by(disputed.chargebacks, t)
    ]
    for name, width in TERMINAL_RISK_WINDOWS.items():
        low = t - LABEL_DELAY - width
        n = delayed_end - since(low)
        frauds = sum(1 for tx_time in confirmed if tx_time > low)
        features[_RISK_FEATURES[name]] = min(frauds, n) / n if n else 0.0
    return features


def apply_terminal_event(state: TerminalState, event: FeatureEvent) -> None:
    t = event.time_ms
    if event.kind == TRANSACTION:
        insort(state["tx"], TerminalTx(t, event.event_id, event.card), key=_order)
    elif event.kind == CHARGEBACK and event.transaction_id is not None:
        tx_time = event.transaction_time_ms if event.transaction_time_ms is not None else t
        disputed = state["cb"].setdefault(event.transaction_id, Disputed(tx_time, []))
        if not any(c.chargeback_id == event.event_id for c in disputed.chargebacks):
            disputed.chargebacks.append(Chargeback(t, event.event_id, bool(event.confirmed_fraud)))
    state["max"] = t if state["max"] is None else max(state["max"], t)
    _prune(state)


def _prune(state: TerminalState) -> None:
    horizon = state["max"] - TERMINAL_RETENTION
    cut = bisect_left(state["tx"], horizon, key=_time)
    if cut:
        del state["tx"][:cut]
        stale = [tx_id for tx_id, d in state["cb"].items() if d.tx_time_ms < horizon]
        for tx_id in stale:
            del state["cb"][tx_id]


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
