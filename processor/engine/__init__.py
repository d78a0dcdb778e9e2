"""Dedupe, lateness and features for a whole micro-batch on the driver, state per batch id."""

from processor.engine.engine import BatchResult, EngineSettings, FeatureEngine
from processor.engine.state import EngineState, StateStore
from processor.engine.watermark import delay_ms

__all__ = [
    "BatchResult",
    "EngineSettings",
    "EngineState",
    "FeatureEngine",
    "StateStore",
    "delay_ms",
]
