"""The engine's state and how it is kept: in memory between batches, on disk per batch id.

Batch N leaves a changelog `engine_state/<N>.changes` (a BatchLog): the events it applied to
each card and terminal, the entities it evicted after that, the ids it added to or dropped from
the dedupe index, the terminal events it held back or released (processor/engine/ordering.py),
and the shard marks. Loading applies those events again with the same feature code, which is
deterministic, so the log costs what the batch read, not what its entities hold: a batch of
2,200 events logs ~110 KB where the entities it touched pickle to ~4.7 MB (ADR 0019).

A full `engine_state/<N>.snapshot` is also left every SNAPSHOT_EVERY batches, or sooner once
the changelogs since the last one hold SNAPSHOT_EVENTS events: that bounds what a restart
replays. A forked child writes it while the next batches run (a 1-2 s pickle would otherwise
stall the batch that takes it), at the lowest CPU priority (ADR 0031); the batch's changelog
is written all the same, by a forked child too when the batch is big, while the batch's sinks
run (ADR 0024). A driver that starts (or a batch that finds its memory out of step) loads the
newest snapshot at or before N-1 and replays the changelogs after it, up to N-1: what batch N-1
left, never what an earlier attempt of batch N wrote.

The files are pickles: they live in the job's own checkpoint, which is as trusted as Spark's
state store beside them.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pyarrow as pa

from config.exceptions import StateFormatError
from ml_model.features import ENTITY_KINDS, card, terminal
from ml_model.features.definitions import CARD, TERMINAL
from ml_model.features.events import FeatureEvent
from processor.checkpoint_files import CheckpointFiles
from processor.engine.dedupe_index import EMPTY, Run, SeenIndex, ids_of
from processor.engine.packing import (
    EventPacker,
    pack_card,
    pack_terminal,
    unpack_card,
    unpack_columns,
    unpack_event,
    unpack_terminal,
)
from processor.engine.watermark import ShardMark

logger = logging.getLogger(__name__)

FOLDER = "engine_state"
SNAPSHOT_EVERY = 50
# Events a restart may have to replay (~65 µs each on the 2-core bench machine: ~13 s).
SNAPSHOT_EVENTS = 200_000
# A snapshot child still running after this long is killed (a fork can inherit a lock another
# thread held, e.g. in botocore); the changelogs still hold its state and the next one is tried.
SNAPSHOT_TIMEOUT_S = 600.0
# The snapshot child's niceness: the lowest priority, so that it runs on what the batches leave
# idle (ADR 0031: p99 arrival -> alert step 3.69 -> 2.65 s over ten minutes at 1,000/s).
SNAPSHOT_NICENESS = 19
# Files kept behind the newest snapshot, as Spark keeps its own logs.
RETAINED_BATCHES = 100
# A changelog of at least this many entity events is written by a forked child while the
# batch's sinks run (ADR 0024): the fork costs the driver ~13 ms, a changelog 3-8 µs an event.
BACKGROUND_CHANGELOG_EVENTS = 10_000
# How long a batch waits for the child writing its changelog before it kills it and writes the
# changelog itself (a 40k-event batch's, ~80k entity events, takes ~0.5 s).
CHANGELOG_TIMEOUT_S = 120.0
SNAPSHOT, CHANGES = ".snapshot", ".changes"
BOOTSTRAP = f"{FOLDER}/bootstrap{SNAPSHOT}"  # a warm start's state, before batch 0


class SeenId(NamedTuple):
    """An id as the dedupe index kept it before format 6 (processor/engine/dedupe_index.py):
    its payload's digest and its event time; read from older files only."""

    payload_digest: str
    event_ms: int


class HeldEvent(NamedTuple):
    """A terminal event waiting for the release mark; a transaction keeps its row (card
    features included) until its terminal features are computed and it is written."""

    event: FeatureEvent
    row: dict[str, Any] | None


@dataclass
class EngineState:
    """Everything a batch's decisions depend on besides its own input."""

    batch_id: int = -1  # the batch whose end this is
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    terminals: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the dedupe keys ("transaction:<id>") accepted: their first copy's digest and event time
    seen: SeenIndex = field(default_factory=SeenIndex)
    shards: dict[str, ShardMark] = field(default_factory=dict)
    # dedupe key -> a terminal event not yet applied (the release mark has not passed it)
    held: dict[str, HeldEvent] = field(default_factory=dict)

    def __getstate__(self) -> dict[str, Any]:
        # Records as plain tuples and lists, which pickle writes in C (ADR 0021).
        pack = EventPacker()
        return {
            "packed": True,
            "batch_id": self.batch_id,
            "cards": {key: pack_card(entity) for key, entity in self.cards.items()},
            "terminals": {key: pack_terminal(entity) for key, entity in self.terminals.items()},
            "seen": self.seen,
            "shards": self.shards,
            "held": _pack_held(self.held, pack),
        }

    def __setstate__(self, saved: dict[str, Any]) -> None:
        if saved.pop("packed", False):
            saved["cards"] = {key: unpack_card(entity) for key, entity in saved["cards"].items()}
            saved["terminals"] = {
                key: unpack_terminal(entity) for key, entity in saved["terminals"].items()
            }
            saved["held"] = _unpack_held(saved["held"])
        if isinstance(saved["seen"], tuple):  # formats 4-5: columns of keys, digests, times
            saved["seen"] = unpack_columns(saved["seen"], SeenId)
        if isinstance(saved["seen"], dict):  # formats 2-5
            saved["seen"] = SeenIndex.of(saved["seen"])
        # A file written before `held` existed has nothing held.
        self.__dict__.update({"held": {}, **saved})

    def entities(self, kind: str) -> dict[str, dict[str, Any]]:
        """The cards' or the terminals' states."""
        return self.cards if kind == CARD else self.terminals


@dataclass
class Changes:
    """Format 2's changelog (read, no longer written): each touched entity's whole new state,
    keyed like EngineState; None marks a removal."""

    cards: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    terminals: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    seen: dict[str, SeenId | None] = field(default_factory=dict)
    held: dict[str, HeldEvent | None] = field(default_factory=dict)

    def __setstate__(self, saved: dict[str, Any]) -> None:
        # A file written before `held` existed has nothing held.
        self.__dict__.update({"held": {}, **saved})


@dataclass
class BatchLog:
    """What one batch did to the state, to be done again on load."""

    # kind (CARD, TERMINAL) -> entity -> the events the batch applied to it, in one update call
    applied: dict[str, dict[str, list[FeatureEvent]]] = field(
        default_factory=lambda: {CARD: {}, TERMINAL: {}}
    )
    # kind -> entities evicted after the updates
    evicted: dict[str, list[str]] = field(default_factory=lambda: {CARD: [], TERMINAL: []})
    ids: Run = EMPTY  # the dedupe ids the batch accepted
    expired_days: list[int] = field(default_factory=list)  # of the dedupe index, after them
    # Ids dropped one by one: changelogs written before format 6 only.
    forgotten: list[str] = field(default_factory=list)
    held: dict[str, HeldEvent | None] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return sum(len(events) for table in self.applied.values() for events in table.values())

    def __getstate__(self) -> dict[str, Any]:
        pack = EventPacker()
        return {
            "packed": True,
            "applied": {
                kind: {
                    entity: [pack(event) for event in events] for entity, events in table.items()
                }
                for kind, table in self.applied.items()
            },
            "evicted": self.evicted,
            "ids": tuple(self.ids),
            "expired_days": self.expired_days,
            "held": _pack_held(self.held, pack),
        }

    def __setstate__(self, saved: dict[str, Any]) -> None:
        if saved.pop("packed", False):  # else written as named records (format 3)
            saved["applied"] = {
                kind: {entity: list(map(unpack_event, events)) for entity, events in table.items()}
                for kind, table in saved["applied"].items()
            }
            saved["held"] = _unpack_held(saved["held"])
        if "ids" in saved:
            saved["ids"] = Run(*saved["ids"])
        else:  # formats 3-5: {dedupe key: SeenId, or None where the batch evicted it}
            seen = saved.pop("seen")
            if isinstance(seen, tuple):
                seen = unpack_columns(seen, SeenId)
            added = {key: entry for key, entry in seen.items() if entry is not None}
            saved["ids"] = ids_of(added) if added else EMPTY
            saved["forgotten"] = [key for key, entry in seen.items() if entry is None]
        self.__dict__.update({"expired_days": [], "forgotten": [], **saved})


def _pack_held(
    held: dict[str, HeldEvent] | dict[str, HeldEvent | None], pack: EventPacker
) -> dict[str, Any]:
    return {
        key: None if entry is None else (pack(entry.event), entry.row)
        for key, entry in held.items()
    }


def _unpack_held(packed: dict[str, Any]) -> dict[str, Any]:
    return {
        key: None if entry is None else HeldEvent(unpack_event(entry[0]), entry[1])
        for key, entry in packed.items()
    }


def replay(state: EngineState, log: BatchLog) -> None:
    """Do again what the batch did: the same events through the same update functions."""
    for kind, applied in log.applied.items():
        fresh, update, _ = ENTITY_KINDS[kind]
        table = state.entities(kind)
        for entity, events in applied.items():
            table[entity] = update(table.get(entity) or fresh(), events)[0]
    for kind, evicted in log.evicted.items():
        table = state.entities(kind)
        for entity in evicted:
            table.pop(entity, None)
    state.seen.add(log.ids)
    state.seen.drop_days(log.expired_days)
    state.seen.discard(log.forgotten)
    _apply(state.held, log.held)


def _apply(table: dict[str, Any], updates: dict[str, Any]) -> None:
    for key, value in updates.items():
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


def apply_changes(state: EngineState, changes: Changes) -> None:
    """Apply a format-2 changelog: whole entities, converted to hour tiles (ADR 0017)."""
    for table, updates, upgrade in (
        (state.cards, changes.cards, card.with_tiles),
        (state.terminals, changes.terminals, terminal.with_tiles),
    ):
        _apply(table, {k: v if v is None else upgrade(v) for k, v in updates.items()})
    added = {key: entry for key, entry in changes.seen.items() if entry is not None}
    if added:
        ids = ids_of(added)
        state.seen.add(ids.take(~state.seen.lookup(ids.high, ids.low)[0]))
    state.seen.discard([key for key, entry in changes.seen.items() if entry is None])
    _apply(state.held, changes.held)


# Each file starts with the format it was written in. Format 6: format 5 with the dedupe index
# as numpy arrays of hashes (processor/engine/dedupe_index.py, ADR 0033), and each changelog's
# ids and expired days instead of {dedupe key: SeenId or None}. Format 5: format 4's pickle,
# compressed with zstd (level 1) instead of zlib, its length before the frame (ADR 0021, "Then:
# zstd"); still read, its ids hashed as they load. Format 4: records packed as plain tuples
# (processor/engine/packing.py, ADR 0021), zlib; still read. Format 3: changelogs are
# BatchLogs (events to replay), records pickled as they are; still read. Format 2: named state
# entries (ml_model/features CardTx, TerminalTx, ...; SeenId), changelogs of whole entities
# (Changes); still read, and cards and terminals without hour tiles (written before ADR 0017) are
# converted as they load. Files of format 1 (no marker, positional lists) cannot be read:
# start a new checkpoint with --resume-from-lake.
FORMAT = b"engine-state/6\n"
_ZSTD_FORMATS = (FORMAT, b"engine-state/5\n")
READABLE = (*_ZSTD_FORMATS, b"engine-state/4\n", b"engine-state/3\n", b"engine-state/2\n")
# With asbytes=True the codec writes into a Python bytes object (pyarrow's io.pxi), so the
# forked children that encode snapshots and changelogs never allocate from Arrow's memory pool,
# whose locks another thread of the driver may have held at the fork.
_ZSTD = pa.Codec("zstd", compression_level=1)
# The pickle's length, which Arrow's one-shot decompression needs.
_LENGTH = struct.Struct("<Q")


def encode_state(value: Any) -> bytes:
    """A state file's bytes: an EngineState, or a (BatchLog, shards) changelog."""
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return b"".join((FORMAT, _LENGTH.pack(len(body)), _ZSTD.compress(body, asbytes=True)))


def _decompress(marker: bytes, data: memoryview) -> bytes:
    if marker not in _ZSTD_FORMATS:
        return zlib.decompress(data)  # formats 2-4
    (length,) = _LENGTH.unpack_from(data)
    return _ZSTD.decompress(data[_LENGTH.size :], decompressed_size=length, asbytes=True)


def decode_state(body: bytes, name: str) -> Any:
    """What `encode_state` (or a version that wrote formats 2-4) encoded; `name` is for errors."""
    marker = next((marker for marker in READABLE if body.startswith(marker)), None)
    if marker is None:
        marked = body.startswith(b"engine-state/") and b"\n" in body[:32]
        written = body[: body.find(b"\n")].decode(errors="replace") if marked else "format 1"
        raise StateFormatError(
            f"engine state {name} is in {written!r}, this version reads "
            f"{FORMAT.decode().strip()!r}: move the checkpoint away and restart with "
            "--resume-from-lake (README: Recovering from a crash loop)"
        )
    data = _decompress(marker, memoryview(body)[len(marker) :])
    return pickle.loads(data)  # noqa: S301 - our checkpoint


@dataclass
class StateStore:
    """Reads and writes EngineState as per-batch files under the checkpoint."""

    files: CheckpointFiles
    # Snapshots from a forked child (False: in the batch, e.g. where fork is unavailable).
    background_snapshots: bool = hasattr(os, "fork")
    # Changelogs from a forked child while the batch's sinks run (False: written by `save`).
    background_changelogs: bool = hasattr(os, "fork")
    # (pid, batch, monotonic start) of the child writing a snapshot
    _snapshot_child: tuple[int, int, float] | None = field(default=None, init=False, repr=False)
    # (pid, batch, read end of its pipe) of the child writing a changelog
    _changelog_child: tuple[int, int, int] | None = field(default=None, init=False, repr=False)
    # Changelogs written (or replayed) since the newest snapshot, and the events they hold.
    _logs_since_snapshot: int = field(default=0, init=False, repr=False)
    _events_since_snapshot: int = field(default=0, init=False, repr=False)

    def load(self, as_of: int) -> EngineState:
        """The state at the end of batch `as_of` (an empty one before the first batch)."""
        snapshots = [b for b in self.files.batch_ids(FOLDER, SNAPSHOT) if b <= as_of]
        state = EngineState()
        if snapshots:
            name = f"{FOLDER}/{snapshots[-1]}{SNAPSHOT}"
            state = decode_state(self.files.get(name), name)
        elif self.files.exists(BOOTSTRAP):  # warm start: the state history left (batch -1)
            state = decode_state(self.files.get(BOOTSTRAP), BOOTSTRAP)
        # Entities saved before the hour tiles (ADR 0017) hold every event of their windows;
        # they are converted before any event is replayed onto them.
        for key, card_state in state.cards.items():
            state.cards[key] = card.with_tiles(card_state)
        for key, terminal_state in state.terminals.items():
            state.terminals[key] = terminal.with_tiles(terminal_state)
        changes = [b for b in self.files.batch_ids(FOLDER, CHANGES) if state.batch_id < b <= as_of]
        self._logs_since_snapshot = self._events_since_snapshot = 0
        for batch in changes:
            name = f"{FOLDER}/{batch}{CHANGES}"
            logged, shards = decode_state(self.files.get(name), name)
            if isinstance(logged, BatchLog):
                replay(state, logged)
                self._events_since_snapshot += logged.events
            else:  # format 2
                apply_changes(state, logged)
            self._logs_since_snapshot += 1
            state.shards = shards
            state.batch_id = batch
        state.batch_id = as_of
        logger.info(
            "engine state as of batch %d: %d cards, %d terminals, %d ids (snapshot %s + %d "
            "changelogs, %d events replayed)",
            as_of,
            len(state.cards),
            len(state.terminals),
            len(state.seen),
            snapshots[-1] if snapshots else None,
            len(changes),
            self._events_since_snapshot,
        )
        return state

    def save_bootstrap(self, state: EngineState) -> int:
        """Record a warm start: the state batch 0 starts from. Returns the bytes written."""
        state.batch_id = -1
        body = encode_state(state)
        self.files.put(BOOTSTRAP, body)
        return len(body)

    def has_bootstrap(self) -> bool:
        return self.files.exists(BOOTSTRAP)

    def start_save(self, state: EngineState, log: BatchLog) -> None:
        """Begin writing the changelog of batch `state.batch_id` (when it holds at least
        BACKGROUND_CHANGELOG_EVENTS events) from a forked child's copy-on-write view, so that
        it is pickled and written while the batch's sinks run; `save` waits for it. The file
        may land before the batch's sinks have: a load as of N-1, which is what a replay of
        batch N reads, never reads batch N's changelog."""
        self._stop_changelog_child()  # one of an attempt that failed before its save
        if not self.background_changelogs or log.events < BACKGROUND_CHANGELOG_EVENTS:
            return  # `save` writes it: a small changelog costs less than the fork
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: pickle, write (atomically), report the size, leave
            code = 1
            try:
                os.close(read_end)
                body = encode_state((log, state.shards))
                self.files.put(f"{FOLDER}/{state.batch_id}{CHANGES}", body)
                os.write(write_end, str(len(body)).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        self._changelog_child = (pid, state.batch_id, read_end)

    def _changelog_from_child(self, batch: int) -> int | None:
        """The bytes the child wrote batch `batch`'s changelog in; None if there is no such
        child or it failed or overran CHANGELOG_TIMEOUT_S (the caller then writes it)."""
        child = self._changelog_child
        if child is None or child[1] != batch:
            self._stop_changelog_child()
            return None
        pid, _, read_end = child
        waiting = select.poll()  # not select(): a driver's descriptors can pass FD_SETSIZE
        waiting.register(read_end, select.POLLIN)
        ready = waiting.poll(CHANGELOG_TIMEOUT_S * 1000)
        report = os.read(read_end, 64) if ready else b""
        self._stop_changelog_child()
        if not report:
            logger.warning("the changelog child of batch %d failed; writing it here", batch)
            return None
        return int(report)

    def _stop_changelog_child(self) -> None:
        """Reap the changelog child (killed first if still running) and close its pipe."""
        if self._changelog_child is None:
            return
        pid, _, read_end = self._changelog_child
        self._changelog_child = None
        os.close(read_end)
        if os.waitpid(pid, os.WNOHANG)[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)

    def save(self, state: EngineState, log: BatchLog) -> int:
        """Record the end of batch `state.batch_id`; returns the changelog's bytes.

        The changelog is always written before this returns: by the child `start_save` forked,
        or here. A snapshot, when due, is written by a forked child from its copy-on-write view
        of the state, while the next batches run: until it lands, a load uses the previous
        snapshot and these changelogs (ADR 0019)."""
        batch = state.batch_id
        written = self._changelog_from_child(batch)
        if written is None:
            body = encode_state((log, state.shards))
            self.files.put(f"{FOLDER}/{batch}{CHANGES}", body)
            written = len(body)
        self._reap_snapshot()
        self._logs_since_snapshot += 1
        self._events_since_snapshot += log.events
        due = (
            batch % SNAPSHOT_EVERY == 0
            or self._logs_since_snapshot >= SNAPSHOT_EVERY
            or self._events_since_snapshot >= SNAPSHOT_EVENTS
        )
        if due and self._snapshot_child is None:
            self._start_snapshot(state, batch)
            self._logs_since_snapshot = self._events_since_snapshot = 0
        return written

    def _start_snapshot(self, state: EngineState, batch: int) -> None:
        name = f"{FOLDER}/{batch}{SNAPSHOT}"
        if not self.background_snapshots:
            self.files.put(name, encode_state(state))
            self._prune(batch)
            return
        pid = os.fork()
        if pid == 0:  # the child: pickle, write (atomically), leave without any cleanup
            code = 1
            try:
                # Only what the batches leave idle: they ran slower while it took a core.
                os.nice(SNAPSHOT_NICENESS)
                self.files.put(name, encode_state(state))
                code = 0
            finally:
                os._exit(code)
        self._snapshot_child = (pid, batch, time.monotonic())

    def _reap_snapshot(self, wait: bool = False) -> None:
        """Collect a finished snapshot child; prune behind its snapshot if it succeeded."""
        if self._snapshot_child is None:
            return
        pid, batch, started = self._snapshot_child
        done, status = os.waitpid(pid, 0 if wait else os.WNOHANG)
        if done == 0:
            if time.monotonic() - started < SNAPSHOT_TIMEOUT_S:
                return
            os.kill(pid, signal.SIGKILL)
            done, status = os.waitpid(pid, 0)
        self._snapshot_child = None
        if os.waitstatus_to_exitcode(status) == 0:
            self._prune(batch)
        else:
            logger.warning("the snapshot of batch %d failed; the changelogs still hold it", batch)

    def wait_for_snapshot(self) -> None:
        """Block until a snapshot being written has landed (tests, shutdown)."""
        self._reap_snapshot(wait=True)

    def _prune(self, snapshot: int) -> None:
        """Drop files no load can need: everything before the previous snapshot's window."""
        horizon = snapshot - RETAINED_BATCHES
        for suffix in (SNAPSHOT, CHANGES):
            for batch in self.files.batch_ids(FOLDER, suffix):
                if batch < horizon:
                    self.files.delete(f"{FOLDER}/{batch}{suffix}")
