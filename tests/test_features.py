"""The pure feature functions: windows, exclusions, event-time order, labels that had arrived."""

from __future__ import annotations

import copy
import itertools
import math
import random
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from ml_model.features import (
    FEATURE_NAMES,
    FeatureEvent,
    compute_features,
    empty_card_state,
    empty_terminal_state,
    from_row,
    update_card,
    update_terminal,
)
from ml_model.features.card import TILE_TOTALS, CardTx
from ml_model.features.card import with_tiles as card_with_tiles
from ml_model.features.definitions import (
    CARD_RETENTION,
    DAY,
    HOUR,
    LABEL_DELAY,
    LATE_EVENT_SLACK,
    MINUTE,
    TERMINAL_RETENTION,
)
from ml_model.features.events import FEATURE_INPUTS
from ml_model.features.terminal import TerminalTx, with_tiles
from producer.contract import to_epoch_ms

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z, a Thursday


def tx(
    i: int,
    at: int,
    amount: float = 10.0,
    card: str = "c1",
    terminal: str = "t1",
    device: str | None = None,
    lat: float = 48.85,
    lon: float = 2.35,
    merchant: str = "m1",
    country: str = "FR",
) -> FeatureEvent:
    return FeatureEvent(
        kind="transaction",
        time_ms=at,
        event_id=f"tx{i:04d}",
        card=card,
        terminal=terminal,
        amount=amount,
        merchant=merchant,
        country=country,
        latitude=lat,
        longitude=lon,
        channel="ecom" if device else "pos",
        device=device,
    )


def by_id(events: list[FeatureEvent]) -> dict[str, dict[str, float]]:
    frame = compute_features(events)
    return {row["transaction_id"]: row for row in frame.to_dict("records")}


def test_card_velocity_windows_exclude_the_event_itself() -> None:
    events = [
        tx(1, T0, 10.0),
        tx(2, T0 + 5 * MINUTE, 20.0),
        tx(3, T0 + 50 * MINUTE, 30.0),
        tx(4, T0 + 3 * HOUR, 40.0),
    ]
    _, out = update_card(empty_card_state(), events)
    features = {event.event_id: f for event, f in out}
    assert features["tx0001"]["card_tx_count_24h"] == 0
    assert features["tx0002"]["card_tx_count_10m"] == 1
    assert features["tx0002"]["card_tx_amount_10m"] == 10.0
    assert features["tx0003"]["card_tx_count_10m"] == 0
    assert features["tx0003"]["card_tx_count_1h"] == 2
    assert features["tx0003"]["card_tx_amount_1h"] == 30.0
    assert features["tx0004"]["card_tx_count_1h"] == 0
    assert features["tx0004"]["card_tx_count_24h"] == 3
    assert features["tx0004"]["card_amount_to_mean_30d"] == pytest.approx(40.0 / 20.0)
    assert features["tx0004"]["card_seconds_since_prev"] == pytest.approx(130 * 60)
    assert math.isnan(features["tx0001"]["card_seconds_since_prev"])
    assert math.isnan(features["tx0001"]["card_amount_to_mean_30d"])


def test_card_windows_match_their_definition_at_every_boundary() -> None:
    """Counts, sums, the 30-day mean, distinct merchants and the previous transaction against
    the windows' definition, on times that land exactly on the edges: up to a day,
    t - W < time < t; longer, from the first whole hour after t - W (the hour tiles)."""
    rng = random.Random(11)
    steps = [0, 1, MINUTE, 10 * MINUTE, 25 * MINUTE, HOUR, DAY - 20 * MINUTE, DAY, 3 * DAY]
    steps += [7 * DAY - 20 * MINUTE]
    at, events = T0, []
    for i in range(500):
        at += rng.choice(steps)
        events.append(tx(i, at, round(rng.uniform(0, 500), 2), merchant=f"m{rng.randrange(5)}"))
    _, out = update_card(empty_card_state(), events)
    windows = {
        10 * MINUTE: ("card_tx_count_10m", "card_tx_amount_10m"),
        HOUR: ("card_tx_count_1h", "card_tx_amount_1h"),
        DAY: ("card_tx_count_24h", "card_tx_amount_24h"),
        7 * DAY: ("card_tx_count_7d", "card_tx_amount_7d"),
    }
    for event, features in out:
        t = event.time_ms
        earlier = [e for e in events if e.key < event.key]

        def within(width: int, t: int = t) -> list[FeatureEvent]:
            start = t - width if width <= DAY else ((t - width) // HOUR + 1) * HOUR - 1
            return [e for e in earlier if start < e.time_ms]  # noqa: B023 - used at once

        for width, (count_name, amount_name) in windows.items():
            window = within(width)
            assert features[count_name] == len(window), (event, count_name)
            assert features[amount_name] == pytest.approx(
                sum(e.amount or 0.0 for e in window), abs=1e-6
            )
        month = within(30 * DAY)
        mean = sum(e.amount or 0.0 for e in month) / len(month) if month else 0.0
        if mean > 0:
            assert features["card_amount_to_mean_30d"] == pytest.approx(event.amount / mean)
        else:
            assert math.isnan(features["card_amount_to_mean_30d"])
        assert features["card_merchants_24h"] == len({e.merchant for e in within(DAY)})
        gap = (t - earlier[-1].time_ms) / 1000 if earlier else math.nan
        assert features["card_seconds_since_prev"] == pytest.approx(gap, nan_ok=True)


def test_a_late_transaction_still_sees_its_windows_and_previous_one_after_pruning() -> None:
    """A transaction arriving late (inside the slack) after a newer one: the recent list still
    holds its whole 24 hours, and the transaction before them (its real predecessor)."""
    late = T0 + 3 * DAY - 12 * HOUR
    state, _ = update_card(empty_card_state(), [tx(1, T0), tx(2, T0 + 3 * DAY)])
    _, out = update_card(state, [tx(3, late)])
    assert out[0][1]["card_seconds_since_prev"] == (late - T0) / 1000
    earlier = [tx(1, T0 + 2 * DAY - 8 * HOUR), tx(2, T0 + 2 * DAY - 6 * HOUR), tx(3, T0 + 3 * DAY)]
    state, _ = update_card(empty_card_state(), earlier)
    _, out = update_card(state, [tx(4, late)])
    assert out[0][1]["card_tx_count_24h"] == 2


def test_impossible_travel_distance_and_speed() -> None:
    paris = tx(1, T0, lat=48.8566, lon=2.3522)
    new_york = tx(2, T0 + 30 * MINUTE, lat=40.7128, lon=-74.0060)
    features = by_id([paris, new_york])["tx0002"]
    assert features["card_km_from_prev"] == pytest.approx(5837, rel=0.01)
    assert features["card_kmh_from_prev"] == pytest.approx(5837 * 2, rel=0.01)


def test_new_device_merchants_countries_and_failed_logins() -> None:
    fail = FeatureEvent(
        kind="auth", time_ms=T0 + 10 * MINUTE, event_id="a1", card="c1", success=False
    )
    ok = FeatureEvent(kind="auth", time_ms=T0 + 11 * MINUTE, event_id="a2", card="c1", success=True)
    old_fail = FeatureEvent(
        kind="auth", time_ms=T0 - 2 * HOUR, event_id="a0", card="c1", success=False
    )
    events = [
        old_fail,
        tx(1, T0, device="d1", merchant="m1", country="FR"),
        fail,
        ok,
        tx(2, T0 + 20 * MINUTE, device="d1", merchant="m2", country="DE"),
        tx(3, T0 + 30 * MINUTE, device="d2", merchant="m2", country="DE"),
    ]
    features = by_id(events)
    assert features["tx0001"]["card_new_device"] == 1.0
    assert features["tx0002"]["card_new_device"] == 0.0
    assert features["tx0003"]["card_new_device"] == 1.0
    assert features["tx0001"]["card_failed_logins_1h"] == 0.0  # the old failure is > 1 h before
    assert features["tx0002"]["card_failed_logins_1h"] == 1.0
    assert features["tx0003"]["card_merchants_24h"] == 2.0
    assert features["tx0003"]["card_countries_24h"] == 2.0


def chargeback(i: int, at: int, of: FeatureEvent, confirmed: bool = True) -> FeatureEvent:
    return FeatureEvent(
        kind="chargeback",
        time_ms=at,
        event_id=f"cb{i}",
        card=of.card,
        terminal=of.terminal,
        transaction_id=of.event_id,
        transaction_time_ms=of.time_ms,
        confirmed_fraud=confirmed,
    )


def test_terminal_risk_counts_only_delayed_windows_and_arrived_labels() -> None:
    fraud = tx(1, T0, card="a")
    genuine = tx(2, T0 + HOUR, card="b")
    arrives = T0 + 9 * DAY
    label = chargeback(1, arrives, fraud)
    before_label = tx(3, arrives - MINUTE, card="c")
    after_label = tx(4, arrives + MINUTE, card="d")
    inside_delay = tx(5, T0 + 3 * DAY, card="e")
    features = by_id([fraud, genuine, label, before_label, after_label, inside_delay])
    # Both earlier transactions are older than the label delay; only the arrived label counts.
    assert features["tx0003"]["terminal_risk_7d"] == 0.0
    assert features["tx0004"]["terminal_risk_7d"] == pytest.approx(0.5)
    assert features["tx0004"]["terminal_risk_1d"] == 0.0  # [t-8d, t-7d) holds neither
    # Three days in, both are still inside the delay: no risk window holds them yet.
    assert features["tx0005"]["terminal_risk_30d"] == 0.0
    assert features["tx0005"]["terminal_tx_count_24h"] == 0.0
    assert features["tx0002"]["terminal_tx_count_1h"] == 0.0  # exactly one hour: outside
    assert features["tx0002"]["terminal_cards_24h"] == 1.0
    assert LABEL_DELAY == 7 * DAY


def terminal_history(seed: int) -> list[FeatureEvent]:
    """One terminal's transactions over 50 days, many on hour and window edges, and
    chargebacks (confirmed or cleared) for some of them, arriving days later."""
    rng = random.Random(seed)
    steps = [0, 1, MINUTE, HOUR, HOUR - 1, 5 * HOUR, DAY]
    at, events = T0, []
    for i in range(300):
        at += rng.choice(steps)
        events.append(tx(i, at, card=f"c{rng.randrange(8)}"))
    for i, of in enumerate(rng.sample(events[:250], 40)):
        arrival = of.time_ms + rng.choice([LABEL_DELAY - HOUR, LABEL_DELAY, 9 * DAY, 2 * DAY])
        events.append(chargeback(i, arrival, of, confirmed=rng.random() < 0.8))
    return events


def expected_terminal_features(events: list[FeatureEvent], event: FeatureEvent) -> dict[str, float]:
    """The definition, computed directly: traffic windows t - W < time, risk windows the whole
    hours before the hour of t - LABEL_DELAY, frauds by the latest chargeback arrived by t."""
    t = event.time_ms
    earlier = [e for e in events if e.kind == "transaction" and e.key < event.key]
    expected = {}
    for width, (count_name, cards_name) in {
        HOUR: ("terminal_tx_count_1h", "terminal_cards_1h"),
        DAY: ("terminal_tx_count_24h", "terminal_cards_24h"),
    }.items():
        window = [e for e in earlier if t - width < e.time_ms]
        expected[count_name] = len(window)
        expected[cards_name] = len({e.card for e in window})
    end = (t - LABEL_DELAY) // HOUR * HOUR
    for width, name in {
        DAY: "terminal_risk_1d",
        7 * DAY: "terminal_risk_7d",
        30 * DAY: "terminal_risk_30d",
    }.items():
        window = [e for e in earlier if end - width <= e.time_ms < end]
        frauds = 0
        for e in window:
            arrived = [
                c
                for c in events
                if c.kind == "chargeback" and c.transaction_id == e.event_id and c.time_ms <= t
            ]
            latest = max(arrived, key=lambda c: (c.time_ms, c.event_id), default=None)
            frauds += bool(latest is not None and latest.confirmed_fraud)
        expected[name] = frauds / len(window) if window else 0.0
    return expected


def test_terminal_windows_match_their_definition_at_every_boundary() -> None:
    events = terminal_history(seed=3)
    _, out = update_terminal(empty_terminal_state(), events)
    assert len(out) == 300
    for event, features in out:
        assert features == pytest.approx(expected_terminal_features(events, event)), event


def test_an_event_up_to_the_late_slack_behind_gets_its_on_time_features() -> None:
    """Delivered after everything else (up to LATE_EVENT_SLACK behind the newest event), a
    transaction gets exactly the card and terminal features it gets in event-time order."""
    events = terminal_history(seed=6)
    newest = max(e.time_ms for e in events)
    candidates = [
        e
        for e in events
        if e.kind == "transaction" and newest - LATE_EVENT_SLACK + MINUTE < e.time_ms < newest
    ]
    assert any(e.time_ms < newest - 3 * DAY for e in candidates)
    for late in random.Random(6).sample(candidates, 25):
        card_events = [e for e in events if e.kind == "transaction" and e.card == late.card]
        for update, fresh, mine in (
            (update_card, empty_card_state, card_events),
            (update_terminal, empty_terminal_state, events),
        ):
            _, on_time = update(fresh(), mine)
            state, _ = update(fresh(), [e for e in mine if e is not late])
            _, delivered_late = update(state, [late])
            assert delivered_late == [pair for pair in on_time if pair[0] is late], late


def test_a_transaction_later_than_the_slack_reads_its_hour_from_the_transactions_kept() -> None:
    """Further behind than the slack, the card's recent list no longer holds every transaction
    of the event's hour (pruned), while its hour tile still counts them. The 7-day window must
    read the same transactions of that hour as the 24-hour one does, not the tile's."""
    login = FeatureEvent(kind="auth", time_ms=T0 + 9 * DAY, event_id="a1", card="c1", success=True)
    state, _ = update_card(empty_card_state(), [tx(1, T0 + MINUTE), tx(2, T0 + 2 * MINUTE), login])
    assert [entry.tx_id for entry in state["tx"]] == ["tx0002"]  # tx0001 pruned, tile kept
    _, [(_, features)] = update_card(state, [tx(3, T0 + 3 * MINUTE)])
    assert features["card_tx_count_24h"] == features["card_tx_count_7d"] == 1.0


def test_a_cards_tile_totals_follow_its_tiles_through_late_events_and_pruning() -> None:
    """The 7- and 30-day windows read running totals of the hour tiles (ADR 0047), kept as the
    tiles change: in order (the newest tile), late (an earlier hour: rebuilt), pruned. At every
    batch they equal the tiles' totals, and a state without them gives the same features."""
    rng = random.Random(47)
    times = sorted(T0 + rng.randrange(40 * DAY) for _ in range(500))
    times += [T0 + 75 * DAY + rng.randrange(5 * DAY) for _ in range(60)]  # after a pruning gap
    events = [tx(i, at, amount=round(rng.uniform(1, 500), 2)) for i, at in enumerate(times)]
    late = rng.sample(range(20, len(events)), 60)  # delivered up to a few days behind
    order = sorted(range(len(events)), key=lambda i: times[i] + (3 * DAY if i in late else 0))
    state = empty_card_state()
    rebuilt_any = False
    for start in range(0, len(order), 7):
        batch = [events[i] for i in order[start : start + 7]]
        without = copy.deepcopy(state)
        rebuilt_any |= without.pop(TILE_TOTALS, None) is not None
        state, features = update_card(state, batch)
        _, features_without = update_card(without, batch)
        assert features == features_without
        if TILE_TOTALS in state:
            counts, sums = state[TILE_TOTALS]
            assert len(counts) == len(sums) == len(state["hours"]) + 1  # offset once pruned
            assert [b - a for a, b in itertools.pairwise(counts)] == state["counts"]
            assert [b - a for a, b in itertools.pairwise(sums)] == state["sums"]
    assert rebuilt_any and state["hours"][0] > (T0 + 40 * DAY) // HOUR  # pruned past the gap


def test_a_terminal_saved_before_the_hour_tiles_loads_as_if_built_with_them() -> None:
    events = sorted(terminal_history(seed=4), key=lambda e: e.key)
    first, rest = events[:200], events[200:]
    current, _ = update_terminal(empty_terminal_state(), first)
    newest = current["max"]
    # The form saved before ADR 0017: every transaction of the last 38 days, no tiles.
    old_form = {
        "tx": [
            TerminalTx(e.time_ms, e.event_id, e.card)
            for e in first
            if e.kind == "transaction" and e.time_ms >= newest - TERMINAL_RETENTION
        ],
        "cb": copy.deepcopy(current["cb"]),
        "max": newest,
    }
    upgraded = with_tiles(old_form)
    assert upgraded["hours"] == current["hours"] and upgraded["counts"] == current["counts"]
    assert upgraded["tx"] == current["tx"]
    _, expected = update_terminal(current, rest)
    _, got = update_terminal(upgraded, rest)
    assert got == expected and got


def test_a_card_saved_before_the_hour_tiles_loads_as_if_built_with_them() -> None:
    rng = random.Random(5)
    at, events = T0, []
    for i in range(300):
        at += rng.choice([MINUTE, HOUR, 5 * HOUR, DAY])
        events.append(tx(i, at, round(rng.uniform(1, 300), 2), device=f"d{rng.randrange(3)}"))
    first, rest = events[:200], events[200:]
    current, _ = update_card(empty_card_state(), first)
    newest = current["max"]
    # The form saved before ADR 0017: every transaction of the last 31 days, no tiles.
    old_form = {
        "tx": [
            CardTx(
                e.time_ms,
                e.event_id,
                e.amount or 0.0,
                e.merchant,
                e.country,
                e.latitude,
                e.longitude,
            )
            for e in first
            if e.time_ms >= newest - CARD_RETENTION
        ],
        "dev": copy.deepcopy(current["dev"]),
        "fail": [],
        "max": newest,
    }
    upgraded = card_with_tiles(old_form)
    # The old form held 31 days, the tiles keep the late-event slack too: same tiles from there.
    kept = len(current["hours"]) - len(upgraded["hours"])
    assert kept > 0 and upgraded["hours"][0] >= (newest - CARD_RETENTION) // HOUR
    for part in ("hours", "counts", "sums"):
        assert upgraded[part] == current[part][kept:], part
    assert upgraded["tx"] == current["tx"]
    _, expected = update_card(current, rest)
    _, got = update_card(upgraded, rest)
    assert got == expected and got


def test_a_cleared_chargeback_removes_the_fraud() -> None:
    fraud = tx(1, T0, card="a")
    events = [
        fraud,
        chargeback(1, T0 + 8 * DAY, fraud, confirmed=True),
        chargeback(2, T0 + 9 * DAY, fraud, confirmed=False),
        tx(2, T0 + 8 * DAY + HOUR, card="b"),
        tx(3, T0 + 9 * DAY + HOUR, card="c"),
    ]
    features = by_id(events)
    assert features["tx0002"]["terminal_risk_7d"] == 1.0
    assert features["tx0003"]["terminal_risk_7d"] == 0.0


def history(n: int, seed: int) -> list[FeatureEvent]:
    rng = random.Random(seed)
    return [
        tx(
            i,
            T0 + rng.randrange(0, 3 * DAY),
            amount=round(rng.uniform(1, 500), 2),
            card=f"c{rng.randrange(5)}",
            terminal=f"t{rng.randrange(3)}",
            device=rng.choice([None, "d1", "d2", "d3"]),
            lat=rng.uniform(40, 50),
            lon=rng.uniform(-5, 10),
            merchant=f"m{rng.randrange(6)}",
        )
        for i in range(n)
    ]


def test_result_does_not_depend_on_arrival_order_or_batching() -> None:
    """Batches in any order within them, split anywhere in event time: the same features."""
    events = history(300, seed=5)
    expected = compute_features(events).set_index("transaction_id").sort_index()
    ordered = sorted(events, key=lambda e: e.key)
    states: dict[str, dict[str, Any]] = {}
    streamed: dict[str, dict[str, float]] = {}
    for start in range(0, len(ordered), 37):  # micro-batches in event-time order...
        batch = ordered[start : start + 37]
        random.Random(start).shuffle(batch)  # ...whose rows arrive in any order
        by_card: dict[str, list[FeatureEvent]] = {}
        for event in batch:
            by_card.setdefault(str(event.card), []).append(event)
        for card, card_events in by_card.items():
            states[card], out = update_card(states.get(card) or empty_card_state(), card_events)
            for event, features in out:
                streamed[event.event_id] = features
    for tx_id, row in expected.iterrows():
        got = streamed[str(tx_id)]
        for name, value in got.items():
            want = row[name]
            assert (math.isnan(value) and math.isnan(want)) or value == pytest.approx(want), name


def test_feature_order_is_the_model_order() -> None:
    frame = compute_features(history(20, seed=1))
    assert list(frame.columns) == ["transaction_id", *FEATURE_NAMES]
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_idle_card_is_reset_as_the_stream_evicts_it() -> None:
    first = tx(1, T0, device="d1")
    later = tx(2, T0 + 40 * DAY, device="d1")
    _, out = update_card(empty_card_state(), [first, later])
    assert out[1][1]["card_new_device"] == 1.0  # the state was evicted in between
    terminal_state, _ = update_terminal(empty_terminal_state(), [first])
    assert terminal_state["tx"]


class _Recording(dict[str, Any]):
    """A row that remembers which columns were read."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


def test_the_parsed_rows_carry_every_column_the_features_read() -> None:
    from processor.parse import PARSED_SCHEMA

    parsed = set(PARSED_SCHEMA.fieldNames())
    assert set(FEATURE_INPUTS) <= parsed

    for kind, extra in (
        ("transaction", {"transaction_id": "t1", "card_token": "c", "terminal_id": "t"}),
        ("auth", {"auth_id": "a1", "card_token": "c", "success": False}),
        ("chargeback", {"chargeback_id": "b1", "transaction_id": "t1", "terminal_id": "t"}),
    ):
        row = _Recording(event_type=kind, event_time=T0, **extra)
        from_row(row)
        assert row.read <= set(FEATURE_INPUTS), row.read - set(FEATURE_INPUTS)


def test_an_event_time_with_microseconds_is_one_millisecond_for_stream_and_training() -> None:
    # 999.6 ms: rounding to nearest would put the event in the next second, and before a
    # transaction the other path puts at 999 ms.
    moment = datetime(2026, 1, 1, 0, 0, 0, 999_600, tzinfo=UTC)
    row = {"event_type": "transaction", "transaction_id": "t1", "card_token": "c"}
    stream = from_row({**row, "event_time": moment})  # the stream's rows hold datetimes
    training = from_row({**row, "event_time": pd.Timestamp(moment)})  # history frames, Timestamps
    assert stream.time_ms == training.time_ms == to_epoch_ms(moment)
    assert stream.time_ms % 1000 == 999
