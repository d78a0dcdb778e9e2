"""Generator options: one frozen, validated dataclass; a bad value names its option."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from config.exceptions import ConfigError
from producer.contract import FRAUD_SCENARIOS

SCENARIO_NAMES: Final = FRAUD_SCENARIOS
NETWORK_PROFILES: Final = ("excellent", "good", "normal", "poor", "terrible")
ANOMALY_KINDS: Final = (
    "missing_field",
    "wrong_type",
    "negative_amount",
    "future_timestamp",
    "unknown_currency",
    "duplicate",
    "not_json",
)
DEFAULT_SCENARIO_MIX: Final[Mapping[str, float]] = {
    "card_testing": 0.2,
    "atm_cashout_abroad": 0.15,
    "compromised_terminal": 0.2,
    "account_takeover": 0.15,
    "amount_anomaly": 0.15,
    "structuring": 0.15,
}
# 2026-01-01T00:00:00Z: a fixed default so that the same seed gives the same bytes.
DEFAULT_START_TIME_MS: Final = 1_767_225_600_000


def _check(condition: bool, option: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"invalid generator option {option!r}: {message}")


def normalise_mix(mix: Mapping[str, float] | None) -> dict[str, float]:
    """Validate a scenario mix and scale its weights to sum to one."""
    mix = dict(DEFAULT_SCENARIO_MIX if mix is None else mix)
    unknown = sorted(set(mix) - set(SCENARIO_NAMES))
    _check(not unknown, "scenario_mix", f"unknown scenarios {unknown}; known: {SCENARIO_NAMES}")
    for name, weight in mix.items():
        _check(
            isinstance(weight, int | float) and math.isfinite(weight) and weight >= 0,
            "scenario_mix",
            f"weight of {name!r} must be a number >= 0",
        )
    total = sum(mix.values())
    _check(total > 0, "scenario_mix", "at least one scenario needs a positive weight")
    return {name: mix.get(name, 0.0) / total for name in SCENARIO_NAMES}


@dataclass(frozen=True)
class GeneratorOptions:
    """Everything that determines the generated stream; equal options give identical bytes."""

    seed: int = 42
    num_transactions: int | None = 10_000  # None: unbounded stream
    start_time_ms: int = DEFAULT_START_TIME_MS
    fraud_rate: float = 0.005
    scenario_mix: Mapping[str, float] | None = None
    anomaly_rate: float = 0.0
    network: str = "excellent"
    chargeback_delay_days: float = 7.0
    genuine_report_rate: float = 0.001
    num_customers: int = 2_000
    num_terminals: int = 1_000
    transactions_per_customer_day: float = 4.0
    login_share: float = 0.2  # share of e-commerce transactions preceded by a login
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check(isinstance(self.seed, int), "seed", "must be an integer")
        _check(
            self.num_transactions is None or self.num_transactions >= 0,
            "num_transactions",
            "must be >= 0 or None",
        )
        _check(0.0 <= self.fraud_rate <= 0.5, "fraud_rate", "must be between 0 and 0.5")
        _check(0.0 <= self.anomaly_rate <= 0.5, "anomaly_rate", "must be between 0 and 0.5")
        _check(self.network in NETWORK_PROFILES, "network", f"must be one of {NETWORK_PROFILES}")
        _check(self.chargeback_delay_days >= 0, "chargeback_delay_days", "must be >= 0")
        _check(0.0 <= self.genuine_report_rate <= 0.1, "genuine_report_rate", "must be in [0, 0.1]")
        _check(self.num_customers >= 10, "num_customers", "must be >= 10")
        _check(self.num_terminals >= 10, "num_terminals", "must be >= 10")
        _check(
            self.transactions_per_customer_day > 0,
            "transactions_per_customer_day",
            "must be > 0",
        )
        _check(0.0 <= self.login_share <= 1.0, "login_share", "must be in [0, 1]")
        normalise_mix(self.scenario_mix)

    def with_changes(self, **changes: Any) -> GeneratorOptions:
        """A validated copy with some options changed (used by the control API)."""
        unknown = sorted(set(changes) - set(self.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown generator options {unknown}")
        return replace(self, **changes)
