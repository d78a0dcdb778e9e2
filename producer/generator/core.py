"""The generator: genuine traffic + fraud scenarios + label feedback, in event-time order,
then data-quality anomalies and network delay, emitted in send order.

Genuine transactions are a Poisson process thinned by a diurnal and weekly profile; random
numbers are drawn in numpy blocks so the per-event loop stays cheap. Future events (scenario
steps, delayed logins, chargebacks) wait in a heap keyed by event time.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from producer.contract import ID_FIELD, encode_event
from producer.generator import events as ev
from producer.generator.anomalies import inject_anomaly
from producer.generator.network import NetworkDelay
from producer.generator.options import GeneratorOptions, normalise_mix
from producer.generator.population import CATEGORIES, CITIES, build_population
from producer.generator.scenarios import SCENARIOS
from producer.records import InjectedAnomaly, OutgoingRecord

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
BLOCK = 4096
# Relative activity per UTC hour (night is quiet, lunch and evening are busy) and per weekday.
HOURLY = np.array(
    [0.15, 0.1, 0.08, 0.07, 0.08, 0.15, 0.35, 0.6, 0.8, 0.9, 1.0, 1.1,
     1.3, 1.2, 1.0, 0.95, 1.0, 1.15, 1.35, 1.3, 1.1, 0.8, 0.5, 0.3]
)  # fmt: skip
WEEKLY = np.array([0.95, 0.95, 1.0, 1.0, 1.1, 1.25, 0.85])  # Monday .. Sunday
_ACTIVITY: list[list[float]] = np.outer(WEEKLY, HOURLY).tolist()


@dataclass(order=True, slots=True)
class Scheduled:
    """An event waiting for its event time; `seq` keeps ties deterministic."""

    time_ms: int
    seq: int
    event: dict[str, Any] = field(compare=False)
    is_fraud: bool = field(compare=False, default=False)


class TransactionGenerator:
    """Seeded, reproducible stream of labelled events; see `records()`."""

    def __init__(self, options: GeneratorOptions) -> None:
        self.options = options
        self.rng = np.random.Generator(np.random.PCG64(options.seed))
        self.population = build_population(
            self.rng,
            options.num_customers,
            options.num_terminals,
            options.transactions_per_customer_day,
        )
        self._mix = normalise_mix(options.scenario_mix)
        self._fmt = ev.EventTimeFormatter()
        self._heap: list[Scheduled] = []
        self._seq = 0
        self._id = 0
        self._id_prefix = f"{options.seed & 0xFFFFFFFF:x}"
        self._last_location: dict[int, int] = {}  # card -> last terminal
        rates = self.population.customer_rate
        self._customer_cdf = np.cumsum(rates) / rates.sum()
        self._rate_per_ms = float(rates.sum()) / DAY_MS
        # Python lists for the per-event loop: indexing numpy arrays element by element is slow.
        pop = self.population
        self._spend: list[float] = pop.customer_spend.tolist()
        self._spread: list[float] = pop.customer_spread.tolist()
        self._home: list[int] = pop.customer_city.tolist()
        self._owner: list[int] = pop.card_customer.tolist()
        self._t_category: list[int] = pop.terminal_category.tolist()
        self._t_city: list[int] = pop.terminal_city.tolist()
        self._t_lat: list[float] = pop.terminal_latitude.tolist()
        self._t_lon: list[float] = pop.terminal_longitude.tolist()
        self._terminals = {k: v.tolist() for k, v in pop.terminals_by_city_category.items()}
        self._reports: list[float] = []
        self._block_pos = BLOCK
        self._clock_ms = options.start_time_ms
        self._fraud_pending = 0
        self.anomalies: list[InjectedAnomaly] = []
        self.stats: Counter[str] = Counter()

    # ----------------------------------------------------------------- control
    def update(self, **changes: Any) -> None:
        """Change fraud_rate / anomaly_rate / scenario_mix (validated) between records."""
        self.options = self.options.with_changes(**changes)
        self._mix = normalise_mix(self.options.scenario_mix)

    # ----------------------------------------------------------------- builders
    def next_id(self) -> int:
        self._id += 1
        return self._id

    def _schedule(self, time_ms: int, event: dict[str, Any], is_fraud: bool) -> Scheduled:
        self._seq += 1
        return Scheduled(time_ms, self._seq, event, is_fraud)

    def typical_amount(self, customer: int, category: int) -> float:
        pop = self.population
        median = CATEGORIES[category].median_amount * float(pop.customer_spend[customer])
        return round(median * math.exp(float(pop.customer_spread[customer]) * 0.5), 2)

    def _tx(
        self,
        at: int,
        card: int,
        terminal: int,
        amount: float,
        is_fraud: bool,
        scenario: str | None,
        device_id: str | None = None,
    ) -> Scheduled:
        pop = self.population
        customer = self._owner[card]
        category = CATEGORIES[self._t_category[terminal]]
        city = CITIES[self._t_city[terminal]]
        if category.channel == "ecom" and device_id is None:
            devices = pop.customer_devices[customer]
            device_id = devices[self._id % len(devices)]
        event = ev.transaction(
            self._fmt(at),
            f"tx{self._id_prefix}-{self.next_id():09d}",
            pop.card_number[card],
            pop.customer_id[customer],
            amount,
            city.currency,
            pop.merchant_id[terminal],
            pop.terminal_id[terminal],
            category.mcc,
            city.country,
            self._t_lat[terminal],
            self._t_lon[terminal],
            category.channel,
            device_id if category.channel == "ecom" else None,
            is_fraud,
            scenario,
        )
        return self._schedule(at, event, is_fraud)

    def fraud_tx(
        self,
        at: int,
        card: int,
        terminal: int,
        amount: float,
        scenario: str,
        device_id: str | None = None,
    ) -> Scheduled:
        return self._tx(at, card, terminal, amount, True, scenario, device_id)

    def genuine_tx_at(self, at: int, card: int, terminal: int) -> Scheduled:
        customer = int(self.population.card_customer[card])
        category = int(self.population.terminal_category[terminal])
        return self._tx(at, card, terminal, self.typical_amount(customer, category), False, None)

    def auth_event(
        self,
        at: int,
        card: int,
        success: bool,
        device: str,
        ip_country: str,
        scenario: str | None,
    ) -> Scheduled:
        pop = self.population
        customer = int(pop.card_customer[card])
        method = "password" if scenario else ("otp", "password", "biometric")[self._id % 3]
        event = ev.auth(
            self._fmt(at),
            f"au{self._id_prefix}-{self.next_id():09d}",
            pop.card_number[card],
            pop.customer_id[customer],
            success,
            method,
            device,
            ip_country,
            scenario is not None,
            scenario,
        )
        return self._schedule(at, event, scenario is not None)

    # ----------------------------------------------------------------- genuine traffic
    def _refill(self) -> None:
        rng = self.rng
        self._gaps = rng.standard_exponential(BLOCK).tolist()
        self._who = np.searchsorted(self._customer_cdf, rng.random(BLOCK)).tolist()
        self._category = rng.choice(
            len(CATEGORIES), size=BLOCK, p=np.array([c.weight for c in CATEGORIES])
        ).tolist()
        self._z = rng.standard_normal(BLOCK).tolist()
        self._pick = rng.random((BLOCK, 4)).tolist()
        self._block_pos = 0

    def _next_genuine(self) -> Scheduled:
        """Advance the Poisson clock to the next accepted genuine transaction and build it."""
        # The rate is constant within an hour, so the gap is exponential at that hour's rate;
        # a gap that crosses into the next hour restarts there (exact: arrivals are memoryless).
        while True:
            if self._block_pos >= BLOCK:
                self._refill()
            i = self._block_pos
            self._block_pos += 1
            clock = self._clock_ms
            weekday = (clock // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday
            rate = self._rate_per_ms * _ACTIVITY[weekday][(clock // HOUR_MS) % 24]
            arrival = clock + int(self._gaps[i] / rate) + 1
            hour_end = clock - clock % HOUR_MS + HOUR_MS
            if arrival < hour_end:
                self._clock_ms = arrival
                break
            self._clock_ms = hour_end
        pop = self.population
        customer = self._who[i]
        category = self._category[i]
        pick = self._pick[i]
        cards = pop.customer_cards[customer]
        card = cards[int(pick[0] * len(cards))]
        city = self._home[customer]
        if pick[3] < 0.03:  # occasional genuine purchase in another home-market city
            city = int(pick[2] * 10) % 10
        terminals = self._terminals[(city, category)]
        terminal = terminals[int(pick[1] * len(terminals))]
        median = CATEGORIES[category].median_amount * self._spend[customer]
        amount = median * math.exp(self._spread[customer] * self._z[i])
        if CATEGORIES[category].channel == "atm":
            amount = max(20.0, 20.0 * round(amount / 20.0))
        amount = round(min(max(amount, 0.5), 20_000.0), 2)
        if CATEGORIES[category].channel == "ecom" and pick[2] < self.options.login_share:
            # A login (rarely after a failed attempt) shortly before the online purchase.
            devices = pop.customer_devices[customer]
            device = devices[int(pick[3] * 1000) % len(devices)]
            country = CITIES[city].country
            at = self._clock_ms
            first = None
            if pick[2] < self.options.login_share * 0.05:
                first = self.auth_event(at, card, False, device, country, None)
                at += 20_000
            login = self.auth_event(at, card, True, device, country, None)
            heapq.heappush(
                self._heap, self._tx(at + 45_000, card, terminal, amount, False, None, device)
            )
            if first is None:
                return login
            heapq.heappush(self._heap, login)
            return first
        return self._tx(self._clock_ms, card, terminal, amount, False, None)

    # ----------------------------------------------------------------- event-time stream
    def _maybe_start_fraud(self, card: int, now_ms: int) -> None:
        """Start a scenario when realised + pending fraud falls below the requested share."""
        target = self.options.fraud_rate * (self.stats["transactions"] + 1)
        if self.stats["fraud_transactions"] + self._fraud_pending >= target:
            return
        names = list(self._mix)
        name = names[int(self.rng.choice(len(names), p=np.array(list(self._mix.values()))))]
        for item in SCENARIOS[name](self, card, now_ms):
            if item.is_fraud and item.event["event_type"] == "transaction":
                self._fraud_pending += 1
            heapq.heappush(self._heap, item)
        self.stats[f"scenario_started.{name}"] += 1

    def _schedule_feedback(self, item: Scheduled) -> None:
        """A chargeback for fraud, and rarely a confirmed-genuine report, after the delay."""
        event = item.event
        is_fraud = item.is_fraud
        if not is_fraud and self._report_draw() >= self.options.genuine_report_rate:
            return
        delay = self.options.chargeback_delay_days * DAY_MS * float(self.rng.uniform(0.8, 1.2))
        at = item.time_ms + int(delay)
        report = ev.chargeback(
            self._fmt(at), f"cb{self._id_prefix}-{self.next_id():09d}", event, is_fraud
        )
        heapq.heappush(self._heap, self._schedule(at, report, is_fraud))

    def _report_draw(self) -> float:
        if not self._reports:
            self._reports = self.rng.random(BLOCK).tolist()
        return float(self._reports.pop())

    def _event_time_stream(self) -> Iterator[Scheduled]:
        pending_genuine = self._next_genuine()
        while True:
            if self._heap and self._heap[0].time_ms <= pending_genuine.time_ms:
                item = heapq.heappop(self._heap)
            else:
                item = pending_genuine
                pending_genuine = self._next_genuine()
            if item.event["event_type"] == "transaction":
                if item.is_fraud:
                    self._fraud_pending -= 1
                else:
                    self._maybe_start_fraud(self._card_of(item), item.time_ms)
                self._schedule_feedback(item)
            yield item

    def _card_of(self, item: Scheduled) -> int:
        return self._card_index[item.event["card_number"]]

    @property
    def _card_index(self) -> dict[str, int]:
        index: dict[str, int] | None = getattr(self, "_card_index_cache", None)
        if index is None:
            index = {pan: i for i, pan in enumerate(self.population.card_number)}
            self._card_index_cache = index
        return index

    # ----------------------------------------------------------------- send order
    def records(self) -> Iterator[OutgoingRecord]:
        """Encoded records in send order; stops after `num_transactions` transaction events."""
        limit = self.options.num_transactions
        network = NetworkDelay(self.options.network, self.rng)
        if limit == 0:
            return
        for item in self._event_time_stream():
            event = item.event
            event_type = event["event_type"]
            stats = self.stats
            if event_type != "transaction":
                stats[event_type] += 1
            else:
                stats["transactions"] += 1
                if item.is_fraud:
                    stats["fraud_transactions"] += 1
                    stats[f"fraud.{event['label']['fraud_scenario']}"] += 1
            key = event["card_number"]
            eid = event[ID_FIELD[event_type]]
            anomaly_rate = self.options.anomaly_rate
            kind: str | None = None
            payloads = [
                ev.encode_transaction(event) if event_type == "transaction" else encode_event(event)
            ]
            if (
                anomaly_rate > 0
                and event_type == "transaction"
                and not item.is_fraud
                and self.rng.random() < anomaly_rate
            ):
                injected = inject_anomaly(self.rng, event, payloads[0])
                self.anomalies.append(injected)
                stats[f"anomaly.{injected.kind}"] += 1
                kind = injected.kind
                payloads = [injected.data] if kind != "duplicate" else [payloads[0]] * 2
            for copy_index, data in enumerate(payloads):
                valid = kind is None or (kind == "duplicate" and copy_index == 0)
                record = OutgoingRecord(
                    partition_key=key,
                    data=data,
                    event_type=event_type if valid or kind == "duplicate" else None,
                    event_id=eid,
                    is_fraud=item.is_fraud,
                    anomaly=None if valid else kind,
                    send_time_ms=network.send_time(item.time_ms),
                )
                yield from network.push(record, item.time_ms)
            if limit is not None and stats["transactions"] >= limit:
                break
        yield from network.flush()
