"""What the generator hands to a sink: encoded payloads with their partition key and provenance.

The generator produces `OutgoingRecord`s in *send* order (after network delay and reordering);
sinks (Kinesis, stdout, JSONL file) only move bytes. `is_fraud` and `anomaly` are bookkeeping
for statistics and tests; they are never sent as separate fields (the label travels inside the
payload's `label` object, see producer/contract.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)  # not frozen: frozen dataclasses cost ~1 us more to build per record
class OutgoingRecord:
    """One record to send: the Kinesis partition key (the card number) and the payload bytes."""

    partition_key: str
    data: bytes
    event_type: str | None  # None when the payload is not a parseable event (an anomaly)
    event_id: str | None
    is_fraud: bool
    anomaly: str | None  # the injected data-quality anomaly kind, None for a clean event
    send_time_ms: int  # when the simulated network delivers it (event time + delay)


@dataclass(slots=True, frozen=True)
class InjectedAnomaly:
    """One injected data-quality anomaly and the dead-letter reason the processor must give it.

    `expected_reason` is a reason code of producer.contract, or "duplicate" for a re-sent event
    that the processor drops by id rather than routing to dead letters.
    """

    kind: str
    expected_reason: str
    event_id: str | None
    field: str | None
    data: bytes
