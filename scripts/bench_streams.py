"""The latency runs' stream, shared by the benches that replay it.

`scripts.bench_scoring`'s producer sends it at a fixed rate, each event stamped with its send
time; `scripts.bench_engine --rate` replays it through the engine alone with the same stamps.
Stamped that way, a whole run falls within an hour of event time: every card and terminal is
as dense in its 10-minute and 1-hour windows as the run is long (ADR 0030).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from producer.contract import encode_event, format_epoch_ms
from producer.generator import GeneratorOptions, TransactionGenerator
from producer.records import OutgoingRecord


def latency_records() -> Iterator[OutgoingRecord]:
    """The generated stream the latency runs send, chargebacks left out (their labels would
    arrive within the run, not weeks later)."""
    options = GeneratorOptions(seed=8, num_transactions=None, fraud_rate=0.05)
    return (r for r in TransactionGenerator(options).records() if r.event_type != "chargeback")


def restamped(record: OutgoingRecord, now_ms: int) -> OutgoingRecord:
    """`record` with its event time and its send time set to `now_ms`.

    The send time matters to the sender: `KinesisWriter` ends a PutRecords call where it would
    pass a waiting record by more than `MAX_REORDER_MS` of send time. Left at the generator's
    clock (hours of event time a second), that cut calls to ~18 records, and the bench's
    producer could not offer 2,000 events/s even alone against the emulator.
    """
    event = json.loads(record.data)
    event["event_time"] = format_epoch_ms(now_ms)
    record.data = encode_event(event)
    record.send_time_ms = now_ms
    return record
