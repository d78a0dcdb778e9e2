"""Per-terminal features: traffic, distinct cards, and fraud risk from arrived chargebacks.

State (plain JSON-friendly dict):

    tx:  [[time_ms, transaction_id, card_token], ...]      sorted by (time, id)
    cb:  {transaction_id: [transaction_time_ms, [[arrival_ms, chargeback_id, confirmed], ...]]}
    max: newest event time seen
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Any

from ml_model.features.definitions import (
    LABEL_DELAY,
    TERMINAL_RETENTION,
    TERMINAL_RISK_WINDOWS,
    TERMINAL_WINDOWS,
)
from ml_model.features.events import CHARGEBACK, TRANSACTION, FeatureEvent

TerminalState = dict[str, Any]
Features = dict[str, float]

_RISK_REACH = LABEL_DELAY + max(TERMINAL_RISK_WINDOWS.values())


def empty_terminal_state() -> TerminalState:
    return {"tx": [], "cb": {}, "max": None}


def _confirmed_by(chargebacks: list[list[Any]], t: int) -> bool:
    """Whether the latest chargeback that had arrived by `t` confirms fraud.

    A chargeback sorts before a transaction of the same millisecond, so arrival <= t counts.
    """
    arrived = [c for c in chargebacks if c[0] <= t]
    if not arrived:
        return False
    return bool(max(arrived, key=lambda c: (c[0], c[1]))[2])


def terminal_features(state: TerminalState, event: FeatureEvent) -> Features:
    t = event.time_ms
    txs = state["tx"]
    pos = bisect_left(txs, (t, event.event_id), key=lambda e: (e[0], e[1]))
    counts = dict.fromkeys(TERMINAL_WINDOWS, 0)
    cards: dict[str, set[str]] = {name: set() for name in TERMINAL_WINDOWS}
    risk_tx = dict.fromkeys(TERMINAL_RISK_WINDOWS, 0)
    risk_fraud = dict.fromkeys(TERMINAL_RISK_WINDOWS, 0)
    chargebacks = state["cb"]
    for i in range(pos - 1, -1, -1):
        time_ms, tx_id, card = txs[i]
        age = t - time_ms
        if age >= _RISK_REACH:
            break
        for name, width in TERMINAL_WINDOWS.items():
            if age < width:
                counts[name] += 1
                cards[name].add(card)
        if age < LABEL_DELAY:
            continue
        known = tx_id in chargebacks and _confirmed_by(chargebacks[tx_id][1], t)
        for name, width in TERMINAL_RISK_WINDOWS.items():
            if age < LABEL_DELAY + width:
                risk_tx[name] += 1
                risk_fraud[name] += known
    features: Features = {}
    for name in TERMINAL_WINDOWS:
        features[f"terminal_tx_count_{name}"] = float(counts[name])
    for name in TERMINAL_WINDOWS:
        features[f"terminal_cards_{name}"] = float(len(cards[name]))
    for name in TERMINAL_RISK_WINDOWS:
        n = risk_tx[name]
        features[f"terminal_risk_{name}"] = risk_fraud[name] / n if n else 0.0
    return features


def apply_terminal_event(state: TerminalState, event: FeatureEvent) -> None:
    t = event.time_ms
    if event.kind == TRANSACTION:
        insort(state["tx"], [t, event.event_id, event.card], key=lambda e: (e[0], e[1]))
    elif event.kind == CHARGEBACK and event.transaction_id is not None:
        tx_time = event.transaction_time_ms if event.transaction_time_ms is not None else t
        entry = state["cb"].setdefault(event.transaction_id, [tx_time, []])
        if not any(c[1] == event.event_id for c in entry[1]):
            entry[1].append([t, event.event_id, bool(event.confirmed_fraud)])
    state["max"] = t if state["max"] is None else max(state["max"], t)
    _prune(state)


def _prune(state: TerminalState) -> None:
    horizon = state["max"] - TERMINAL_RETENTION
    cut = bisect_left(state["tx"], horizon, key=lambda e: e[0])
    if cut:
        del state["tx"][:cut]
        stale = [tx_id for tx_id, (tx_time, _) in state["cb"].items() if tx_time < horizon]
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
