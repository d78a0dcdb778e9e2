"""Streaming features: the stateful operator around ml_model.features, and the batch merge."""

from processor.features.processors import PandasFeatureProcessor, RowFeatureProcessor
from processor.features.stream import (
    FEATURED_SCHEMA,
    StateApi,
    merge_feature_parts,
    route_to_entities,
    with_features,
)

__all__ = [
    "FEATURED_SCHEMA",
    "PandasFeatureProcessor",
    "RowFeatureProcessor",
    "StateApi",
    "merge_feature_parts",
    "route_to_entities",
    "with_features",
]
