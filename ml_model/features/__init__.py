"""One feature definition for training (batch) and the stream: pure (state, events) functions."""

from ml_model.features.batch import ENTITY_KINDS, compute_features, entity_id
from ml_model.features.card import empty_card_state, update_card
from ml_model.features.definitions import (
    CARD,
    CARD_PART,
    ENTITIES_OF,
    FEATURE_NAMES,
    TERMINAL,
    TERMINAL_FEATURES,
)
from ml_model.features.events import FeatureEvent, from_arrow, from_frame, from_row
from ml_model.features.registry import FEATURES, FEATURES_BY_NAME, Feature, describe
from ml_model.features.terminal import empty_terminal_state, update_terminal

__all__ = [
    "CARD",
    "CARD_PART",
    "ENTITIES_OF",
    "ENTITY_KINDS",
    "FEATURES",
    "FEATURES_BY_NAME",
    "FEATURE_NAMES",
    "Feature",
    "TERMINAL",
    "TERMINAL_FEATURES",
    "FeatureEvent",
    "compute_features",
    "describe",
    "empty_card_state",
    "empty_terminal_state",
    "entity_id",
    "from_arrow",
    "from_frame",
    "from_row",
    "update_card",
    "update_terminal",
]
