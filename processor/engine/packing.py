"""The engine's state as plain tuples and lists for pickling, and back.

In memory every record of the state is a NamedTuple (or the FeatureEvent dataclass), so that
the feature code reads named fields. Pickle saves those through a Python-level reduce call per
object, but plain tuples, lists and dicts in C: a snapshot of 1,788 cards, 955 terminals and
180,000 dedupe ids took 0.81-1.21 s as named records and 0.54-1.05 s packed (ADR 0021). Packing
keeps every value; unpacking gives back records equal to the ones packed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from ml_model.features.card import TILE_TOTALS, CardTx, FailedLogin, FirstUse
from ml_model.features.events import FeatureEvent
from ml_model.features.running_window import WINDOWS
from ml_model.features.terminal import Chargeback, Disputed, TerminalTx

Packed = dict[str, Any]

_event_fields = attrgetter(*(f.name for f in dataclasses.fields(FeatureEvent)))


class EventPacker:
    """FeatureEvents as tuples; an event listed twice (a transaction applies to its card and to
    its terminal) becomes the same tuple object, which pickle then writes once."""

    def __init__(self) -> None:
        self._done: dict[int, tuple[Any, ...]] = {}

    def __call__(self, event: FeatureEvent) -> tuple[Any, ...]:
        packed = self._done.get(id(event))
        if packed is None:
            packed = self._done[id(event)] = _event_fields(event)
        return packed


def unpack_event(packed: tuple[Any, ...]) -> FeatureEvent:
    return FeatureEvent(*packed)


# What an entity's state derives and rebuilds on first use, so never saves: its running windows
# (ml_model/features/running_window.py), a card's running tile totals (ml_model/features/card.py).
DERIVED = frozenset({WINDOWS, TILE_TOTALS})


def _saved(state: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in state.items() if key not in DERIVED}


def pack_card(state: dict[str, Any]) -> Packed:
    return {
        **_saved(state),
        "tx": [tuple(entry) for entry in state["tx"]],
        "dev": {device: tuple(first) for device, first in state["dev"].items()},
        "fail": [tuple(entry) for entry in state["fail"]],
    }


def unpack_card(packed: Packed) -> dict[str, Any]:
    return {
        **packed,
        "tx": list(map(CardTx._make, packed["tx"])),
        "dev": {device: FirstUse._make(first) for device, first in packed["dev"].items()},
        "fail": list(map(FailedLogin._make, packed["fail"])),
    }


def pack_terminal(state: dict[str, Any]) -> Packed:
    return {
        **_saved(state),
        "tx": [tuple(entry) for entry in state["tx"]],
        "cb": {
            tx_id: (disputed.tx_time_ms, [tuple(c) for c in disputed.chargebacks])
            for tx_id, disputed in state["cb"].items()
        },
    }


def unpack_terminal(packed: Packed) -> dict[str, Any]:
    return {
        **packed,
        "tx": list(map(TerminalTx._make, packed["tx"])),
        "cb": {
            tx_id: Disputed(tx_time, list(map(Chargeback._make, chargebacks)))
            for tx_id, (tx_time, chargebacks) in packed["cb"].items()
        },
    }


def unpack_columns(
    columns: tuple[list[Any], ...], make: Callable[[Any, Any], Any]
) -> dict[str, Any]:
    """{key: (a, b) or None} from ([key...], [a or None...], [b or None...]), as formats 4-5
    saved the dedupe ids; each pair made a record by `make` (None stays None)."""
    keys, firsts, seconds = columns
    return {
        key: None if first is None else make(first, second)
        for key, first, second in zip(keys, firsts, seconds, strict=True)
    }
