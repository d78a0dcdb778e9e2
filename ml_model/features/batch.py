"""Batch mode: the same per-entity update functions, run over a whole history at once.

Each entity's events are applied in event-key order in one call; since a transaction's
features read only events that sort before it, this equals feeding the events through the
stream in event-time order, batch by batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from ml_model.features.card import empty_card_state, update_card
from ml_model.features.definitions import (
    CARD,
    CARD_PART,
    ENTITIES_OF,
    FEATURE_NAMES,
    TERMINAL,
    TERMINAL_FEATURES,
)
from ml_model.features.events import TRANSACTION, FeatureEvent
from ml_model.features.terminal import empty_terminal_state, update_terminal

Update = Callable[[dict[str, Any], list[FeatureEvent]], tuple[dict[str, Any], list[Any]]]

# entity kind -> (fresh state, update function, the features it produces)
ENTITY_KINDS: dict[str, tuple[Callable[[], dict[str, Any]], Update, tuple[str, ...]]] = {
    CARD: (empty_card_state, update_card, CARD_PART),
    TERMINAL: (empty_terminal_state, update_terminal, TERMINAL_FEATURES),
}


def entity_id(kind: str, event: FeatureEvent) -> str | None:
    return event.card if kind == CARD else event.terminal


def compute_features(events: Iterable[FeatureEvent]) -> pd.DataFrame:
    """One row per transaction: `transaction_id` then FEATURE_NAMES in order.

    Events repeated with the same (kind, id) count once, as the stream's dedupe makes them.
    """
    grouped: dict[tuple[str, str], list[FeatureEvent]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    order: list[str] = []
    for event in events:
        if (event.kind, event.event_id) in seen:
            continue
        seen.add((event.kind, event.event_id))
        if event.kind == TRANSACTION:
            order.append(event.event_id)
        for kind in ENTITIES_OF[event.kind]:
            entity = entity_id(kind, event)
            if entity is not None:
                grouped[(kind, entity)].append(event)
    rows: dict[str, dict[str, float]] = {tx_id: {} for tx_id in order}
    for (kind, _), entity_events in grouped.items():
        fresh, update, _names = ENTITY_KINDS[kind]
        _, produced = update(fresh(), entity_events)
        for event, features in produced:
            rows[event.event_id].update(features)
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(FEATURE_NAMES))
    frame.index.name = "transaction_id"
    return frame.reset_index()
