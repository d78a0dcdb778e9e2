"""The engine's state and how it is kept: in memory between batches, on disk per batch id.

Batch N leaves a changelog `engine_state/<N>.changes`: the new state of every entity it touched
(or None for one it evicted), the ids it added to or dropped from the dedupe index, the terminal
events it held back or released (processor/engine/ordering.py), and the shard marks. Every
SNAPSHOT_EVERY batches it leaves a full `engine_state/<N>.snapshot` instead. A
driver that starts (or a batch that finds its memory out of step) loads the newest snapshot at or
before N-1 and applies the changelogs after it, up to N-1: what batch N-1 left, never what an
earlier attempt of batch N wrote. Writing costs what the batch touched, not the whole state.

The files are pickles: they live in the job's own checkpoint, which is as trusted as Spark's
state store beside them.
"""

from __future__ import annotations

import logging
import pickle
import zlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from config.exceptions import StateFormatError
from ml_model.features import card, terminal
from ml_model.features.events import FeatureEvent
from processor.checkpoint_files import CheckpointFiles
from processor.engine.watermark import ShardMark

logger = logging.getLogger(__name__)

FOLDER = "engine_state"
SNAPSHOT_EVERY = 50
# Files kept behind the newest snapshot, as Spark keeps its own logs.
RETAINED_BATCHES = 100
SNAPSHOT, CHANGES = ".snapshot", ".changes"
BOOTSTRAP = f"{FOLDER}/bootstrap{SNAPSHOT}"  # a warm start's state, before batch 0


class SeenId(NamedTuple):
    """An event id the dedupe has seen: its payload's digest and its event time."""

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
    # dedupe key ("transaction:<id>") -> (payload digest, event time ms) of its first copy
    seen: dict[str, SeenId] = field(default_factory=dict)
    shards: dict[str, ShardMark] = field(default_factory=dict)
    # dedupe key -> a terminal event not yet applied (the release mark has not passed it)
    held: dict[str, HeldEvent] = field(default_factory=dict)

    def __setstate__(self, saved: dict[str, Any]) -> None:
        # A file written before `held` existed has nothing held.
        self.__dict__.update({"held": {}, **saved})


@dataclass
class Changes:
    """What one batch changed, keyed like EngineState; None marks a removal."""

    cards: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    terminals: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    seen: dict[str, SeenId | None] = field(default_factory=dict)
    held: dict[str, HeldEvent | None] = field(default_factory=dict)

    def __setstate__(self, saved: dict[str, Any]) -> None:
        # A file written before `held` existed has nothing held.
        self.__dict__.update({"held": {}, **saved})


def apply_changes(state: EngineState, changes: Changes) -> None:
    for table, updates in (
        (state.cards, changes.cards),
        (state.terminals, changes.terminals),
        (state.seen, changes.seen),
        (state.held, changes.held),
    ):
        for key, value in updates.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value  # type: ignore[assignment]


# Each file starts with the format it was written in. Format 2: named state entries
# (ml_model/features CardTx, TerminalTx, ...; SeenId); cards and terminals without hour tiles
# (written before ADR 0017) are converted as they load. Files of format 1 (no marker, positional
# lists) cannot be read: start a new checkpoint with --resume-from-lake.
FORMAT = b"engine-state/2\n"


def _dump(value: Any) -> bytes:
    return FORMAT + zlib.compress(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), 1)


def _load(body: bytes, name: str) -> Any:
    if not body.startswith(FORMAT):
        marked = body.startswith(b"engine-state/") and b"\n" in body[:32]
        written = body[: body.find(b"\n")].decode(errors="replace") if marked else "format 1"
        raise StateFormatError(
            f"engine state {name} is in {written!r}, this version reads "
            f"{FORMAT.decode().strip()!r}: move the checkpoint away and restart with "
            "--resume-from-lake (README: Recovering from a crash loop)"
        )
    return pickle.loads(zlib.decompress(body[len(FORMAT) :]))  # noqa: S301 - our checkpoint


@dataclass
class StateStore:
    """Reads and writes EngineState as per-batch files under the checkpoint."""

    files: CheckpointFiles

    def load(self, as_of: int) -> EngineState:
        """The state at the end of batch `as_of` (an empty one before the first batch)."""
        snapshots = [b for b in self.files.batch_ids(FOLDER, SNAPSHOT) if b <= as_of]
        state = EngineState()
        if snapshots:
            name = f"{FOLDER}/{snapshots[-1]}{SNAPSHOT}"
            state = _load(self.files.get(name), name)
        elif self.files.exists(BOOTSTRAP):  # warm start: the state history left (batch -1)
            state = _load(self.files.get(BOOTSTRAP), BOOTSTRAP)
        changes = [b for b in self.files.batch_ids(FOLDER, CHANGES) if state.batch_id < b <= as_of]
        for batch in changes:
            name = f"{FOLDER}/{batch}{CHANGES}"
            batch_changes, shards = _load(self.files.get(name), name)
            apply_changes(state, batch_changes)
            state.shards = shards
            state.batch_id = batch
        state.batch_id = as_of
        # Entities saved before the hour tiles (ADR 0017) hold every event of their windows.
        for key, card_state in state.cards.items():
            state.cards[key] = card.with_tiles(card_state)
        for key, terminal_state in state.terminals.items():
            state.terminals[key] = terminal.with_tiles(terminal_state)
        logger.info(
            "engine state as of batch %d: %d cards, %d terminals, %d ids (snapshot %s + %d "
            "changelogs)",
            as_of,
            len(state.cards),
            len(state.terminals),
            len(state.seen),
            snapshots[-1] if snapshots else None,
            len(changes),
        )
        return state

    def save_bootstrap(self, state: EngineState) -> int:
        """Record a warm start: the state batch 0 starts from. Returns the bytes written."""
        state.batch_id = -1
        body = _dump(state)
        self.files.put(BOOTSTRAP, body)
        return len(body)

    def has_bootstrap(self) -> bool:
        return self.files.exists(BOOTSTRAP)

    def save(self, state: EngineState, changes: Changes) -> int:
        """Record the end of batch `state.batch_id`; returns the bytes written."""
        batch = state.batch_id
        if batch % SNAPSHOT_EVERY == 0:
            body = _dump(state)
            self.files.put(f"{FOLDER}/{batch}{SNAPSHOT}", body)
            self._prune(batch)
        else:
            body = _dump((changes, state.shards))
            self.files.put(f"{FOLDER}/{batch}{CHANGES}", body)
        return len(body)

    def _prune(self, snapshot: int) -> None:
        """Drop files no load can need: everything before the previous snapshot's window."""
        horizon = snapshot - RETAINED_BATCHES
        for suffix in (SNAPSHOT, CHANGES):
            for batch in self.files.batch_ids(FOLDER, suffix):
                if batch < horizon:
                    self.files.delete(f"{FOLDER}/{batch}{suffix}")
