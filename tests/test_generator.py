"""The synthetic generator: reproducible, valid, labelled, with scenarios, anomalies, delays."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from config.exceptions import ConfigError
from producer.contract import encode_event, luhn_valid, parse_event_time, parse_payload
from producer.generator import GeneratorOptions, TransactionGenerator
from producer.records import OutgoingRecord


def generate(**options: object) -> tuple[TransactionGenerator, list[OutgoingRecord]]:
    gen = TransactionGenerator(GeneratorOptions(**options))  # type: ignore[arg-type]
    return gen, list(gen.records())


@pytest.fixture(scope="module")
def fraudy() -> tuple[TransactionGenerator, list[OutgoingRecord]]:
    return generate(seed=3, num_transactions=20_000, fraud_rate=0.03, chargeback_delay_days=0.2)


def events_of(records: list[OutgoingRecord]) -> list[dict]:
    return [json.loads(r.data) for r in records if r.anomaly is None]


def test_same_seed_and_options_give_identical_bytes() -> None:
    _, first = generate(seed=11, num_transactions=2_000, anomaly_rate=0.05, network="poor")
    _, second = generate(seed=11, num_transactions=2_000, anomaly_rate=0.05, network="poor")
    _, other = generate(seed=12, num_transactions=2_000, anomaly_rate=0.05, network="poor")
    assert [r.data for r in first] == [r.data for r in second]
    assert [r.data for r in first] != [r.data for r in other]


def test_every_clean_event_is_valid_and_encoded_canonically(fraudy) -> None:
    _, records = fraudy
    for record in records:
        event, problem = parse_payload(record.data)
        assert problem is None, (problem, record.data)
        assert event is not None and encode_event(event) == record.data
        assert record.partition_key == event["card_number"]
        assert luhn_valid(event["card_number"])


def test_transaction_count_and_event_types(fraudy) -> None:
    gen, records = fraudy
    events = events_of(records)
    kinds = {e["event_type"] for e in events}
    assert kinds == {"transaction", "auth", "chargeback"}
    assert sum(e["event_type"] == "transaction" for e in events) == 20_000
    assert gen.stats["transactions"] == 20_000


def test_fraud_share_tracks_the_requested_rate(fraudy) -> None:
    _, records = fraudy
    txs = [e for e in events_of(records) if e["event_type"] == "transaction"]
    share = sum(e["label"]["is_fraud"] for e in txs) / len(txs)
    assert share == pytest.approx(0.03, abs=0.005)
    scenarios = {e["label"]["fraud_scenario"] for e in txs if e["label"]["is_fraud"]}
    assert scenarios == {
        "card_testing",
        "atm_cashout_abroad",
        "compromised_terminal",
        "account_takeover",
        "amount_anomaly",
        "structuring",
    }


def test_card_testing_signature(fraudy) -> None:
    _, records = fraudy
    by_card: dict[str, list[dict]] = defaultdict(list)
    for e in events_of(records):
        if e["event_type"] == "transaction" and e["label"]["fraud_scenario"] == "card_testing":
            by_card[e["card_number"]].append(e)
    found = False
    for txs in by_card.values():
        # A card may be tested more than once: split into runs that end with the large purchase.
        runs: list[list[dict]] = [[]]
        for tx in txs:
            runs[-1].append(tx)
            if tx["amount"] >= 400:
                runs.append([])
        for run in runs:
            small = [t for t in run[:-1] if t["amount"] < 5]
            if len(small) >= 3 and run[-1]["amount"] >= 400 and len(small) == len(run) - 1:
                times = [parse_event_time(t["event_time"]) for t in small]
                gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
                assert all(30 <= g <= 120 for g in gaps)
                found = True
    assert found


def test_two_scenarios_hide_from_an_amount_only_rule(fraudy) -> None:
    """Most card-testing and compromised-terminal fraud sits below the genuine median amount
    times a few, so a threshold on amount alone cannot catch it without flagging genuine."""
    _, records = fraudy
    txs = [e for e in events_of(records) if e["event_type"] == "transaction"]
    genuine = sorted(e["amount"] for e in txs if not e["label"]["is_fraud"])
    p90 = genuine[int(0.9 * len(genuine))]
    for scenario in ("card_testing", "compromised_terminal"):
        amounts = [e["amount"] for e in txs if e["label"]["fraud_scenario"] == scenario]
        assert sum(a <= p90 for a in amounts) / len(amounts) > 0.6, scenario


def test_account_takeover_has_failed_logins_then_new_device_purchase(fraudy) -> None:
    _, records = fraudy
    events = events_of(records)
    failed = [
        e
        for e in events
        if e["event_type"] == "auth" and e["label"]["fraud_scenario"] == "account_takeover"
    ]
    assert any(not e["success"] for e in failed)
    devices = {e["device_id"] for e in failed}
    takeover_tx = [
        e
        for e in events
        if e["event_type"] == "transaction" and e["label"]["fraud_scenario"] == "account_takeover"
    ]
    assert takeover_tx and all(t["device_id"] in devices for t in takeover_tx)


def test_chargebacks_follow_fraud_after_the_delay(fraudy) -> None:
    _, records = fraudy
    events = events_of(records)
    tx_time = {
        e["transaction_id"]: parse_event_time(e["event_time"])
        for e in events
        if e["event_type"] == "transaction"
    }
    chargebacks = [e for e in events if e["event_type"] == "chargeback"]
    assert any(e["confirmed_fraud"] for e in chargebacks)
    for cb in chargebacks:
        delay = parse_event_time(cb["event_time"]) - tx_time[cb["transaction_id"]]
        assert delay.total_seconds() >= 0.8 * 0.2 * 86_400


def test_excellent_network_keeps_event_time_order_and_terrible_does_not() -> None:
    _, calm = generate(seed=5, num_transactions=3_000, network="excellent")
    _, rough = generate(seed=5, num_transactions=3_000, network="terrible")

    def inversions(records: list[OutgoingRecord]) -> int:
        times = [json.loads(r.data)["event_time"] for r in records]
        return sum(a > b for a, b in zip(times, times[1:], strict=False))

    assert inversions(calm) == 0
    assert inversions(rough) > 0
    sends = [r.send_time_ms for r in rough]
    assert sends == sorted(sends)  # emitted in delivery order


def test_anomalies_are_recorded_with_the_reason_the_contract_gives() -> None:
    gen, records = generate(seed=9, num_transactions=5_000, anomaly_rate=0.05)
    assert len({a.kind for a in gen.anomalies}) == 7
    bad = [r for r in records if r.anomaly is not None]
    assert len(bad) == len(gen.anomalies)
    for anomaly in gen.anomalies:
        if anomaly.kind == "duplicate":
            copies = [r for r in records if r.data == anomaly.data]
            assert len(copies) == 2
            continue
        _, problem = parse_payload(anomaly.data, now=parse_event_time("2026-06-01T00:00:00Z"))
        assert problem is not None and problem.reason == anomaly.expected_reason, anomaly.kind


def test_update_changes_rates_between_records() -> None:
    gen = TransactionGenerator(GeneratorOptions(seed=1, num_transactions=None, fraud_rate=0.0))
    stream = gen.records()
    for _ in range(2_000):
        next(stream)
    assert gen.stats["fraud_transactions"] == 0
    gen.update(fraud_rate=0.2)
    for _ in range(3_000):
        next(stream)
    assert gen.stats["fraud_transactions"] > 0
    with pytest.raises(ConfigError, match="fraud_rate"):
        gen.update(fraud_rate=3.0)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"fraud_rate": -0.1}, "fraud_rate"),
        ({"network": "wifi"}, "network"),
        ({"scenario_mix": {"phishing": 1.0}}, "scenario_mix"),
        ({"anomaly_rate": 2}, "anomaly_rate"),
        ({"num_transactions": -5}, "num_transactions"),
    ],
)
def test_bad_options_name_the_option(options: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        GeneratorOptions(**options)


def test_scenario_mix_selects_scenarios() -> None:
    _, records = generate(
        seed=2, num_transactions=12_000, fraud_rate=0.05, scenario_mix={"structuring": 1.0}
    )
    scenarios = {e["label"]["fraud_scenario"] for e in events_of(records) if e["label"]["is_fraud"]}
    assert scenarios == {"structuring"}
