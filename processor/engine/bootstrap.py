"""Warm start: a new checkpoint's feature state built from history, not empty.

A job started on an empty checkpoint otherwise sees a card's first event as if the card had no
past, while training computed that event's features over the whole history. `--bootstrap-from`
takes the history from the lake (its transactions, auth_events and labels tables), from a JSONL
file of contract events (PANs are tokenised with the job's key, as the stream does) or from a
Parquet file with the lake's event columns. Each card's and terminal's events go through the
same `update_*` functions, in event-key order, so the state is exactly what the stream would
hold after reading that history; entities idle past their retention are left out.

The state is saved as the checkpoint's bootstrap snapshot, the state "as of batch -1", which
batch 0 then starts from. The dedupe index holds the history's ids within the dedupe retention
of its newest event, so a copy re-sent from before the start is dropped, not scored again.
History rows carry no payload digest, so such a copy is taken as re-sent whatever its payload
(a conflicting one is not told apart).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from config.exceptions import ContractError
from ml_model.features import (
    ENTITIES_OF,
    ENTITY_KINDS,
    FeatureEvent,
    entity_id,
    from_arrow,
    from_frame,
    from_row,
)
from ml_model.features.definitions import CARD, CARD_RETENTION, TERMINAL, TERMINAL_RETENTION
from processor.card_tokens import card_token
from processor.engine.dedupe_index import history_ids
from processor.engine.state import EngineState
from producer.contract import parse_event_time, parse_payload

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

LAKE_TABLES = ("transactions", "auth_events", "labels")
RETENTION = {CARD: CARD_RETENTION, TERMINAL: TERMINAL_RETENTION}


def bootstrap_state(events: Iterable[FeatureEvent], *, dedupe_retention_ms: int) -> EngineState:
    """The engine state after `events` (any order; repeated ids count once), with their ids
    in the dedupe index when within `dedupe_retention_ms` of the newest."""
    grouped: dict[tuple[str, str], list[FeatureEvent]] = defaultdict(list)
    seen: dict[str, int] = {}  # dedupe key (processor/parse.py's) -> event ms
    newest = None
    for event in events:
        key = f"{event.kind}:{event.event_id}"
        if key in seen:
            continue
        seen[key] = event.time_ms
        newest = event.time_ms if newest is None else max(newest, event.time_ms)
        for kind in ENTITIES_OF[event.kind]:
            entity = entity_id(kind, event)
            if entity is not None:
                grouped[(kind, entity)].append(event)
    state = EngineState()
    for (kind, entity), entity_events in grouped.items():
        fresh, update, _ = ENTITY_KINDS[kind]
        current, _ = update(fresh(), entity_events)
        if newest is not None and current["max"] + RETENTION[kind] < newest:
            continue  # idle past its retention: the stream would have evicted it
        (state.cards if kind == CARD else state.terminals)[entity] = current
    if newest is not None:
        # The stream expires an id once the watermark is past its day's end by the retention;
        # ids already that old would only be dropped by batch 0.
        kept = {key: ms for key, ms in seen.items() if ms + dedupe_retention_ms > newest}
        state.seen.add(history_ids(list(kept), list(kept.values())))
    return state


def _contract_rows(path: Path, key: bytes) -> Iterator[dict[str, Any]]:
    """Rows as processor/parse.py makes them, from a JSONL file of contract events."""
    rejected = 0
    with path.open("rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            event, problem = parse_payload(line)
            if problem is not None or event is None:
                rejected += 1
                continue
            row = dict(event)
            pan = row.pop("card_number", None)
            row["card_token"] = card_token(pan, key) if pan else None
            row["event_time"] = parse_event_time(event["event_time"])
            if event.get("transaction_time"):
                row["transaction_time"] = parse_event_time(event["transaction_time"])
            yield row
    if rejected:
        logger.warning("%s: %d lines break the contract and were left out", path, rejected)


def _lake_events(spark: SparkSession, lake_path: str) -> Iterator[FeatureEvent]:
    from delta.tables import DeltaTable

    for table in LAKE_TABLES:
        path = f"{lake_path.rstrip('/')}/{table}"
        if not DeltaTable.isDeltaTable(spark, path):
            logger.info("bootstrap: the lake has no table %s yet", path)
            continue
        # Built as the stream builds its batches'; rows that are no feature events left out.
        events = from_arrow(spark.read.format("delta").load(path).toArrow())
        yield from (event for event in events if event is not None)


def history_events(
    source: str, key: bytes, spark: SparkSession | None = None
) -> list[FeatureEvent]:
    """The feature events of a history source: a lake folder, a .jsonl or a .parquet file."""
    path = Path(source)
    if source.endswith(".jsonl"):
        if not path.is_file():
            raise ContractError(f"--bootstrap-from {source}: no such file")
        events = [
            from_row(row)
            for row in _contract_rows(path, key)
            if row.get("event_type") in ENTITIES_OF and row.get("event_time") is not None
        ]
    elif source.endswith(".parquet"):
        if not path.exists():
            raise ContractError(f"--bootstrap-from {source}: no such file")
        events = from_frame(pd.read_parquet(path), skip_refused=True)  # as training reads it
    else:
        if spark is None:
            raise ContractError(f"--bootstrap-from {source}: reading a lake needs Spark")
        events = list(_lake_events(spark, source))
    if not events:
        raise ContractError(f"--bootstrap-from {source}: no events found")
    return events
