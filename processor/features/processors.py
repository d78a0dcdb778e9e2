"""The stateful processors that wrap the pure feature functions, keyed by entity.

One operator, keyed by `entity` ("card|<token>", "terminal|<id>", or "none|<dedupe key>" for
rows that update no state), keeps each entity's state as one JSON value in the RocksDB state
store. Idle entities are evicted by an event-time timer at (newest event + retention): state
TTL would only work in processing time. The handler is written once (`_handle`) and served
through both Python APIs, so they can be measured against each other:

- `PandasFeatureProcessor` for `transformWithStateInPandas` (pandas DataFrames in and out);
- `RowFeatureProcessor` for `transformWithState` (Spark 4.1+'s Row API).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pyspark.sql.streaming.stateful_processor import StatefulProcessor
from pyspark.sql.types import StringType, StructField, StructType

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


def split_entity(entity: str) -> tuple[str, str]:
    kind, _, ident = entity.partition("|")
    return kind, ident


class _FeatureHandler:
    """State load / update / timer logic shared by both processor flavours."""

    _state: ValueState
    _handle: StatefulProcessorHandle

    def _open(self, handle: StatefulProcessorHandle) -> None:
        self._handle = handle
        self._state = handle.getValueState("entity_state", STATE_SCHEMA)

    def _load(self, kind: str) -> dict[str, Any]:
        stored = self._state.get() if self._state.exists() else None
        if stored is None or stored[0] is None:
            return ENTITY_KINDS[kind][0]()
        state: dict[str, Any] = json.loads(stored[0])
        return state

    def _records(self, entity: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each input row with its entity's features (None where the entity has none)."""
        kind, _ = split_entity(entity)
        if kind == PASSTHROUGH:
            for row in rows:
                row.update(dict.fromkeys(FEATURE_NAMES))
            return rows
        _, update, names = ENTITY_KINDS[kind]
        events = [from_row(row) for row in rows]
        state, produced = update(self._load(kind), events)
        by_id = {(event.kind, event.event_id): features for event, features in produced}
        for row, event in zip(rows, events, strict=True):
            features = by_id.get((event.kind, event.event_id), {})
            row.update(dict.fromkeys(FEATURE_NAMES))
            row.update({name: features[name] for name in names if name in features})
        timer = state.pop("timer", None)
        if timer is None:
            timer = state["max"] + RETENTION[kind]
            self._handle.registerTimer(timer)
        state["timer"] = timer
        self._state.update((json.dumps(state, separators=(",", ":")),))
        return rows

    def _expire(self, entity: str, watermark_ms: int) -> None:
        """Evict an entity idle past retention, or re-arm its timer if it has been active."""
        kind, _ = split_entity(entity)
        if kind == PASSTHROUGH or not self._state.exists():
            return
        state = self._load(kind)
        due = state["max"] + RETENTION[kind]
        if due <= watermark_ms:
            self._state.clear()
            return
        self._handle.registerTimer(due)
        state["timer"] = due
        self._state.update((json.dumps(state, separators=(",", ":")),))


class PandasFeatureProcessor(_FeatureHandler, StatefulProcessor):
    def init(self, handle: StatefulProcessorHandle) -> None:
        self._open(handle)

    def handleInputRows(
        self, key: Any, rows: Iterator[pd.DataFrame], timerValues: TimerValues
    ) -> Iterator[pd.DataFrame]:
        import pandas as pd

        frame = pd.concat(list(rows), ignore_index=True)
        records = self._records(key[0], frame.to_dict("records"))
        out = pd.DataFrame.from_records(records, columns=[*frame.columns, *FEATURE_NAMES])
        yield out

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

        records = self._records(key[0], [row.asDict() for row in rows])
        for record in records:
            yield Row(**record)

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
    import pandas as pd

    entity = key[0]
    kind, _ = split_entity(entity)
    if state.hasTimedOut:
        stored = json.loads(state.get[0])
        due = stored["max"] + RETENTION[kind]
        if due <= state.getCurrentWatermarkMs():
            state.remove()
        else:
            state.setTimeoutTimestamp(due)
        return
    frame = pd.concat(list(frames), ignore_index=True)
    rows = frame.to_dict("records")
    if kind == PASSTHROUGH:
        for row in rows:
            row.update(dict.fromkeys(FEATURE_NAMES))
    else:
        _, update, names = ENTITY_KINDS[kind]
        loaded = json.loads(state.get[0]) if state.exists else ENTITY_KINDS[kind][0]()
        events = [from_row(row) for row in rows]
        new_state, produced = update(loaded, events)
        by_id = {(event.kind, event.event_id): features for event, features in produced}
        for row, event in zip(rows, events, strict=True):
            features = by_id.get((event.kind, event.event_id), {})
            row.update(dict.fromkeys(FEATURE_NAMES))
            row.update({name: features[name] for name in names if name in features})
        state.update((json.dumps(new_state, separators=(",", ":")),))
        state.setTimeoutTimestamp(new_state["max"] + RETENTION[kind])
    yield pd.DataFrame.from_records(rows, columns=[*frame.columns, *FEATURE_NAMES])
