"""Fraud scenarios. Each returns the events it schedules, all labelled with its name.

A scenario starts "now" on a victim card and schedules its events in the future of event time;
the generator interleaves them with genuine traffic. Card testing and compromised-terminal fraud
use ordinary amounts, so an amount-only rule cannot see them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from producer.generator.population import (
    ATM_CATEGORY,
    CATEGORIES,
    CITIES,
    ECOM_CATEGORIES,
    HOME_CITY_COUNT,
)

if TYPE_CHECKING:
    from producer.generator.core import Scheduled, TransactionGenerator

MINUTE_MS = 60_000
HOUR_MS = 3_600_000


def _terminal_in(gen: TransactionGenerator, city: int, category: int) -> int:
    options = gen.population.terminals_by_city_category[(city, category)]
    return int(options[int(gen.rng.integers(len(options)))])


def _foreign_city(gen: TransactionGenerator, home: int) -> int:
    home_country = CITIES[home].country
    while True:
        city = int(gen.rng.integers(HOME_CITY_COUNT, len(CITIES)))
        if CITIES[city].country != home_country:
            return city


def card_testing(gen: TransactionGenerator, card: int, now_ms: int) -> list[Scheduled]:
    """3-10 tiny online payments 30-120 s apart, then one large purchase."""
    name = "card_testing"
    at = now_ms + int(gen.rng.integers(10_000, 120_000))
    out: list[Scheduled] = []
    city = int(gen.population.customer_city[gen.population.card_customer[card]])
    category = ECOM_CATEGORIES[int(gen.rng.integers(len(ECOM_CATEGORIES)))]
    for _ in range(int(gen.rng.integers(3, 11))):
        amount = round(float(gen.rng.uniform(0.5, 4.0)), 2)
        out.append(gen.fraud_tx(at, card, _terminal_in(gen, city, category), amount, name))
        at += int(gen.rng.integers(30_000, 120_001))
    big = round(float(gen.rng.uniform(400.0, 2500.0)), 2)
    out.append(gen.fraud_tx(at, card, _terminal_in(gen, city, 8), big, name))
    return out


def atm_cashout_abroad(gen: TransactionGenerator, card: int, now_ms: int) -> list[Scheduled]:
    """2-4 round cash withdrawals in a far country minutes after the card was used at home."""
    name = "atm_cashout_abroad"
    home = int(gen.population.customer_city[gen.population.card_customer[card]])
    city = _foreign_city(gen, home)
    at = now_ms + int(gen.rng.integers(5 * MINUTE_MS, 60 * MINUTE_MS))
    out: list[Scheduled] = []
    for _ in range(int(gen.rng.integers(2, 5))):
        amount = float(20 * int(gen.rng.integers(10, 26)))
        out.append(gen.fraud_tx(at, card, _terminal_in(gen, city, ATM_CATEGORY), amount, name))
        at += int(gen.rng.integers(2 * MINUTE_MS, 15 * MINUTE_MS))
    return out


def compromised_terminal(gen: TransactionGenerator, card: int, now_ms: int) -> list[Scheduled]:
    """A skimmed terminal: cards used there (genuinely) see ordinary-looking fraud hours later.

    `card` is one of the victims; a few more cards of the same city visit the terminal first.
    """
    name = "compromised_terminal"
    pop = gen.population
    city = int(pop.customer_city[pop.card_customer[card]])
    terminal = _terminal_in(gen, city, int(gen.rng.choice([0, 2, 4])))
    locals_ = np.flatnonzero(pop.customer_city[pop.card_customer] == city)
    victims = [card] + [int(v) for v in gen.rng.choice(locals_, size=int(gen.rng.integers(1, 4)))]
    out: list[Scheduled] = []
    at = now_ms
    for victim in dict.fromkeys(victims):  # distinct, in draw order
        at += int(gen.rng.integers(2 * MINUTE_MS, 30 * MINUTE_MS))
        out.append(gen.genuine_tx_at(at, victim, terminal))
        later = at + int(gen.rng.integers(2 * HOUR_MS, 30 * HOUR_MS))
        other_city = int(gen.rng.integers(HOME_CITY_COUNT))
        category = int(gen.rng.choice([0, 3, 4, 8]))
        customer = int(pop.card_customer[victim])
        amount = gen.typical_amount(customer, category)
        out.append(
            gen.fraud_tx(later, victim, _terminal_in(gen, other_city, category), amount, name)
        )
    return out


def account_takeover(gen: TransactionGenerator, card: int, now_ms: int) -> list[Scheduled]:
    """Failed logins from abroad on a new device, a success, then large online purchases."""
    name = "account_takeover"
    pop = gen.population
    customer = int(pop.card_customer[card])
    home = int(pop.customer_city[customer])
    ip_country = CITIES[_foreign_city(gen, home)].country
    device = f"dev-x{gen.next_id():08d}"
    at = now_ms + int(gen.rng.integers(MINUTE_MS, 30 * MINUTE_MS))
    out: list[Scheduled] = []
    for _ in range(int(gen.rng.integers(2, 6))):
        out.append(gen.auth_event(at, card, False, device, ip_country, name))
        at += int(gen.rng.integers(10_000, 90_000))
    out.append(gen.auth_event(at, card, True, device, ip_country, name))
    for _ in range(int(gen.rng.integers(1, 4))):
        at += int(gen.rng.integers(MINUTE_MS, 10 * MINUTE_MS))
        amount = round(gen.typical_amount(customer, 8) * float(gen.rng.uniform(6.0, 15.0)), 2)
        terminal = _terminal_in(gen, home, 8)
        out.append(gen.fraud_tx(at, card, terminal, amount, name, device_id=device))
    return out


def amount_anomaly(gen: TransactionGenerator, card: int, now_ms: int) -> list[Scheduled]:
    """One purchase far above what this customer spends in that category."""
    name = "amount_anomaly"
    pop = gen.population
    customer = int(pop.card_customer[card])
    category = int(gen.rng.choice([4, 5, 8]))
    amount = round(gen.typical_amount(customer, category) * float(gen.rng.uniform(8.0, 20.0)), 2)
    terminal = _terminal_in(gen, int(pop.customer_city[customer]), category)
    at = now_ms + int(gen.rng.integers(MINUTE_MS, 6 * HOUR_MS))
    return [gen.fraud_tx(at, card, terminal, amount, name)]


def structuring(gen: TransactionGenerator, card: int, now_ms: int) -> list[Scheduled]:
    """Round amounts just under a reporting limit, off-hours, minutes apart."""
    name = "structuring"
    pop = gen.population
    customer = int(pop.card_customer[card])
    city = int(pop.customer_city[customer])
    day_start = now_ms - now_ms % (24 * HOUR_MS) + 24 * HOUR_MS
    at = day_start + int(gen.rng.integers(HOUR_MS, 4 * HOUR_MS))  # 01:00-04:00 UTC next day
    limit = float(gen.rng.choice([1000.0, 3000.0]))
    out: list[Scheduled] = []
    for _ in range(int(gen.rng.integers(4, 9))):
        amount = limit - float(gen.rng.choice([5.0, 10.0, 20.0, 50.0]))
        category = int(gen.rng.choice([ATM_CATEGORY, 8]))
        out.append(gen.fraud_tx(at, card, _terminal_in(gen, city, category), amount, name))
        at += int(gen.rng.integers(3 * MINUTE_MS, 20 * MINUTE_MS))
    return out


SCENARIOS: dict[str, Callable[[TransactionGenerator, int, int], list[Any]]] = {
    "card_testing": card_testing,
    "atm_cashout_abroad": atm_cashout_abroad,
    "compromised_terminal": compromised_terminal,
    "account_takeover": account_takeover,
    "amount_anomaly": amount_anomaly,
    "structuring": structuring,
}
assert len(CATEGORIES) == 10  # the indices used above refer to population.CATEGORIES
