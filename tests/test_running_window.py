"""The running windows (ml_model/features/running_window.py): a card's 10-minute, 1-hour and
24-hour aggregates and a terminal's 1-hour and 24-hour ones, kept running across batches, give
the windows' definition exactly, whatever arrives late, is pruned, or resets the entity; and
they are never saved."""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from ml_model.features import FeatureEvent, empty_card_state, empty_terminal_state, running_window
from ml_model.features.card import TILE_TOTALS, update_card
from ml_model.features.definitions import (
    CARD_RETENTION,
    CARD_WINDOWS,
    DAY,
    HOUR,
    LATE_EVENT_SLACK,
    MINUTE,
)
from ml_model.features.running_window import WINDOWS
from ml_model.features.terminal import update_terminal
from processor.engine.packing import pack_card, pack_terminal, unpack_card, unpack_terminal
from tests.test_features import T0, chargeback, tx

STEPS = [0, 1, MINUTE, 10 * MINUTE, HOUR, DAY - 1, DAY, DAY + 1, 3 * DAY]
# Transactions a minute apart; a burst of 80 five seconds apart (more than the shipped
# DENSE_FROM in ten minutes); then events far ahead of them and no transaction: the entity
# prunes entries its windows hold.
BUSY_HOUR, BURST, ALONE = range(590, 600), range(600, 680), range(680, 683)


@pytest.fixture(params=[(2, 1), (8, 4), (running_window.DENSE_FROM, running_window.SPARSE_BELOW)])
def dense_from(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """When an entity keeps a window: from its second entry in it (the window nearly always),
    from 8 (built and dropped many times over), and as shipped."""
    build, drop = request.param
    monkeypatch.setattr(running_window, "DENSE_FROM", build)
    monkeypatch.setattr(running_window, "SPARSE_BELOW", drop)
    return int(build)


def _failed_login(i: int, at: int, card: str) -> FeatureEvent:
    return FeatureEvent(kind="auth", time_ms=at, event_id=f"auth{i:04d}", card=card, success=False)


def _stream(seed: int) -> list[FeatureEvent]:
    """One card's (and terminal's) transactions, many on the windows' edges, a burst dense
    enough for the shipped thresholds, failed logins (once alone for 9 days, so the card prunes
    what its windows hold) and, twice, an idle gap longer than the card's retention."""
    rng = random.Random(seed)
    at, events = T0, []
    for i in range(780):
        if i in (250, 500):
            at += CARD_RETENTION + HOUR
        elif i in BUSY_HOUR:
            at += MINUTE
        elif i in BURST:
            at += 5_000
        elif i in ALONE:  # nothing but failed logins for 9 days: the day's entries are pruned
            at += 3 * DAY
        else:
            at += rng.choice(STEPS)
        if (rng.random() < 0.1 and i not in BUSY_HOUR and i not in BURST) or i in ALONE:
            events.append(_failed_login(i, at, "c1"))
            continue
        event = tx(i, at, round(rng.uniform(0, 900), 2))
        events.append(
            replace(
                event,
                merchant=rng.choice(["m1", "m2", "m3", "m4", None]),
                country=rng.choice(["FR", "DE", "ES", None]),
                card=rng.choice(["c1", "c2", "c3", "c4", "c5", None]),  # the terminal's cards
            )
        )
    return events


def _terminal_events(events: list[FeatureEvent]) -> list[FeatureEvent]:
    """The transactions, and chargebacks in place of the failed logins (late labels are what
    move a terminal's clock ahead of its transactions)."""
    out: list[FeatureEvent] = []
    for i, event in enumerate(events):
        if event.kind == "transaction":
            out.append(event)
        elif out:
            out.append(chargeback(i, event.time_ms, out[-1]))
    return out


def _batches(events: list[FeatureEvent], seed: int) -> list[list[FeatureEvent]]:
    """The events in arrival order, in batches of 1-12: most on time, 15% held back by up to
    the late slack (so none is later than the slack behind the newest event)."""
    rng = random.Random(seed)
    arrival = [
        (e.time_ms + (rng.randrange(LATE_EVENT_SLACK) if rng.random() < 0.15 else 0), n)
        for n, e in enumerate(events)
    ]
    ordered = [events[n] for _, n in sorted(arrival)]
    batches, start = [], 0
    while start < len(ordered):
        size = rng.randint(1, 12)
        batches.append(ordered[start : start + size])
        start += size
    return batches


Update = Callable[
    [dict[str, Any], list[FeatureEvent]],
    tuple[dict[str, Any], list[tuple[FeatureEvent, dict[str, float]]]],
]
Seen = list[tuple[FeatureEvent, dict[str, float], list[FeatureEvent]]]


def _run(
    update: Update, fresh: Callable[[], dict[str, Any]], batches: list[list[FeatureEvent]]
) -> tuple[Seen, set[int]]:
    """Each transaction's features and the transactions applied before it, batch by batch; and
    the widths of the running windows the entity held after some batch."""
    state, applied, seen, widths = fresh(), list[FeatureEvent](), Seen(), set[int]()
    for batch in batches:
        batch = sorted(batch, key=lambda e: e.key)
        state, out = update(state, batch)
        widths.update(state.get(WINDOWS, ()))
        features = iter(out)
        for event in batch:
            if event.kind == "transaction":
                got_event, got = next(features)
                assert got_event is event
                seen.append((event, got, list(applied)))
            applied.append(event)
    return seen, widths


def _within(width: int, event: FeatureEvent, applied: list[FeatureEvent]) -> list[FeatureEvent]:
    """The window's definition: the transactions that sort before the event, newer than
    its time - width."""
    t = event.time_ms
    return [
        e
        for e in applied
        if e.kind == "transaction" and e.key < event.key and t - width < e.time_ms
    ]


def _exact(window: list[FeatureEvent]) -> float:
    return round(math.fsum(e.amount or 0.0 for e in window), 6)


def test_a_cards_windows_give_the_definition_across_batches_and_late_events(
    dense_from: int,
) -> None:
    # One card's events (the `card` field is the terminal test's).
    seen, widths = _run(update_card, empty_card_state, _batches(_stream(seed=21), seed=22))
    late = 0
    for event, features, applied in seen:
        late += any(e.key > event.key for e in applied if e.kind == "transaction")
        for name, width in CARD_WINDOWS.items():
            if width <= DAY:
                window = _within(width, event, applied)
                assert features[f"card_tx_count_{name}"] == len(window), (name, event)
                assert features[f"card_tx_amount_{name}"] == _exact(window), (name, event)
        day = _within(DAY, event, applied)
        assert features["card_merchants_24h"] == len({e.merchant for e in day}), event
        assert features["card_countries_24h"] == len({e.country for e in day}), event
    # Both paths ran: the running windows (in order), every width of them, and the slices
    # (late).
    assert 30 < late < len(seen) - 300
    assert widths == {CARD_WINDOWS["10m"], CARD_WINDOWS["1h"], DAY}


def test_a_terminals_windows_give_the_definition_across_batches_and_late_events(
    dense_from: int,
) -> None:
    events = _terminal_events(_stream(seed=31))
    seen, widths = _run(update_terminal, empty_terminal_state, _batches(events, seed=32))
    late = 0
    for event, features, applied in seen:
        late += any(e.key > event.key for e in applied if e.kind == "transaction")
        day, hour = _within(DAY, event, applied), _within(HOUR, event, applied)
        assert features["terminal_tx_count_24h"] == len(day), event
        assert features["terminal_tx_count_1h"] == len(hour), event
        assert features["terminal_cards_24h"] == len({e.card for e in day}), event
        assert features["terminal_cards_1h"] == len({e.card for e in hour}), event
    assert 30 < late < len(seen) - 300
    assert widths == {HOUR, DAY}


def test_running_windows_are_not_saved_and_are_rebuilt_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(running_window, "DENSE_FROM", 2)
    monkeypatch.setattr(running_window, "SPARSE_BELOW", 1)
    events = _stream(seed=41)
    for update, fresh, pack, unpack, mine in (
        (update_card, empty_card_state, pack_card, unpack_card, events),
        (
            update_terminal,
            empty_terminal_state,
            pack_terminal,
            unpack_terminal,
            _terminal_events(events),
        ),
    ):
        # Split in the burst: every window is live then.
        split = 1 + next(n for n, e in enumerate(mine) if e.event_id == f"tx{BURST[40]:04d}")
        head, tail = mine[:split], mine[split:]
        state, _ = update(fresh(), head)
        assert len(state[WINDOWS]) == (3 if fresh is empty_card_state else 2)
        assert all(window.count > 0 for window in state[WINDOWS].values())
        saved = pack(state)
        assert WINDOWS not in saved
        # A card's running tile totals are derived too (ADR 0047).
        assert (TILE_TOTALS in state, TILE_TOTALS in saved) == (fresh is empty_card_state, False)
        _, kept = update(copy.deepcopy(state), tail)
        _, reloaded = update(unpack(copy.deepcopy(saved)), tail)
        assert reloaded == kept


def test_the_windows_exact_amount_is_what_fsum_gives_for_the_slice() -> None:
    """So a window and its slice give the same amount, whatever the amounts' digits."""
    rng = random.Random(51)
    for _ in range(2000):
        amounts = [
            rng.choice([round(rng.uniform(0, 5000), 2), rng.uniform(0, 1e4), 1e-9, 0.1, 1e15])
            for _ in range(rng.randrange(1, 30))
        ]
        units = sum(map(running_window.exact, amounts))
        assert running_window.exact_total(units) == math.fsum(amounts), amounts
        gone = rng.randrange(len(amounts))
        units -= running_window.exact(amounts.pop(gone))
        assert running_window.exact_total(units) == math.fsum(amounts), amounts
