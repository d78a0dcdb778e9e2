"""The stateful processors that wrap the pure feature functions, keyed by entity.

One operator, keyed by `entity` ("card|<token>", "terminal|<id>", or "none|<dedupe key>" for
rows that update no state), keeps each entity's state as one JSON value in the RocksDB state
store. Idle entities are evicted by an event-time timer at (newest event + retention): state
TTL would only work in processing time. The handler is written once (`entity_features` plus
`_FeatureHandler`) and served through three Python APIs, so they can be measured against each
other (docs/decisions/0007-feature-state-api.md):

- `RowFeatureProcessor` for `transformWithState` (Spark 4.1+'s Row API);
- `PandasFeatureProcessor` for `transformWithStateInPandas` (pandas DataFrames in and out);
- `apply_in_pandas_with_state` for `applyInPandasWithState`.

The operator sees only the columns the features read plus the whole parsed row packed into one
string (stream.py): every column through a Python operator costs per key, not per batch.
Per key, the state server is asked as little as possible: `get` (no `exists` first), `update`,
and `registerTimer` once per entity lifetime (the state remembers its timer).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pyspark.sql.streaming.stateful_processor import StatefulProcessor
from pyspark.sql.types import BooleanType, DoubleType, StringType, StructField, StructType

from ml_model.features import ENTITY_KINDS, FEATURE_NAMES, from_row
from ml_model.features.definitions import CARD, CARD_RETENTION, TERMINAL_RETENTION

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Row
    from pyspark.sql.streaming.state import GroupState
    from pyspark.sql.streaming.stateful_processor import (
        ExpiredTimerInfo,
        StatefulProcessorHandle,
        TimerValues,
        ValueState,
    )

STATE_SCHEMA = StructType([StructField("json", StringType(), True)])
RETENTION = {CARD: CARD_RETENTION, "terminal": TERMINAL_RETENTION}
PASSTHROUGH = "none"
# The parsed row, packed into one string column that the operator hands back untouched.
PACKED = "parsed_json"
# What the operator emits per input row: the packed row, its role, then every feature.
OUTPUT_SCHEMA = StructType(
    [
        StructField(PACKED, StringType(), True),
        StructField("primary", BooleanType(), True),
        *(StructField(name, DoubleType(), True) for name in FEATURE_NAMES),
    ]
)

FeatureRow = tuple[Any, ...]
_NO_FEATURES: FeatureRow = (None,) * len(FEATURE_NAMES)


def split_entity(entity: str) -> tuple[str, str]:
    kind, _, ident = entity.partition("|")
    return kind, ident


def _dumps(state: dict[str, Any]) -> str:
    return json.dumps(state, separators=(",", ":"))


def entity_features(
    kind: str, state: dict[str, Any], rows: Sequence[dict[str, Any]]
) -> tuple[dict[str, Any], list[FeatureRow]]:
    """(state, input rows of one entity) -> (state, each row's FEATURE_NAMES values).

    A row gets only its entity kind's features (None elsewhere, and everywhere for an event
    that produces none, such as an auth); the other half comes from the other entity.
    """
    _, update, names = ENTITY_KINDS[kind]
    events = [from_row(row) for row in rows]
    state, produced = update(state, events)
    by_id = {(event.kind, event.event_id): features for event, features in produced}
    own = frozenset(names)
    out: list[FeatureRow] = []
    for event in events:
        features = by_id.get((event.kind, event.event_id))
        if not features:
            out.append(_NO_FEATURES)
            continue
        out.append(tuple(features.get(name) if name in own else None for name in FEATURE_NAMES))
    return state, out


class _FeatureHandler:
    """State load / update / timer logic shared by both transformWithState flavours."""

    _state: ValueState
    _handle: StatefulProcessorHandle

    def _open(self, handle: StatefulProcessorHandle) -> None:
        self._handle = handle
        self._state = handle.getValueState("entity_state", STATE_SCHEMA)

    def _stored(self) -> dict[str, Any] | None:
        """The entity's state, or None; one round trip (get answers None for a missing key)."""
        stored = self._state.get()
        if stored is None or stored[0] is None:
            return None
        state: dict[str, Any] = json.loads(stored[0])
        return state

    def _features(self, entity: str, rows: Sequence[dict[str, Any]]) -> list[FeatureRow]:
        """Each input row's features, with the entity's state read and written once."""
        kind, _ = split_entity(entity)
        if kind == PASSTHROUGH:
            return [_NO_FEATURES] * len(rows)
        loaded = self._stored()
        state, out = entity_features(
            kind, ENTITY_KINDS[kind][0]() if loaded is None else loaded, rows
        )
        timer = state.pop("timer", None)
        if timer is None:  # a new entity (or one reset after idling): arm its eviction once
            timer = state["max"] + RETENTION[kind]
            self._handle.registerTimer(timer)
        state["timer"] = timer
        self._state.update((_dumps(state),))
        return out

    def _expire(self, entity: str, watermark_ms: int) -> None:
        """Evict an entity idle past retention, or re-arm its timer if it has been active."""
        kind, _ = split_entity(entity)
        if kind == PASSTHROUGH:
            return
        state = self._stored()
        if state is None:
            return
        due = state["max"] + RETENTION[kind]
        if due <= watermark_ms:
            self._state.clear()
            return
        self._handle.registerTimer(due)
        state["timer"] = due
        self._state.update((_dumps(state),))


def _frame_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A small frame's rows as dicts (itertuples: far cheaper than to_dict per group)."""
    names = list(frame.columns)
    return [dict(zip(names, values, strict=True)) for values in frame.itertuples(False, None)]


def _output_frame(packed: Any, primary: Any, features: list[FeatureRow]) -> pd.DataFrame:
    """OUTPUT_SCHEMA's frame: one float block for the features, then the two carried columns."""
    import numpy as np
    import pandas as pd

    values = np.array(features, dtype=np.float64).reshape(len(features), len(FEATURE_NAMES))
    out = pd.DataFrame(values, columns=list(FEATURE_NAMES), copy=False)
    out.insert(0, "primary", primary)
    out.insert(0, PACKED, packed)
    return out


def _concat(frames: Iterator[pd.DataFrame]) -> pd.DataFrame:
    import pandas as pd

    parts = list(frames)
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


class PandasFeatureProcessor(_FeatureHandler, StatefulProcessor):
    def init(self, handle: StatefulProcessorHandle) -> None:
        self._open(handle)

    def handleInputRows(
        self, key: Any, rows: Iterator[pd.DataFrame], timerValues: TimerValues
    ) -> Iterator[pd.DataFrame]:
        frame = _concat(rows)
        features = self._features(key[0], _frame_rows(frame))
        yield _output_frame(frame[PACKED].to_numpy(), frame["primary"].to_numpy(), features)

    def handleExpiredTimer(
        self, key: Any, timerValues: TimerValues, expiredTimerInfo: ExpiredTimerInfo
    ) -> Iterator[pd.DataFrame]:
        self._expire(key[0], timerValues.getCurrentWatermarkInMs())
        return iter([])

    def close(self) -> None:
        pass


class RowFeatureProcessor(_FeatureHandler, StatefulProcessor):
    def init(self, handle: StatefulProcessorHandle) -> None:
        self._open(handle)

    def handleInputRows(
        self, key: Any, rows: Iterator[Row], timerValues: TimerValues
    ) -> Iterator[Row]:
        from pyspark.sql import Row

        output = Row(*OUTPUT_SCHEMA.fieldNames())
        records = [row.asDict() for row in rows]
        features = self._features(key[0], records)
        for record, values in zip(records, features, strict=True):
            yield output(record[PACKED], record["primary"], *values)

    def handleExpiredTimer(
        self, key: Any, timerValues: TimerValues, expiredTimerInfo: ExpiredTimerInfo
    ) -> Iterator[Row]:
        self._expire(key[0], timerValues.getCurrentWatermarkInMs())
        return iter([])

    def close(self) -> None:
        pass


def apply_in_pandas_with_state(
    key: tuple[Any, ...], frames: Iterator[pd.DataFrame], state: GroupState
) -> Iterator[pd.DataFrame]:
    """The same handler for `applyInPandasWithState`, whose state lives in the operator itself
    (no round trip to a state server per call) and whose event-time timeout evicts idle keys."""
    kind, _ = split_entity(key[0])
    if state.hasTimedOut:
        stored = json.loads(state.get[0])
        due = stored["max"] + RETENTION[kind]
        if due <= state.getCurrentWatermarkMs():
            state.remove()
        else:
            state.setTimeoutTimestamp(due)
        return
    frame = _concat(frames)
    if kind == PASSTHROUGH:
        features = [_NO_FEATURES] * len(frame)
    else:
        loaded = json.loads(state.get[0]) if state.exists else ENTITY_KINDS[kind][0]()
        new_state, features = entity_features(kind, loaded, _frame_rows(frame))
        state.update((_dumps(new_state),))
        state.setTimeoutTimestamp(new_state["max"] + RETENTION[kind])
    yield _output_frame(frame[PACKED].to_numpy(), frame["primary"].to_numpy(), features)
