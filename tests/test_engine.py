"""The feature engine without Spark: watermark per shard, exact dedupe and conflicts, late
events scored, features equal to training's, and state that a replay reads as batch N-1 left it."""

from __future__ import annotations

import copyreg
import gc
import hashlib
import io
import math
import os
import pickle
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import config.lake
from config.exceptions import StateFormatError
from ml_model.features import compute_features, from_arrow, from_row
from ml_model.features.definitions import CARD, TERMINAL
from processor.checkpoint_files import CheckpointFiles
from processor.engine import EngineSettings, FeatureEngine, StateStore, delay_ms
from processor.engine import state as state_module
from processor.engine.dedupe_index import SeenIndex
from processor.engine.packing import DERIVED
from processor.engine.state import (
    SNAPSHOT_EVERY,
    BatchLog,
    Changes,
    EngineState,
    SeenId,
    decode_state,
)
from processor.engine.watermark import (
    WATERMARK_MAX_SKEW_MS,
    ShardMark,
    advance,
    bounded_times,
    combined,
)
from processor.parse import PARSED_ARROW_SCHEMA
from producer.contract import to_epoch_ms
from tests.engine_results import featured, same_transactions

MIN = 60_000
HOUR = 60 * MIN
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ARRIVAL = T0 + timedelta(days=60)  # a replay: everything arrives long after it happened
SETTINGS = EngineSettings(
    watermark_delay_ms=10 * MIN, idle_shard_timeout_ms=MIN, dedupe_retention_ms=35 * 24 * HOUR
)


def tx(
    n: int,
    minutes: float,
    shard: str = "s0",
    card: str = "card-a",
    terminal: str = "term-1",
    amount: float = 10.0,
    seq: int | None = None,
    arrival: datetime = ARRIVAL,
) -> dict[str, Any]:
    """A parsed transaction row, as processor/parse.py makes it."""
    tx_id = f"tx-{n:06d}"
    payload = f"{tx_id}|{minutes}|{amount}|{card}".encode()
    return {
        "event_type": "transaction",
        "event_id": tx_id,
        "transaction_id": tx_id,
        "event_time": T0 + timedelta(minutes=minutes),
        "card_token": card,
        "card_last4": "1111",
        "terminal_id": terminal,
        "amount": amount,
        "merchant_id": "m-1",
        "merchant_country": "FR",
        "latitude": 48.8,
        "longitude": 2.3,
        "channel": "pos",
        "device_id": None,
        "shardId": shard,
        "sequenceNumber": f"{seq if seq is not None else n:030d}",
        "subSequenceNumber": 0,
        "approximateArrivalTimestamp": arrival,
        "dead_letter_reason": None,
        "dedupe_key": f"transaction:{tx_id}",
        "payload_digest": hashlib.blake2b(payload, digest_size=16).hexdigest(),
    }


def _ms(minutes: float) -> int:
    """The event time of `tx(n, minutes)`."""
    return to_epoch_ms(T0 + timedelta(minutes=minutes))


def _holds(index: SeenIndex, *keys: str) -> bool:
    """The dedupe index holds these ids and no other."""
    return len(index) == len(keys) and all(key in index for key in keys)


def engine(tmp_path: Path, settings: EngineSettings = SETTINGS) -> FeatureEngine:
    return FeatureEngine(StateStore(CheckpointFiles(str(tmp_path))), settings)


def run(eng: FeatureEngine, rows: list[dict[str, Any]], batch_id: int) -> Any:
    result = eng.process([dict(r) for r in rows], batch_id)
    eng.commit()
    return result


# ---------------------------------------------------------------- watermark
def test_duration_units() -> None:
    assert delay_ms("10 minutes") == 600_000
    assert delay_ms("1 day") == 86_400_000
    assert delay_ms("35 days") == 35 * 86_400_000
    # The settings' pattern takes the unit without a space too.
    assert delay_ms("2hours") == delay_ms("2 hours") == 7_200_000
    with pytest.raises(ValueError, match="not a duration"):
        delay_ms("2 fortnights")


def test_watermark_follows_the_slowest_active_shard() -> None:
    arrival = 1_000 * HOUR
    marks = advance(
        {},
        [
            ("fast", arrival, 500 * HOUR),
            ("fast", arrival, 501 * HOUR),
            ("slow", arrival, 100 * HOUR),
        ],
    )
    assert combined(marks, 10 * MIN, MIN) == 100 * HOUR - 10 * MIN
    # The slow shard goes quiet (its newest record arrived long before the others'): idle.
    marks = advance(marks, [("fast", arrival + HOUR, 502 * HOUR)])
    assert combined(marks, 10 * MIN, MIN) == 502 * HOUR - 10 * MIN


def test_a_record_dated_tomorrow_or_one_outlier_cannot_move_a_shard() -> None:
    arrival = 1_000 * HOUR
    tomorrow = bounded_times([arrival], [arrival + 23 * HOUR])
    assert tomorrow == [arrival + WATERMARK_MAX_SKEW_MS]
    ordinary = [100 * HOUR + i * MIN for i in range(5)]
    bounded = bounded_times([arrival] * 6, [*ordinary, 120 * HOUR])
    assert max(bounded) == max(ordinary)
    assert advance({"s": ShardMark(max(ordinary), arrival)}, [])["s"].max_event_ms == max(ordinary)


# ---------------------------------------------------------------- dedupe, lateness
def test_resent_copy_is_dropped_and_a_conflict_is_kept(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    first = run(eng, [tx(1, 0), tx(2, 1)], 0)
    assert [r["transaction_id"] for r in first.transactions] == ["tx-000001", "tx-000002"]
    # Batch 1: the same bytes again (a producer retry), and id 2 with other content and a time
    # days later (outside any watermark): neither makes a second transaction row.
    resent = tx(1, 0, seq=10)
    conflict = tx(2, 3 * 24 * 60, amount=999.0, seq=11)
    second = run(eng, [resent, conflict, tx(3, 2, seq=12)], 1)
    assert second.duplicates == 1
    assert [r["transaction_id"] for r in second.transactions] == ["tx-000003"]
    assert [r["dead_letter_reason"] for r in second.dead_letters] == ["duplicate_conflict"]
    assert second.dead_letters[0]["raw_payload_masked"]
    # What the metrics report of the state (driver memory): three ids, one per transaction kept.
    assert eng.state_entries() == {"cards": 1, "terminals": 1, "ids": 3, "held": 0}


def test_same_batch_copies_are_decided_in_stream_order(tmp_path: Path) -> None:
    a = tx(1, 0, seq=5)
    b = tx(1, 0, amount=50.0, seq=4)  # earlier in the shard: it is the first copy
    result = run(engine(tmp_path), [a, b], 0)
    assert [r["amount"] for r in result.transactions] == [50.0]
    assert [r["dead_letter_reason"] for r in result.dead_letters] == ["duplicate_conflict"]


def test_every_copy_in_a_batch_is_weighed_against_its_ids_first_copy(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    run(eng, [tx(1, 0)], 0)
    batch = [
        tx(2, 1, seq=20),  # new: accepted
        tx(1, 0, seq=21),  # the index's id, same bytes: re-sent
        tx(2, 1, seq=22),  # the batch's own first copy, same bytes: re-sent
        tx(2, 90, amount=5.0, seq=23),  # the batch's id, other content: a conflict
        tx(1, 0, seq=24),  # re-sent again
        tx(3, 2, seq=25),  # new
    ]
    result = run(eng, batch, 1)
    assert [r["transaction_id"] for r in result.transactions] == ["tx-000002", "tx-000003"]
    assert result.duplicates == 3
    [conflict] = result.dead_letters
    assert conflict["dead_letter_reason"] == "duplicate_conflict"
    # Named against the first copy: its event time, one minute after T0.
    assert (T0 + timedelta(minutes=1)).isoformat() in conflict["dead_letter_detail"]
    assert eng.state_entries()["ids"] == 3


def test_history_reaches_back_as_far_as_the_state_holds(tmp_path: Path) -> None:
    """A state started cold reaches back to its first event's hour; past the tiles' retention
    it keeps reaching back more than the longest window (the drift monitor's cold-start note)."""
    eng = engine(tmp_path)
    assert eng.history_ms() is None
    day = 24 * 60
    run(eng, [tx(1, 30), tx(2, 3 * day + 30, terminal="term-2")], 0)
    assert eng.history_ms() == 3 * 24 * HOUR + 30 * MIN  # from the first event's hour
    run(eng, [tx(n, n * day, seq=n) for n in range(4, 80)], 1)
    # term-2 was evicted and term-1's tiles pruned to their retention, which covers more than
    # the longest window (37 days): 44 days, not the 79 the state has seen.
    assert sorted(eng.state.terminals) == ["term-1"]  # type: ignore[union-attr]
    assert eng.history_ms() == 44 * 24 * HOUR


def test_late_events_are_scored_and_flagged(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    run(eng, [tx(i, 60 * 48 + i, shard="s0") for i in range(1, 4)], 0)
    # One hour and two days behind the watermark: still transactions, with features.
    late = run(eng, [tx(10, 60 * 47, seq=20), tx(11, 0, seq=21)], 1)
    assert late.late == 2 and not late.dead_letters
    # Written in event-key order: the two-day-late one first.
    assert [r["transaction_id"] for r in late.transactions] == ["tx-000011", "tx-000010"]
    assert [r["late"] for r in late.transactions] == [True, True]
    assert late.transactions[1]["lateness_ms"] > 50 * MIN
    assert late.transactions[0]["lateness_ms"] > 47 * HOUR
    assert all(not math.isnan(r["card_tx_count_7d"]) for r in featured(late))


def test_a_slow_shard_makes_nothing_late(tmp_path: Path) -> None:
    """Two shards, one a day ahead of the other in event time (a fast replay)."""
    eng = engine(tmp_path)
    total_late = 0
    for batch in range(5):
        rows = [tx(100 + batch, 24 * 60 + batch, shard="ahead", card="c1", seq=batch)]
        rows.append(tx(200 + batch, batch, shard="behind", card="c2", seq=batch))
        total_late += run(eng, rows, batch).late
    assert total_late == 0


# ---------------------------------------------------------------- features and replay
def test_features_equal_the_training_features_batch_by_batch(tmp_path: Path) -> None:
    rows = [
        tx(i, i * 7.5, shard=f"s{i % 3}", card=f"card-{i % 4}", terminal=f"t-{i % 5}", seq=i)
        for i in range(120)
    ]
    eng = engine(tmp_path)
    streamed: dict[str, dict[str, Any]] = {}
    for batch, start in enumerate(range(0, len(rows), 25)):
        for row in featured(run(eng, rows[start : start + 25], batch)):
            streamed[row["transaction_id"]] = row
    expected = compute_features(from_row(r) for r in rows).set_index("transaction_id")
    for tx_id, features in expected.iterrows():
        for name, value in features.items():
            got = streamed[str(tx_id)][name]
            assert (math.isnan(value) and math.isnan(got)) or got == value, (tx_id, name)


def _read_by_budget(
    shards: dict[str, list[dict[str, Any]]], budget: int
) -> list[tuple[list[dict[str, Any]], frozenset[str]]]:
    """Batches as the source cuts a backlog: up to `budget` records per shard each, and the
    shards left with records (then a batch with none, once every shard is read to its tip)."""
    batches = []
    for start in range(0, max(len(rows) for rows in shards.values()), budget):
        rows = [row for shard in shards.values() for row in shard[start : start + budget]]
        left = frozenset(name for name, shard in shards.items() if len(shard) > start + budget)
        batches.append((rows, left))
    return batches + [([], frozenset())]


def _streamed(
    tmp_path: Path, batches: list[tuple[list[dict[str, Any]], frozenset[str]]], ordered: bool
) -> tuple[dict[str, dict[str, Any]], int]:
    eng = engine(tmp_path)
    streamed: dict[str, dict[str, Any]] = {}
    most_held = 0
    for batch_id, (rows, backlogged) in enumerate(batches):
        result = eng.process([dict(r) for r in rows], batch_id, backlogged if ordered else ())
        eng.commit()
        most_held = max(most_held, result.held)
        for row in featured(result):
            assert row["transaction_id"] not in streamed, "written twice"
            streamed[row["transaction_id"]] = row
    return streamed, most_held


def test_terminal_features_do_not_depend_on_which_shard_is_read_first(tmp_path: Path) -> None:
    # Four shards share three terminals. Each shard is in event-time order, but they are not
    # equally dense: reading 10 records per shard per batch, the sparse ones run days ahead.
    shards: dict[str, list[dict[str, Any]]] = {}
    n = 0
    for index, step in enumerate((3, 11, 29, 97)):
        shard = f"shard-{index}"
        shards[shard] = []
        for i in range(40):
            shards[shard].append(
                tx(n, i * step, shard=shard, card=f"card-{index}-{i % 3}",
                   terminal=f"t-{i % 3}", seq=i)
            )  # fmt: skip
            n += 1
    rows = [row for shard in shards.values() for row in shard]
    batches = _read_by_budget(shards, 10)
    expected = compute_features(from_row(r) for r in rows).set_index("transaction_id")

    def differing(streamed: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
        assert set(streamed) == set(expected.index), "every transaction written once"
        return [
            (str(tx_id), str(name))
            for tx_id, features in expected.iterrows()
            for name, value in features.items()
            if not (math.isnan(value) and math.isnan(streamed[str(tx_id)][name]))
            and streamed[str(tx_id)][name] != value
        ]

    streamed, most_held = _streamed(tmp_path / "ordered", batches, ordered=True)
    assert most_held > 0, "the sparse shards ran ahead: their terminal events had to wait"
    assert differing(streamed) == []
    # The same batches without the backlog flags: terminal counts follow the reading order.
    unordered, _ = _streamed(tmp_path / "unordered", batches, ordered=False)
    assert any(name.startswith("terminal_") for _, name in differing(unordered))


def test_held_events_survive_a_restart(tmp_path: Path) -> None:
    ahead = [tx(i, 600 + i, shard="fast", card="c1", terminal="t", seq=i) for i in range(5)]
    behind = [tx(10 + i, i, shard="slow", card="c2", terminal="t", seq=i) for i in range(5)]
    first = engine(tmp_path)
    # The slow shard delivered minutes 0-2: its mark is minute 1 (one outlier cannot move a
    # mark, processor/engine/watermark.py), so only minute 0 is before every shard's mark.
    held = first.process([dict(r) for r in ahead + behind[:3]], 0, {"slow"})
    first.commit()
    assert [r["transaction_id"] for r in held.transactions] == ["tx-000010"]
    assert held.held == 7
    restarted = engine(tmp_path)  # a new driver: the held rows come back from the changelog
    rest = restarted.process([dict(r) for r in behind[3:]], 1, ())  # read to the tip
    written = [r["transaction_id"] for r in rest.transactions]
    assert written == [r["transaction_id"] for r in behind[1:] + ahead]  # event-key order
    assert rest.held == 0
    assert [r["terminal_tx_count_24h"] for r in featured(rest)] == list(range(1, 10))


def test_replay_after_a_crash_reads_what_the_previous_batch_left(tmp_path: Path) -> None:
    rows = [tx(i, i, card="c", seq=i) for i in range(40)]
    clean = engine(tmp_path / "clean")
    expected = [run(clean, rows[i : i + 10], b) for b, i in enumerate(range(0, 40, 10))]

    crashing = engine(tmp_path / "crash")
    run(crashing, rows[:10], 0)
    run(crashing, rows[10:20], 1)
    crashing.process([dict(r) for r in rows[20:30]], 2)
    crashing.commit()  # batch 2 saved its state, then the driver died before Spark committed it
    restarted = engine(tmp_path / "crash")  # a new driver: state from the files, as of batch 1
    replay = run(restarted, rows[20:30], 2)
    assert same_transactions(replay, expected[2])
    assert same_transactions(run(restarted, rows[30:40], 3), expected[3])


def _saved(entities: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Entity states without what they derive (running windows, tile totals): rebuilt on
    use, never saved."""
    return {
        key: {k: v for k, v in state.items() if k not in DERIVED} for key, state in entities.items()
    }


def _same_state(loaded: EngineState, kept: EngineState | None) -> None:
    assert kept is not None
    assert _saved(loaded.cards) == _saved(kept.cards)
    assert _saved(loaded.terminals) == _saved(kept.terminals)
    assert loaded.seen == kept.seen
    assert repr(loaded.held) == repr(kept.held)  # held rows carry NaN features: NaN != NaN
    assert loaded.shards == kept.shards


def test_state_survives_snapshots_and_changelogs(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    for batch in range(SNAPSHOT_EVERY + 3):
        rows = [
            tx(2 * batch, batch, card=f"c{batch % 7}", terminal=f"t{batch % 3}", seq=2 * batch),
            tx(2 * batch + 1, batch + 0.5, card=f"c{batch % 5}", seq=2 * batch + 1),
        ]
        run(eng, rows, batch)
        eng.store.wait_for_snapshot()  # written by a forked child: wait for it to land
    files = CheckpointFiles(str(tmp_path))
    assert files.batch_ids("engine_state", ".snapshot") == [0, SNAPSHOT_EVERY]
    _same_state(StateStore(files).load(SNAPSHOT_EVERY + 2), eng.state)
    _same_state(StateStore(files).load(SNAPSHOT_EVERY - 1), _replayed_without_files(tmp_path))


def _replayed_without_files(tmp_path: Path) -> EngineState | None:
    """The same first SNAPSHOT_EVERY batches in a fresh engine, kept in memory only."""
    eng = engine(tmp_path / "fresh")
    for batch in range(SNAPSHOT_EVERY):
        rows = [
            tx(2 * batch, batch, card=f"c{batch % 7}", terminal=f"t{batch % 3}", seq=2 * batch),
            tx(2 * batch + 1, batch + 0.5, card=f"c{batch % 5}", seq=2 * batch + 1),
        ]
        run(eng, rows, batch)
    return eng.state


def test_a_changelog_holds_the_batch_events_not_the_entities(tmp_path: Path) -> None:
    """A long-lived card's changelog costs the events the batch applied, not its history."""
    eng = engine(tmp_path)
    run(eng, [tx(i, i, seq=i) for i in range(300)], 0)  # batch 0: a snapshot
    run(eng, [tx(300, 300, seq=300)], 1)
    files = CheckpointFiles(str(tmp_path))
    log, _ = decode_state(files.get("engine_state/1.changes"), "1.changes")
    assert isinstance(log, BatchLog)
    assert [[e.event_id for e in events] for events in log.applied[CARD].values()] == [
        ["tx-000300"]
    ]
    assert list(log.applied[TERMINAL]) == ["term-1"] and log.events == 2
    _same_state(StateStore(files).load(1), eng.state)


def test_a_committed_batch_leaves_no_reference_to_its_events(tmp_path: Path) -> None:
    """Once its changelog has landed, the engine lets go of the batch's events: the driver's
    collection before the next batch then walks only what the state keeps (processor/heap)."""
    eng = engine(tmp_path)
    rows = [tx(i, i, seq=i) for i in range(3)]
    events = [from_row(row) for row in rows]
    eng.process(rows, 0, (), events)
    eng.commit()
    holders = [holder for holder in gc.get_referrers(events[1]) if holder is not events]
    assert holders == []


def test_evictions_and_held_events_replay_from_changelogs(tmp_path: Path) -> None:
    short = EngineSettings(
        watermark_delay_ms=MIN, idle_shard_timeout_ms=MIN, dedupe_retention_ms=HOUR
    )
    eng = engine(tmp_path, short)
    run(eng, [tx(1, 0, card="old", terminal="t-old")], 0)
    run(eng, [tx(2, 1, card="old", terminal="t-old", seq=2)], 1)
    days = 40 * 24 * 60  # past every retention: batch 2 evicts "old" and "t-old"
    run(eng, [tx(3, days, card="new", seq=3), tx(4, days + 1, card="new", seq=4)], 2)
    # Terminal events wait for the backlogged slow shard (held, in the changelog); its one
    # event cannot move its mark, so it waits too.
    ahead = [tx(10 + i, days + 60 + i, shard="fast", terminal="t", seq=i) for i in range(3)]
    held = eng.process([dict(r) for r in ahead + [tx(20, days + 2, shard="slow")]], 3, {"slow"})
    eng.commit()
    assert held.held == 4
    assert eng.state is not None and "old" not in eng.state.cards
    _same_state(StateStore(CheckpointFiles(str(tmp_path))).load(3), eng.state)


def test_a_snapshot_comes_early_when_the_changelogs_hold_many_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "SNAPSHOT_EVENTS", 10)
    store = StateStore(CheckpointFiles(str(tmp_path)), background_snapshots=False)
    eng = FeatureEngine(store, SETTINGS)
    for batch in range(6):
        run(eng, [tx(4 * batch + i, 4 * batch + i, seq=4 * batch + i) for i in range(4)], batch)
    files = CheckpointFiles(str(tmp_path))
    # 4 transactions = 8 entity events a batch: the second changelog after a snapshot passes 10.
    assert files.batch_ids("engine_state", ".snapshot") == [0, 2, 4]
    restarted = StateStore(files)
    _same_state(restarted.load(5), eng.state)
    eng.state = None  # a new driver would load; the store then counts batch 5's events
    run(eng, [tx(90, 90, seq=90)], 6)
    assert files.batch_ids("engine_state", ".snapshot") == [0, 2, 4, 6]


class _NoSnapshots(CheckpointFiles):
    def put(self, name: str, body: bytes) -> None:
        if name.endswith(".snapshot"):
            raise OSError("disk full")
        super().put(name, body)


def test_snapshots_land_from_a_child_and_a_failed_one_loses_nothing(tmp_path: Path) -> None:
    eng = engine(tmp_path / "ok")
    run(eng, [tx(1, 1.0), tx(2, 2.0)], 0)
    assert eng.store._snapshot_child is not None  # the batch did not wait for the snapshot
    eng.store.wait_for_snapshot()
    ok = CheckpointFiles(str(tmp_path / "ok"))
    assert ok.batch_ids("engine_state", ".snapshot") == [0]
    assert ok.batch_ids("engine_state", ".changes") == [0]  # the changelog is always written
    _same_state(StateStore(ok).load(0), eng.state)

    failing = FeatureEngine(StateStore(_NoSnapshots(str(tmp_path / "failing"))), SETTINGS)
    run(failing, [tx(1, 1.0), tx(2, 2.0)], 0)
    run(failing, [tx(3, 3.0, seq=3)], 1)
    failing.store.wait_for_snapshot()
    files = CheckpointFiles(str(tmp_path / "failing"))
    assert files.batch_ids("engine_state", ".snapshot") == []
    _same_state(StateStore(files).load(1), failing.state)


class _NicenessOfWriter(CheckpointFiles):
    """Leaves, beside each snapshot, the niceness of the process that wrote it."""

    def put(self, name: str, body: bytes) -> None:
        if name.endswith(".snapshot"):
            super().put(f"{name}.niceness", str(os.nice(0)).encode())
        super().put(name, body)


def test_the_snapshot_child_runs_at_the_lowest_priority(tmp_path: Path) -> None:
    # The batches after a snapshot ran slower while its child took a core from them.
    files = _NicenessOfWriter(str(tmp_path))
    eng = FeatureEngine(StateStore(files), SETTINGS)
    run(eng, [tx(1, 1.0)], 0)
    eng.store.wait_for_snapshot()
    written_at = int(files.get("engine_state/0.snapshot.niceness"))
    assert written_at == min(os.nice(0) + state_module.SNAPSHOT_NICENESS, 19)
    assert os.nice(0) < 19  # the parent keeps its own priority


class _HangingSnapshots(CheckpointFiles):
    def put(self, name: str, body: bytes) -> None:
        if name.endswith(".snapshot"):
            time.sleep(60)  # a child stuck on a lock it inherited
        super().put(name, body)


def test_a_stuck_snapshot_child_is_killed_and_the_next_snapshot_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "SNAPSHOT_TIMEOUT_S", 0.0)
    files = _HangingSnapshots(str(tmp_path))
    eng = FeatureEngine(StateStore(files), SETTINGS)
    run(eng, [tx(1, 1.0)], 0)
    child = eng.store._snapshot_child
    assert child is not None
    run(eng, [tx(2, 2.0, seq=2)], 1)  # its save finds the child over time and kills it
    with pytest.raises(ChildProcessError):
        os.waitpid(child[0], os.WNOHANG)  # reaped: no zombie left
    assert files.batch_ids("engine_state", ".snapshot") == []
    _same_state(StateStore(CheckpointFiles(str(tmp_path))).load(1), eng.state)


def _landed(files: CheckpointFiles, name: str, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not files.exists(name):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def small_background_changelogs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Changelogs of these tests' few events written by a child, as a big batch's are."""
    monkeypatch.setattr(state_module, "BACKGROUND_CHANGELOG_EVENTS", 1)


def test_a_small_changelog_is_written_by_the_batch(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    eng.process([tx(1, 1.0), tx(2, 2.0)], 0)  # 4 entity events: far below the threshold
    eng.start_commit()
    assert eng.store._changelog_child is None
    assert eng.commit() == len(CheckpointFiles(str(tmp_path)).get("engine_state/0.changes"))


@pytest.mark.usefixtures("small_background_changelogs")
def test_a_changelog_is_written_by_a_child_while_the_sinks_run(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    run(eng, [tx(1, 1.0), tx(2, 2.0)], 0)
    eng.process([tx(3, 3.0, seq=3)], 1)
    eng.start_commit()
    child = eng.store._changelog_child
    assert child is not None and child[1] == 1
    files = CheckpointFiles(str(tmp_path))
    assert _landed(files, "engine_state/1.changes")  # before `commit` was called
    written = eng.commit()
    assert written == len(files.get("engine_state/1.changes"))
    assert eng.store._changelog_child is None
    with pytest.raises(ChildProcessError):
        os.waitpid(child[0], os.WNOHANG)  # reaped: no zombie left
    eng.store.wait_for_snapshot()
    _same_state(StateStore(files).load(1), eng.state)


class _ChildCannotWrite(CheckpointFiles):
    """Changelogs fail to write in any process but the one that made this object."""

    def __init__(self, location: str, hang: bool = False) -> None:
        super().__init__(location)
        self.parent, self.hang = os.getpid(), hang

    def put(self, name: str, body: bytes) -> None:
        if name.endswith(".changes") and os.getpid() != self.parent:
            if self.hang:
                time.sleep(60)  # a child stuck on a lock it inherited
            raise OSError("disk full")
        super().put(name, body)


@pytest.mark.usefixtures("small_background_changelogs")
@pytest.mark.parametrize("hang", [False, True], ids=["failed", "stuck"])
def test_a_changelog_the_child_did_not_write_is_written_by_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hang: bool
) -> None:
    monkeypatch.setattr(state_module, "CHANGELOG_TIMEOUT_S", 0.5)
    eng = FeatureEngine(StateStore(_ChildCannotWrite(str(tmp_path), hang)), SETTINGS)
    eng.process([tx(1, 1.0), tx(2, 2.0)], 0)
    eng.start_commit()
    child = eng.store._changelog_child
    assert child is not None
    written = eng.commit()
    with pytest.raises(ChildProcessError):
        os.waitpid(child[0], os.WNOHANG)  # reaped (killed first when stuck)
    files = CheckpointFiles(str(tmp_path))
    assert written == len(files.get("engine_state/0.changes"))
    eng.store.wait_for_snapshot()
    _same_state(StateStore(files).load(0), eng.state)


@pytest.mark.usefixtures("small_background_changelogs")
def test_a_changelog_child_of_a_failed_attempt_is_reaped_and_replaced(tmp_path: Path) -> None:
    """A batch whose sinks failed after `start_commit` is decided again from the files; its
    first attempt's child is collected and the second attempt's changelog is the one kept."""
    eng = engine(tmp_path)
    eng.process([tx(1, 1.0)], 0)
    eng.start_commit()
    first = eng.store._changelog_child
    assert first is not None
    # Its sinks failed: no commit. The replay (here with one more record) reloads as of -1.
    eng.process([tx(1, 1.0), tx(2, 2.0, seq=2)], 0)
    eng.start_commit()
    with pytest.raises(ChildProcessError):
        os.waitpid(first[0], os.WNOHANG)
    eng.commit()
    eng.store.wait_for_snapshot()
    loaded = StateStore(CheckpointFiles(str(tmp_path))).load(0)
    assert _holds(loaded.seen, "transaction:tx-000001", "transaction:tx-000002")
    _same_state(loaded, eng.state)


def test_state_entries_are_named_and_an_old_format_is_a_clear_error(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    run(eng, [tx(1, 1.0), tx(2, 2.0)], 0)
    assert eng.state is not None
    card = eng.state.cards["card-a"]
    assert [entry.tx_id for entry in card["tx"]] == ["tx-000001", "tx-000002"]
    assert eng.state.terminals["term-1"]["tx"][0].card == "card-a"
    first = eng.state.seen.get("transaction:tx-000001")
    assert first is not None and first.event_ms == to_epoch_ms(T0) + MIN
    eng.store.wait_for_snapshot()  # or it could land over the file below
    # A file of the positional format (no marker) is refused with the way out, not misread.
    files = CheckpointFiles(str(tmp_path))
    old = zlib.compress(pickle.dumps(EngineState(batch_id=0)))
    files.put("engine_state/0.snapshot", old)
    with pytest.raises(StateFormatError, match="resume-from-lake"):
        StateStore(files).load(0)


def test_a_checkpoint_saved_before_the_hour_tiles_loads_with_them(tmp_path: Path) -> None:
    """Files of format 2 (ADR 0017's predecessor): entities without hour tiles, a changelog of
    whole entities. They load, converted, and batches replay onto them."""
    eng = engine(tmp_path / "now")
    run(eng, [tx(1, 1.0), tx(2, 90.0, card="card-b", terminal="term-2")], 0)
    run(eng, [tx(3, 150.0, seq=3)], 1)
    assert eng.state is not None

    def untiled(entity: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in entity.items() if k not in ("hours", "counts", "sums")}

    def format_2(value: Any) -> bytes:
        return b"engine-state/2\n" + zlib.compress(_unpacked_pickle(value))

    files = CheckpointFiles(str(tmp_path / "old"))
    kept = StateStore(CheckpointFiles(str(tmp_path / "now"))).load(0)
    kept.cards = {k: untiled(v) for k, v in kept.cards.items()}
    kept.terminals = {k: untiled(v) for k, v in kept.terminals.items()}
    files.put("engine_state/0.snapshot", format_2(kept))
    changes = Changes(
        cards={"card-a": untiled(eng.state.cards["card-a"])},
        terminals={"term-1": untiled(eng.state.terminals["term-1"])},
        seen={"transaction:tx-000003": SeenId(tx(3, 150.0)["payload_digest"], _ms(150.0))},
    )
    files.put("engine_state/1.changes", format_2((changes, eng.state.shards)))
    _same_state(StateStore(files).load(1), eng.state)
    assert eng.state.cards["card-a"]["counts"] == [1, 1]  # minutes 1 and 150: two hours
    # A batch after the upgrade logs events, replayed onto the converted entities.
    upgraded = FeatureEngine(StateStore(files), SETTINGS)
    after = [tx(4, 200.0, seq=4)]
    assert same_transactions(run(upgraded, after, 2), run(eng, after, 2))
    _same_state(StateStore(files).load(2), eng.state)


def _unpacked_pickle(value: Any) -> bytes:
    """`value` pickled as versions before format 4 did: every record as the object it is."""

    class Unpacked(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, EngineState | BatchLog):
                return copyreg.__newobj__, (type(obj),), dict(obj.__dict__)
            return NotImplemented

    buffer = io.BytesIO()
    Unpacked(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def _auth(n: int, minutes: float, card: str = "card-a", device: str = "dev-x") -> dict[str, Any]:
    """A failed login, as processor/parse.py makes it."""
    auth_id = f"auth-{n:06d}"
    return {
        **tx(n, minutes, card=card),
        "event_type": "auth",
        "event_id": auth_id,
        "transaction_id": None,
        "auth_id": auth_id,
        "terminal_id": None,
        "amount": None,
        "device_id": device,
        "success": False,
        "dedupe_key": f"auth:{auth_id}",
    }


def _chargeback(n: int, minutes: float, disputed: dict[str, Any]) -> dict[str, Any]:
    chargeback_id = f"cb-{n:06d}"
    return {
        **tx(n, minutes, card=disputed["card_token"], terminal=disputed["terminal_id"]),
        "event_type": "chargeback",
        "event_id": chargeback_id,
        "transaction_id": disputed["transaction_id"],
        "chargeback_id": chargeback_id,
        "transaction_time": disputed["event_time"],
        "confirmed_fraud": True,
        "amount": None,
        "dedupe_key": f"chargeback:{chargeback_id}",
    }


def _every_kind_of_record(eng: FeatureEngine) -> None:
    """Two batches leaving cards with devices and failed logins, a terminal with a chargeback,
    and terminal events held for a backlogged shard."""
    first = {**tx(1, 1.0), "device_id": "dev-a"}
    batch = [first, _auth(2, 2.0), tx(3, 3.0, card="card-b", seq=3), _chargeback(4, 4.0, first)]
    run(eng, batch, 0)
    ahead = [tx(10 + i, 600 + i, shard="fast", terminal="t-9", seq=i) for i in range(3)]
    behind = [tx(20, 30, shard="slow", terminal="t-9", seq=20)]
    eng.process([dict(r) for r in ahead + behind], 1, {"slow"})
    eng.commit()


def test_events_from_the_batchs_columns_decide_as_its_rows_do(tmp_path: Path) -> None:
    """The sink hands the engine `from_arrow` of the collected batch; a None in it, and every
    event when none are given, is built from its row: the decisions are the same."""
    first = {**tx(1, 1.0), "device_id": "dev-a"}
    rows = [first, _auth(2, 2.0), tx(3, 3.0, card="card-b", seq=3), _chargeback(4, 4.0, first)]
    rows += [{**tx(5, 5.0), "dead_letter_reason": "schema", "event_time": None}, tx(6, 6.0)]
    rows.reverse()  # against the stream order, which the engine sorts them into
    events = from_arrow(pa.Table.from_pylist(rows, schema=PARSED_ARROW_SCHEMA))
    assert events[1] is None and events[3] is not None
    events[3] = None
    given = engine(tmp_path / "given").process([dict(r) for r in rows], 0, (), events)
    built = engine(tmp_path / "built").process([dict(r) for r in rows], 0)
    assert len(given.transactions) == 3 and len(given.dead_letters) == 1
    assert featured(given)[-1]["card_failed_logins_1h"] == 1.0
    for name in ("transactions", "auth_events", "labels", "dead_letters"):
        assert repr(getattr(given, name)) == repr(getattr(built, name)), name


def test_state_files_hold_records_as_plain_tuples(tmp_path: Path) -> None:
    """Snapshots and changelogs pickle packed records (ADR 0021) and load them back equal."""
    eng = engine(tmp_path)
    _every_kind_of_record(eng)
    state = eng.state
    assert state is not None
    assert state.cards["card-a"]["dev"] and state.cards["card-a"]["fail"]
    assert state.terminals["term-1"]["cb"] and state.held
    body = pickle.dumps(state)
    for record in (b"CardTx", b"FirstUse", b"FailedLogin", b"TerminalTx", b"Disputed",
                   b"SeenId", b"HeldEvent", b"FeatureEvent"):  # fmt: skip
        assert record not in body, record
    _same_state(pickle.loads(body), state)
    log = eng._log
    back = pickle.loads(pickle.dumps(log))
    assert b"FeatureEvent" not in pickle.dumps(log)
    assert back.applied == log.applied and back.expired_days == log.expired_days
    assert all(np.array_equal(a, b) for a, b in zip(back.ids, log.ids, strict=True))
    assert repr(back.held) == repr(log.held)
    eng.store.wait_for_snapshot()
    _same_state(StateStore(CheckpointFiles(str(tmp_path))).load(1), state)


def test_a_checkpoint_of_format_3_still_loads(tmp_path: Path) -> None:
    """Files written before the packing (records pickled as they are) load, and batches go on
    from them."""
    eng = engine(tmp_path / "now")
    _every_kind_of_record(eng)
    eng.store.wait_for_snapshot()
    now, old = CheckpointFiles(str(tmp_path / "now")), CheckpointFiles(str(tmp_path / "old"))
    for suffix in (".snapshot", ".changes"):
        for batch in now.batch_ids("engine_state", suffix):
            name = f"engine_state/{batch}{suffix}"
            value = decode_state(now.get(name), name)
            old.put(name, b"engine-state/3\n" + zlib.compress(_unpacked_pickle(value)))
    assert b"FeatureEvent" in zlib.decompress(old.get("engine_state/1.changes")[15:])
    _same_state(StateStore(old).load(1), eng.state)
    resumed = FeatureEngine(StateStore(old), SETTINGS)
    after = [tx(30, 700, shard="slow", terminal="t-9", seq=30)]
    assert same_transactions(run(resumed, after, 2), run(eng, after, 2))


def test_a_checkpoint_of_format_4_still_loads(tmp_path: Path) -> None:
    """Files written with zlib before zstd (format 4, the same pickle) load, and batches go on
    from them; what this version writes is format 6."""
    eng = engine(tmp_path / "now")
    _every_kind_of_record(eng)
    eng.store.wait_for_snapshot()
    now, old = CheckpointFiles(str(tmp_path / "now")), CheckpointFiles(str(tmp_path / "old"))
    names = [
        f"engine_state/{batch}{suffix}"
        for suffix in (".snapshot", ".changes")
        for batch in now.batch_ids("engine_state", suffix)
    ]
    assert any(name.endswith(".snapshot") for name in names)
    for name in names:
        body = now.get(name)
        assert body.startswith(b"engine-state/6\n"), name
        pickled = pickle.dumps(decode_state(body, name), protocol=pickle.HIGHEST_PROTOCOL)
        old.put(name, b"engine-state/4\n" + zlib.compress(pickled, 1))
    _same_state(StateStore(old).load(1), eng.state)
    resumed = FeatureEngine(StateStore(old), SETTINGS)
    after = [tx(30, 700, shard="slow", terminal="t-9", seq=30)]
    assert same_transactions(run(resumed, after, 2), run(eng, after, 2))


def _format_5(value: Any, ids: dict[str, SeenId | None]) -> bytes:
    """`value` (an EngineState, or a changelog's (BatchLog, shards)) as format 5 wrote it: the
    same packed pickle, its dedupe ids as columns of keys, digests and event times."""
    keys = list(ids)
    columns = (
        keys,
        [None if ids[key] is None else ids[key][0] for key in keys],
        [None if ids[key] is None else ids[key][1] for key in keys],
    )

    class Format5(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, EngineState):
                return copyreg.__newobj__, (EngineState,), {**obj.__getstate__(), "seen": columns}
            if isinstance(obj, BatchLog):
                saved = obj.__getstate__()
                del saved["ids"], saved["expired_days"]
                return copyreg.__newobj__, (BatchLog,), {**saved, "seen": columns}
            return NotImplemented

    buffer = io.BytesIO()
    Format5(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    body = buffer.getvalue()
    compressed = pa.Codec("zstd", compression_level=1).compress(body, asbytes=True)
    return b"engine-state/5\n" + len(body).to_bytes(8, "little") + compressed


def test_a_checkpoint_of_format_5_loads_its_ids_into_the_index(tmp_path: Path) -> None:
    """Format 5 kept each dedupe id as its key and digest (None: evicted by that batch). They
    load hashed into the index: a re-sent copy is still a duplicate, an evicted id is new."""
    first, second = [tx(1, 1.0), tx(2, 2.0, seq=2)], [tx(3, 3.0, seq=3)]
    eng = engine(tmp_path / "now")
    run(eng, first, 0)
    run(eng, second, 1)
    eng.store.wait_for_snapshot()
    now, old = CheckpointFiles(str(tmp_path / "now")), CheckpointFiles(str(tmp_path / "old"))
    assert now.batch_ids("engine_state", ".snapshot") == [0]

    def seen(row: dict[str, Any], minutes: float) -> dict[str, SeenId | None]:
        return {row["dedupe_key"]: SeenId(row["payload_digest"], _ms(minutes))}

    snapshot = decode_state(now.get("engine_state/0.snapshot"), "snapshot")
    old.put(
        "engine_state/0.snapshot", _format_5(snapshot, seen(first[0], 1.0) | seen(first[1], 2.0))
    )
    changes = decode_state(now.get("engine_state/1.changes"), "changes")
    # As if batch 1 had also evicted tx 1 (format 5 evicted id by id).
    logged = seen(second[0], 3.0) | {first[0]["dedupe_key"]: None}
    old.put("engine_state/1.changes", _format_5(changes, logged))
    loaded = StateStore(old).load(1)
    assert _holds(loaded.seen, "transaction:tx-000002", "transaction:tx-000003")
    again = run(FeatureEngine(StateStore(old), SETTINGS), [tx(1, 1.0, seq=4), tx(3, 3.0, seq=5)], 2)
    assert again.duplicates == 1 and [row["event_id"] for row in again.transactions] == [
        "tx-000001"
    ]
    # The same ids from a checkpoint of this version: the same index.
    assert StateStore(now).load(0).seen == StateStore(old).load(0).seen


def test_idle_entities_and_old_ids_are_evicted(tmp_path: Path) -> None:
    short = EngineSettings(
        watermark_delay_ms=MIN, idle_shard_timeout_ms=MIN, dedupe_retention_ms=HOUR
    )
    days = 40 * 24 * 60  # past every card and terminal retention
    for restarted in (False, True):
        eng = engine(tmp_path / str(restarted), short)
        run(eng, [tx(1, 0, card="old"), tx(2, 1, card="old")], 0)
        if restarted:  # the expiry index is rebuilt from the state loaded
            eng = engine(tmp_path / str(restarted), short)
        run(eng, [tx(3, days, card="new", seq=3), tx(4, days + 1, card="new", seq=4)], 1)
        assert eng.state is not None
        assert "old" not in eng.state.cards and "new" in eng.state.cards
        assert _holds(eng.state.seen, "transaction:tx-000003", "transaction:tx-000004")


def _s3_checkpoint(settings: Any, folder: str) -> CheckpointFiles:
    """Checkpoint files under s3a://<the profile's bucket>/checkpoints/<folder> on moto."""
    from config.aws import make_client
    from scripts.setup_aws import ensure_bucket

    aws = settings.aws
    ensure_bucket(make_client("s3", aws), settings.s3.bucket, aws.region)
    return CheckpointFiles(
        f"s3a://{settings.s3.bucket}/checkpoints/{folder}",
        aws.endpoint_url,
        aws.region,
        aws.access_key_id,
        aws.secret_access_key,
    )


@pytest.mark.integration
def test_checkpoint_files_on_s3(settings: Any) -> None:
    from config.aws import make_client

    aws = settings.aws
    files = _s3_checkpoint(settings, "job")
    eng = FeatureEngine(StateStore(files), SETTINGS)
    run(eng, [tx(1, 0)], 0)
    run(eng, [tx(2, 1, seq=2)], 1)
    assert files.batch_ids("engine_state", ".changes") == [0, 1]
    make_client("s3", aws).put_object(
        Bucket=settings.s3.bucket, Key="checkpoints/job/commits/1", Body=b"v1\n{}"
    )
    assert files.last_committed_batch() == 1
    assert _holds(StateStore(files).load(1).seen, "transaction:tx-000001", "transaction:tx-000002")


@pytest.mark.integration
def test_checkpoint_files_keep_one_s3_client_per_process(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    files = _s3_checkpoint(settings, "one-client")
    config.lake._s3_client.cache_clear()  # other tests made one for the same endpoint
    made: list[str] = []
    new_client = boto3.client

    def counted(*args: Any, **kwargs: Any) -> Any:
        made.append(args[0])
        return new_client(*args, **kwargs)

    monkeypatch.setattr(boto3, "client", counted)
    files.put("engine_state/0.changes", b"zero")
    assert files.get("engine_state/0.changes") == b"zero"
    assert files.batch_ids("engine_state", ".changes") == [0]
    files.delete("engine_state/0.changes")
    assert made == ["s3"]  # one client for every call of this process
    pid = os.fork()
    if pid == 0:  # a forked child (a snapshot writer) must not use the parent's connections
        code = 99
        try:
            files.put("engine_state/1.changes", b"one")
            code = len(made) - 1  # clients the child made itself
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1
    assert files.get("engine_state/1.changes") == b"one"
