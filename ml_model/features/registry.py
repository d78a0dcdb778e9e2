"""The feature registry: every feature declared once, by its literal name, in the model's order.

In the style of Feast's feature views: each feature names its entity (the state it is computed
from), its window, its type and what it means. The model's column order, the lake's feature
columns, the model card and the reason codes' descriptions all come from here; the feature
functions write their values under these names (tests check both sides agree).

Windows are half-open on the past side (see definitions.py); `risk` windows are delayed by the
label delay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Entity = Literal["transaction", "card", "terminal"]
Kind = Literal["amount", "count", "flag", "ratio", "seconds", "km", "km/h", "share"]


@dataclass(frozen=True, slots=True)
class Feature:
    """One model input: its name, the entity whose state computes it, window, kind, meaning."""

    name: str
    entity: Entity
    window: str | None
    kind: Kind
    description: str


def _f(name: str, entity: Entity, window: str | None, kind: Kind, description: str) -> Feature:
    return Feature(name, entity, window, kind, description)


FEATURES: Final[tuple[Feature, ...]] = (
    # The transaction itself (computed with the card's features, from the event alone).
    _f("tx_amount", "transaction", None, "amount", "amount of the transaction"),
    _f("tx_is_ecom", "transaction", None, "flag", "1 for an e-commerce transaction"),
    _f("tx_is_atm", "transaction", None, "flag", "1 for an ATM withdrawal"),
    _f("tx_is_night", "transaction", None, "flag", "1 between 00:00 and 06:00 UTC"),
    _f("tx_is_weekend", "transaction", None, "flag", "1 on Saturday or Sunday (UTC)"),
    # The card's history before the transaction.
    _f("card_tx_count_10m", "card", "10m", "count", "card's transactions in the last 10 minutes"),
    _f("card_tx_amount_10m", "card", "10m", "amount", "card's spend in the last 10 minutes"),
    _f("card_tx_count_1h", "card", "1h", "count", "card's transactions in the last hour"),
    _f("card_tx_amount_1h", "card", "1h", "amount", "card's spend in the last hour"),
    _f("card_tx_count_24h", "card", "24h", "count", "card's transactions in the last 24 hours"),
    _f("card_tx_amount_24h", "card", "24h", "amount", "card's spend in the last 24 hours"),
    _f("card_tx_count_7d", "card", "7d", "count", "card's transactions in the last 7 days"),
    _f("card_tx_amount_7d", "card", "7d", "amount", "card's spend in the last 7 days"),
    _f(
        "card_amount_to_mean_30d",
        "card",
        "30d",
        "ratio",
        "amount over the card's mean amount of the last 30 days (null without history)",
    ),
    _f(
        "card_seconds_since_prev",
        "card",
        None,
        "seconds",
        "seconds since the card's previous transaction (null for its first)",
    ),
    _f("card_km_from_prev", "card", None, "km", "distance from the card's previous transaction"),
    _f(
        "card_kmh_from_prev",
        "card",
        None,
        "km/h",
        "speed needed to travel from the card's previous transaction (gap floored at 1 minute)",
    ),
    _f("card_merchants_24h", "card", "24h", "count", "distinct merchants of the card in 24 hours"),
    _f("card_countries_24h", "card", "24h", "count", "distinct countries of the card in 24 hours"),
    _f("card_new_device", "card", None, "flag", "1 when the card has not used this device before"),
    _f("card_failed_logins_1h", "card", "1h", "count", "card's failed logins in the last hour"),
    # The terminal's history before the transaction, all cards together.
    _f("terminal_tx_count_1h", "terminal", "1h", "count", "terminal's transactions in 1 hour"),
    _f(
        "terminal_tx_count_24h",
        "terminal",
        "24h",
        "count",
        "terminal's transactions in the last 24 hours",
    ),
    _f("terminal_cards_1h", "terminal", "1h", "count", "distinct cards at the terminal in 1 hour"),
    _f("terminal_cards_24h", "terminal", "24h", "count", "distinct cards at the terminal in 24h"),
    _f(
        "terminal_risk_1d",
        "terminal",
        "1d",
        "share",
        "share of the terminal's transactions of 1 day, 7 days ago, confirmed fraud since",
    ),
    _f(
        "terminal_risk_7d",
        "terminal",
        "7d",
        "share",
        "share of the terminal's transactions of 7 days, 7 days ago, confirmed fraud since",
    ),
    _f(
        "terminal_risk_30d",
        "terminal",
        "30d",
        "share",
        "share of the terminal's transactions of 30 days, 7 days ago, confirmed fraud since",
    ),
)

FEATURES_BY_NAME: Final = {feature.name: feature for feature in FEATURES}


def names_of(*entities: Entity) -> tuple[str, ...]:
    """The names of the features of `entities`, in the model's order."""
    return tuple(feature.name for feature in FEATURES if feature.entity in entities)


def describe(name: str) -> str:
    """The one-line description of a feature (the name itself for an unknown one)."""
    feature = FEATURES_BY_NAME.get(name)
    return feature.description if feature is not None else name
