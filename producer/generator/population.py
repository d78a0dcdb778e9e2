"""The simulated world: cities, customers with cards and devices, merchants with terminals.

Built once per generator from its seed, with numpy, so a population of thousands costs
milliseconds and the per-event loop only indexes into arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from producer.contract import luhn_check_digit


@dataclass(frozen=True, slots=True)
class City:
    name: str
    country: str
    currency: str
    latitude: float
    longitude: float


CITIES: Final = (
    City("New York", "US", "USD", 40.7128, -74.0060),
    City("Chicago", "US", "USD", 41.8781, -87.6298),
    City("San Francisco", "US", "USD", 37.7749, -122.4194),
    City("London", "GB", "GBP", 51.5074, -0.1278),
    City("Manchester", "GB", "GBP", 53.4808, -2.2426),
    City("Paris", "FR", "EUR", 48.8566, 2.3522),
    City("Lyon", "FR", "EUR", 45.7640, 4.8357),
    City("Berlin", "DE", "EUR", 52.5200, 13.4050),
    City("Munich", "DE", "EUR", 48.1351, 11.5820),
    City("Toronto", "CA", "CAD", 43.6532, -79.3832),
    # Foreign-only cities: customers never live here; cash-out fraud happens here.
    City("Sao Paulo", "BR", "BRL", -23.5505, -46.6333),
    City("Mexico City", "MX", "MXN", 19.4326, -99.1332),
    City("Warsaw", "PL", "PLN", 52.2297, 21.0122),
    City("Sydney", "AU", "AUD", -33.8688, 151.2093),
    City("Tokyo", "JP", "JPY", 35.6762, 139.6503),
)
HOME_CITY_COUNT: Final = 10


@dataclass(frozen=True, slots=True)
class CategoryProfile:
    """Merchant category (ISO 18245 MCC) with its typical amount (median) and channel."""

    mcc: str
    median_amount: float
    channel: str
    weight: float


CATEGORIES: Final = (
    CategoryProfile("5411", 45.0, "pos", 0.22),  # grocery
    CategoryProfile("5812", 32.0, "contactless", 0.16),  # restaurants
    CategoryProfile("5541", 55.0, "pos", 0.10),  # fuel
    CategoryProfile("5912", 22.0, "contactless", 0.08),  # pharmacy
    CategoryProfile("5691", 85.0, "pos", 0.08),  # clothing
    CategoryProfile("5732", 260.0, "pos", 0.04),  # electronics
    CategoryProfile("4111", 12.0, "contactless", 0.08),  # transit
    CategoryProfile("5967", 18.0, "ecom", 0.10),  # digital goods
    CategoryProfile("5999", 60.0, "ecom", 0.10),  # online retail
    CategoryProfile("6011", 120.0, "atm", 0.04),  # ATM cash
)
ATM_CATEGORY: Final = 9
ECOM_CATEGORIES: Final = (7, 8)
SEGMENTS: Final = ("retail", "business", "premium")
SEGMENT_SPEND: Final = np.array([1.0, 1.8, 3.0])
ISSUER_BINS: Final = ("453211", "455673", "491761", "516732", "542418", "554433")


@dataclass(frozen=True)
class Population:
    """Column arrays of customers, cards and terminals; index i is entity i."""

    customer_id: list[str]
    customer_city: np.ndarray  # index into CITIES
    customer_segment: np.ndarray  # index into SEGMENTS
    customer_age: np.ndarray
    customer_spend: np.ndarray  # multiplier of category medians
    customer_spread: np.ndarray  # log-normal sigma of amounts
    customer_rate: np.ndarray  # transactions per day
    customer_cards: list[list[int]]
    customer_devices: list[list[str]]
    card_number: list[str]
    card_customer: np.ndarray
    terminal_id: list[str]
    merchant_id: list[str]
    terminal_city: np.ndarray
    terminal_category: np.ndarray
    terminal_latitude: np.ndarray
    terminal_longitude: np.ndarray
    terminals_by_city_category: dict[tuple[int, int], np.ndarray]


def _pan(rng: np.random.Generator) -> str:
    body = ISSUER_BINS[int(rng.integers(len(ISSUER_BINS)))] + "".join(
        str(d) for d in rng.integers(0, 10, size=9)
    )
    return body + luhn_check_digit(body)


def build_population(
    rng: np.random.Generator, num_customers: int, num_terminals: int, tx_per_day: float
) -> Population:
    """Draw customers (home, segment, age, spending), cards, devices and terminals."""
    customer_city = rng.integers(0, HOME_CITY_COUNT, size=num_customers)
    customer_segment = rng.choice(3, size=num_customers, p=[0.7, 0.2, 0.1])
    customer_age = rng.integers(18, 86, size=num_customers)
    customer_spend = SEGMENT_SPEND[customer_segment] * rng.lognormal(0.0, 0.3, num_customers)
    customer_spread = rng.uniform(0.35, 0.8, size=num_customers)
    customer_rate = rng.gamma(4.0, tx_per_day / 4.0, size=num_customers)

    card_number: list[str] = []
    card_customer: list[int] = []
    customer_cards: list[list[int]] = []
    customer_devices: list[list[str]] = []
    for index in range(num_customers):
        n_cards = 1 + int(rng.random() < (0.15 + 0.25 * customer_segment[index]))
        cards = []
        for _ in range(n_cards):
            cards.append(len(card_number))
            card_number.append(_pan(rng))
            card_customer.append(index)
        customer_cards.append(cards)
        n_devices = 1 + int(rng.integers(0, 3))
        customer_devices.append([f"dev-{index:06d}-{d}" for d in range(n_devices)])

    # Every (city, category) pair gets at least one terminal, the rest are spread by weight.
    weights = np.array([c.weight for c in CATEGORIES])
    pairs = [(city, cat) for city in range(len(CITIES)) for cat in range(len(CATEGORIES))]
    extra = max(0, num_terminals - len(pairs))
    extra_city = rng.integers(0, HOME_CITY_COUNT, size=extra)
    extra_category = rng.choice(len(CATEGORIES), size=extra, p=weights / weights.sum())
    terminal_city = np.concatenate([np.array([p[0] for p in pairs]), extra_city])
    terminal_category = np.concatenate([np.array([p[1] for p in pairs]), extra_category])
    lat = np.array([CITIES[c].latitude for c in terminal_city])
    lon = np.array([CITIES[c].longitude for c in terminal_city])
    # Terminals scatter ~10 km around the city centre.
    terminal_latitude = np.round(lat + rng.normal(0, 0.05, len(lat)), 4)
    terminal_longitude = np.round(lon + rng.normal(0, 0.07, len(lon)), 4)
    count = len(terminal_city)
    terminal_id = [f"term-{i:06d}" for i in range(count)]
    merchant_id = [f"merch-{i // 2:06d}" for i in range(count)]  # two terminals per merchant
    by_pair: dict[tuple[int, int], list[int]] = {}
    for index in range(count):
        by_pair.setdefault((int(terminal_city[index]), int(terminal_category[index])), []).append(
            index
        )
    return Population(
        customer_id=[f"cust-{i:06d}" for i in range(num_customers)],
        customer_city=customer_city,
        customer_segment=customer_segment,
        customer_age=customer_age,
        customer_spend=customer_spend,
        customer_spread=customer_spread,
        customer_rate=customer_rate,
        customer_cards=customer_cards,
        customer_devices=customer_devices,
        card_number=card_number,
        card_customer=np.array(card_customer),
        terminal_id=terminal_id,
        merchant_id=merchant_id,
        terminal_city=terminal_city,
        terminal_category=terminal_category,
        terminal_latitude=terminal_latitude,
        terminal_longitude=terminal_longitude,
        terminals_by_city_category={key: np.array(v) for key, v in by_pair.items()},
    )
