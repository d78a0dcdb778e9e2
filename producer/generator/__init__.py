"""Seeded synthetic card traffic with labelled fraud scenarios, anomalies and network delay."""

from producer.generator.core import TransactionGenerator
from producer.generator.options import (
    ANOMALY_KINDS,
    DEFAULT_SCENARIO_MIX,
    NETWORK_PROFILES,
    SCENARIO_NAMES,
    GeneratorOptions,
)

__all__ = [
    "ANOMALY_KINDS",
    "DEFAULT_SCENARIO_MIX",
    "NETWORK_PROFILES",
    "SCENARIO_NAMES",
    "GeneratorOptions",
    "TransactionGenerator",
]
