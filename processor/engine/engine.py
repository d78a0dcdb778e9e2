"""The feature engine: one micro-batch's parsed rows -> the rows of each lake table.

It runs on the driver inside foreachBatch, over the whole batch at once, with its state in
memory (processor/engine/state.py keeps it on disk per batch id). Per batch:

1. **Dedupe**, exact for `dedupe_retention` of event time: an id seen before with the same
   payload is dropped (counted); with another payload it becomes a dead letter `duplicate_conflict`
   naming the batch order, never dropped silently. Copies inside one batch are decided in stream
   order (shard, sequence number), so a replay decides the same. Ids a warm start took from
   history have no known payload: any copy of them is dropped as re-sent.
2. **Lateness** against the watermark at the batch's start (processor/engine/watermark.py):
   a late event is still scored and written, flagged `late` with its lateness.
3. **Features** with the same pure functions as training (ml_model/features): each card's
   events of the batch in event-key order, on that card's state (a card's events share a shard,
   which keeps their order). A terminal's events wait until no backlogged shard can still
   deliver an earlier one (processor/engine/ordering.py), then are applied in event-key order;
   a transaction is written once its terminal features are known.
4. **State upkeep**: the watermark advances, entities idle past their retention and ids past
   the dedupe retention are evicted, through a day-bucketed index (cost follows the work).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from ml_model.features import (
    CARD_PART,
    ENTITIES_OF,
    ENTITY_KINDS,
    FEATURE_NAMES,
    TERMINAL_FEATURES,
    from_row,
)
from ml_model.features.definitions import (
    CARD,
    CARD_RETENTION,
    DAY,
    HOUR,
    TERMINAL,
    TERMINAL_RETENTION,
)
from ml_model.features.events import FeatureEvent
from processor.engine.dedupe_index import (
    UNKNOWN_DIGEST,
    FirstCopy,
    Queries,
    Run,
    digest_prefixes,
    key_hashes,
)
from processor.engine.ordering import release_mark
from processor.engine.state import BatchLog, EngineState, HeldEvent, StateStore
from processor.engine.watermark import advance, combined
from producer.contract import to_epoch_ms

logger = logging.getLogger(__name__)

REASON_DUPLICATE_CONFLICT = "duplicate_conflict"
# How long an entity's state outlives its newest event (the longest window it serves).
RETENTION = {CARD: CARD_RETENTION, TERMINAL: TERMINAL_RETENTION}
Row = dict[str, Any]


@dataclass(frozen=True)
class EngineSettings:
    watermark_delay_ms: int
    idle_shard_timeout_ms: int
    dedupe_retention_ms: int


@dataclass
class BatchResult:
    """One batch's rows per destination, and what was decided about them."""

    # with features, late, lateness_ms: this batch's and earlier ones' released by this batch
    transactions: list[Row] = field(default_factory=list)
    auth_events: list[Row] = field(default_factory=list)
    labels: list[Row] = field(default_factory=list)
    dead_letters: list[Row] = field(default_factory=list)
    duplicates: int = 0
    late: int = 0
    watermark_ms: int | None = None
    held: int = 0  # terminal events still waiting for the release mark after this batch
    # The transactions' features: a row each, in `transactions`' order; FEATURE_NAMES' columns.
    features: np.ndarray = field(default_factory=lambda: np.empty((0, len(FEATURE_NAMES))))


_NAN = float("nan")
_NO_TERMINAL = (_NAN,) * len(TERMINAL_FEATURES)


def _card_part_of(row: Row) -> tuple[float, ...]:
    """The card features a held transaction's row kept (NaN where it has none)."""
    return tuple(row.get(name, _NAN) for name in CARD_PART)


def values_matrix(values: Sequence[Sequence[float | None]], width: int) -> np.ndarray:
    """Rows of `width` values as one float matrix (None -> NaN).

    The values stream into it (`np.fromiter`: half the time of `np.array` over 40,000 tuples,
    which first works out their shape); a None, which `fromiter` refuses, sends the batch the
    slower way.
    """
    shape = (len(values), width)
    try:
        matrix = np.fromiter(chain.from_iterable(values), dtype=float, count=shape[0] * width)
    except TypeError:
        matrix = np.array(values, dtype=float)
    return matrix.reshape(shape)


def _stream_order(pair: tuple[Row, Any]) -> tuple[str, int, str, int]:
    row = pair[0]
    sequence = row["sequenceNumber"] or ""
    return (row["shardId"] or "", len(sequence), sequence, row["subSequenceNumber"] or 0)


def _conflict(row: Row, first: FirstCopy) -> Row:
    """A re-sent id with other content: kept as a dead letter, payload as parsed (tokenised)."""
    kept = {k: v for k, v in row.items() if v is not None and not k.startswith("dead_letter")}
    body = json.dumps(kept, default=str, sort_keys=True).encode()
    return {
        **row,
        "dead_letter_reason": REASON_DUPLICATE_CONFLICT,
        "dead_letter_field": "event_id",
        "dead_letter_detail": (
            f"id {row['dedupe_key']} was first seen with event time "
            f"{datetime.fromtimestamp(first.event_ms / 1000, UTC).isoformat()} and another payload"
        ),
        "raw_payload_masked": body,
    }


class FeatureEngine:
    """Holds the state between batches; `process` is batch N given the end of batch N-1."""

    def __init__(self, store: StateStore, settings: EngineSettings) -> None:
        self.store = store
        self.settings = settings
        self.state: EngineState | None = None
        # Expiry day -> the entities that may expire then (an entity is rescheduled by each
        # batch that updates it). The dedupe index expires its ids by day itself.
        self._expiry: dict[int, set[tuple[str, str]]] = defaultdict(set)
        self._log = BatchLog()
        self._pending: EngineState | None = None

    # ------------------------------------------------------------------ state in step
    def _state_before(self, batch_id: int) -> EngineState:
        if self.state is None or self.state.batch_id != batch_id - 1:
            self.state = self.store.load(batch_id - 1)
            self._expiry = defaultdict(set)
            for kind, table in ((CARD, self.state.cards), (TERMINAL, self.state.terminals)):
                for key, entity in table.items():
                    self._schedule(kind, key, entity["max"] + RETENTION[kind])
        return self.state

    def _schedule(self, kind: str, key: str, expires_ms: int) -> None:
        self._expiry[expires_ms // DAY + 1].add((kind, key))

    # ------------------------------------------------------------------ one batch
    def process(
        self,
        rows: list[Row],
        batch_id: int,
        backlogged: Collection[str] = (),
        events: Sequence[FeatureEvent | None] | None = None,
    ) -> BatchResult:
        """Decide batch `batch_id`. Call `commit` after its sinks succeeded.

        `backlogged`: the shards this batch did not read to their tip (its source offset);
        terminal events after the slowest of them wait for a later batch. `events`: each row's
        `from_row`, if already built (`from_arrow` over the collected batch); a None is built
        from its row.
        """
        state = self._state_before(batch_id)
        self.state = None  # out of step until commit: a failure forces a reload
        self._log = BatchLog()
        result = BatchResult()
        watermark = combined(
            state.shards, self.settings.watermark_delay_ms, self.settings.idle_shard_timeout_ms
        )
        valid: list[tuple[Row, FeatureEvent]] = []
        marks: list[tuple[str, int, int]] = []  # (shard, arrival ms, event ms) of the valid rows
        built = events if events is not None else [None] * len(rows)
        ordered = sorted(zip(rows, built, strict=True), key=_stream_order)
        for row, _ in ordered:
            if row["dead_letter_reason"] is not None:
                result.dead_letters.append(row)
        candidates = [
            (row, event if event is not None else from_row(row))
            for row, event in ordered
            if row["dead_letter_reason"] is None
        ]
        for row, event in self._dedupe(state, candidates, result):
            moment = event.time_ms
            lateness = None if watermark is None else watermark - moment
            row["late"] = lateness is not None and lateness >= 0
            row["lateness_ms"] = lateness if row["late"] else None
            result.late += int(row["late"])
            valid.append((row, event))
            marks.append((row["shardId"], to_epoch_ms(row["approximateArrivalTimestamp"]), moment))
        state.shards = advance(state.shards, marks)
        release = release_mark(state.shards, backlogged, watermark)
        result.transactions, result.features = self._features(state, valid, release)
        result.held = len(state.held)
        for row, _ in valid:
            kind = row["event_type"]
            if kind == "auth":
                result.auth_events.append(row)
            elif kind != "transaction":
                result.labels.append(row)
        result.watermark_ms = combined(
            state.shards, self.settings.watermark_delay_ms, self.settings.idle_shard_timeout_ms
        )
        if result.watermark_ms is not None:
            self._evict(state, result.watermark_ms)
        state.batch_id = batch_id
        self._pending = state
        return result

    def start_commit(self) -> None:
        """Begin persisting the processed batch's state, in the background while the batch's
        sinks run (processor/engine/state.py: `StateStore.start_save`). Optional: `commit`
        persists it either way."""
        assert self._pending is not None, "start_commit() without process()"
        self.store.start_save(self._pending, self._log)

    def commit(self) -> int:
        """Persist the processed batch's state; it becomes the state for the next batch."""
        state = self._pending
        assert state is not None, "commit() without process()"
        written = self.store.save(state, self._log)
        self.state = state
        # The changelog has landed: let go of the batch's events it listed, so that the
        # collection before the next batch does not walk them (processor/heap.py).
        self._log = BatchLog()
        return written

    def state_entries(self) -> dict[str, int]:
        """How many cards, terminals, dedupe ids and held events the committed state holds."""
        state = self.state
        if state is None:
            return {}
        return {
            "cards": len(state.cards),
            "terminals": len(state.terminals),
            "ids": len(state.seen),
            "held": len(state.held),
        }

    def history_ms(self) -> int | None:
        """How far back in event time the feature state reaches: from the oldest hour a
        terminal's tiles hold to the newest event. The tiles keep more than the longest window
        (ADR 0017), so a warm state covers every window; one started cold (no
        `--bootstrap-from`) covers only the event time since its start. None without state."""
        state = self._pending if self._pending is not None else self.state
        if state is None:
            return None
        spans = [(t["hours"][0], t["max"]) for t in state.terminals.values() if t["hours"]]
        if not spans:
            return None
        return max(newest for _, newest in spans) - min(hour for hour, _ in spans) * HOUR

    # ------------------------------------------------------------------ pieces
    def _dedupe(
        self, state: EngineState, candidates: list[tuple[Row, FeatureEvent]], result: BatchResult
    ) -> list[tuple[Row, FeatureEvent]]:
        """The candidates (in stream order) whose id is new; the index learns them. A re-sent
        copy is counted, one with another payload becomes a dead letter."""
        # The index is asked about the whole batch at once; copies inside the batch are
        # decided in stream order: the first copy of a new id is accepted, and every other copy
        # is compared with the first copy (the index's, or the batch's own). Only the copies
        # take a Python step; the new ids, nearly all of a batch, are decided in arrays.
        high, low = key_hashes([row["dedupe_key"] for row, _ in candidates])
        digests = digest_prefixes([row["payload_digest"] for row, _ in candidates])
        times = np.fromiter(
            (event.time_ms for _, event in candidates), dtype=np.int64, count=len(candidates)
        )
        queries = Queries.of(high, low)
        known, known_digests, known_times = state.seen.lookup_queries(queries)
        new = ~known & (queries.first == np.arange(len(candidates)))
        first_digests = np.where(known, known_digests, digests[queries.first])
        first_times = np.where(known, known_times, times[queries.first])
        copies = np.flatnonzero(~new)
        resent = (first_digests[copies] == digests[copies]) | (
            first_digests[copies] == UNKNOWN_DIGEST
        )
        result.duplicates += int(resent.sum())
        for position in copies[~resent].tolist():
            first = FirstCopy(int(first_digests[position]), int(first_times[position]))
            result.dead_letters.append(_conflict(candidates[position][0], first))
        kept = np.flatnonzero(new)
        self._log.ids = Run(high[kept], low[kept], digests[kept], times[kept])
        state.seen.add(self._log.ids)
        return [candidates[position] for position in kept.tolist()]

    def _features(
        self, state: EngineState, valid: list[tuple[Row, FeatureEvent]], release: int | None
    ) -> tuple[list[Row], np.ndarray]:
        """Card features now; terminal events held until `release`; the transactions whose
        features are complete, in event-key order (held ones of earlier batches included), and
        their features (a row each, FEATURE_NAMES order; NaN for an entity a transaction has
        none of)."""

        def due(event: FeatureEvent) -> bool:
            return release is None or event.time_ms < release

        by_card: dict[str, list[FeatureEvent]] = defaultdict(list)
        by_terminal: dict[str, list[FeatureEvent]] = defaultdict(list)
        complete: list[tuple[FeatureEvent, Row]] = []
        # Held in earlier batches, and now due (the state keeps only what still waits).
        for key in [key for key, held in state.held.items() if due(held.event)]:
            event, row = state.held.pop(key)
            self._log.held[key] = None
            assert event.terminal is not None
            by_terminal[event.terminal].append(event)
            if row is not None:
                complete.append((event, row))
        for row, event in valid:
            kinds = ENTITIES_OF[row["event_type"]]
            is_tx = row["event_type"] == "transaction"
            if CARD in kinds and event.card is not None:
                by_card[event.card].append(event)
            if TERMINAL in kinds and event.terminal is not None:
                if due(event):
                    by_terminal[event.terminal].append(event)
                    if is_tx:
                        complete.append((event, row))
                else:
                    held = HeldEvent(event, row if is_tx else None)
                    state.held[row["dedupe_key"]] = self._log.held[row["dedupe_key"]] = held
            elif is_tx:
                complete.append((event, row))  # no terminal: nothing to wait for
        # Each kind's features are kept apart from the rows, by transaction id, and become the
        # batch's matrix at the end: writing 32 values into each row and reading them back out
        # cost more (ADR 0044).
        card = self._update(state, CARD, by_card)
        # A transaction held for its terminal keeps its card features in its row, which the
        # state saves, until its terminal's are known.
        for waiting in self._log.held.values():
            if waiting is not None and waiting.row is not None:
                values = card.get(waiting.event.event_id)
                if values is not None:
                    waiting.row.update(zip(CARD_PART, values, strict=True))
        terminal = self._update(state, TERMINAL, by_terminal)
        complete.sort(key=lambda pair: pair[0].key)
        features = [
            (card.get(event.event_id) or _card_part_of(row))
            + terminal.get(event.event_id, _NO_TERMINAL)
            for event, row in complete
        ]
        return [row for _, row in complete], values_matrix(features, len(FEATURE_NAMES))

    def _update(
        self, state: EngineState, kind: str, grouped: dict[str, list[FeatureEvent]]
    ) -> dict[str, tuple[float, ...]]:
        """Apply each entity's events (in event-key order) to its state; returns each
        transaction's features of this kind by transaction id, in FEATURE_NAMES' order."""
        fresh, update, names = ENTITY_KINDS[kind]
        values_of = itemgetter(*names)
        table = state.entities(kind)
        applied = self._log.applied[kind]
        features: dict[str, tuple[float, ...]] = {}
        for entity, events in grouped.items():
            current, produced = update(table.get(entity) or fresh(), events)
            table[entity] = current
            applied[entity] = events
            self._schedule(kind, entity, current["max"] + RETENTION[kind])
            for event, values in produced:
                features[event.event_id] = values_of(values)
        return features

    def _evict(self, state: EngineState, watermark: int) -> None:
        """Drop what the watermark has passed: idle entities, ids past the dedupe retention."""
        self._log.expired_days = state.seen.expired_days(
            watermark, self.settings.dedupe_retention_ms
        )
        state.seen.drop_days(self._log.expired_days)
        for bucket in [b for b in self._expiry if b * DAY <= watermark]:
            for kind, key in self._expiry.pop(bucket):
                table = state.entities(kind)
                entity = table.get(key)
                if entity is not None and entity["max"] + RETENTION[kind] < watermark:
                    del table[key]
                    self._log.evicted[kind].append(key)
