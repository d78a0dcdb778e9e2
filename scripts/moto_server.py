"""moto's server with Kinesis made linear: what `scripts.local_aws` starts.

moto 5's Kinesis shard copies all of its keys into a list on every put
(`get_max_sequence_number`) and scans from its first record on every GetRecords, so a stream of
a few hundred thousand records takes hours to fill and read. Sequence numbers in a moto shard
are consecutive integers, so both lookups can be direct; anything unusual falls back to moto's
own code.

moto then answers GetRecords through its generic, model-driven serializer and runs a regex for
an XML request id over the whole body: 45 µs of CPU a record, on the same cores as the job it
feeds (docs/decisions/0040). The answer is written directly as JSON instead, the same document
field for field (tests/test_local_aws.py compares it with moto's own), and the regex is skipped
for a body without that tag. Behaviour is otherwise moto's.

With `--state-file PATH`, the Kinesis streams, DynamoDB tables and S3 buckets survive a restart:
they are pickled to PATH when the server stops (SIGTERM or Ctrl+C) and loaded from it at start.
moto keeps everything in memory, so without it a restarted emulator comes back empty, and a
test of the job across an emulator restart would test nothing.

    python -m scripts.moto_server -H 127.0.0.1 -p 4566 [--state-file data/aws/moto.state]
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import os
import pickle
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# The services the pipeline uses: module and name of each one's backends (account -> region).
PERSISTED_BACKENDS = {
    "kinesis": ("moto.kinesis.models", "kinesis_backends"),
    "dynamodb": ("moto.dynamodb.models", "dynamodb_backends"),
    "s3": ("moto.s3.models", "s3_backends"),
}


def _backends(service: str) -> Any:
    module, name = PERSISTED_BACKENDS[service]
    return getattr(importlib.import_module(module), name)


def save_state(path: Path) -> None:
    """Pickle the persisted services' backends to `path` (atomically: write, then rename)."""
    state = {service: dict(_backends(service)) for service in PERSISTED_BACKENDS}
    partial = path.with_name(path.name + ".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("wb") as out:
        pickle.dump(state, out, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(partial, path)


def load_state(path: Path) -> bool:
    """Restore what `save_state` wrote; False when there is no state file yet."""
    if not path.exists():
        return False
    with path.open("rb") as source:
        state = pickle.load(source)  # our own file, written by save_state
    for service, accounts in state.items():
        backends = _backends(service)
        for account, regions in accounts.items():
            backends[account] = regions
    return True


def patch_kinesis() -> None:
    from moto.kinesis.models import Shard

    original_get_records = Shard.get_records

    def get_max_sequence_number(self: Any) -> int:
        return next(reversed(self.records)) if self.records else 0

    def get_min_sequence_number(self: Any) -> int:
        return next(iter(self.records)) if self.records else 0

    def get_records(self: Any, last_sequence_id: str, limit: int | None) -> Any:
        records = self.records
        last = int(last_sequence_id)
        if not records:
            return [], last, 0
        first, newest = next(iter(records)), next(reversed(records))
        if newest - first + 1 != len(records) or last < first - 1:
            return original_get_records(self, last_sequence_id, limit)
        stop = newest if limit is None else min(newest, last + limit)
        results = [records[seq] for seq in range(last + 1, stop + 1)]
        if not results:
            return [], last, 0
        behind = records[newest].created_at - results[-1].created_at
        return results, stop, int(behind * 1000)

    Shard.get_max_sequence_number = get_max_sequence_number  # type: ignore[method-assign]
    Shard.get_min_sequence_number = get_min_sequence_number  # type: ignore[method-assign]
    Shard.get_records = get_records  # type: ignore[method-assign]


def patch_kinesis_get_records() -> None:
    """GetRecords answered as JSON written here; every service's answers skip the request-id
    regex when their body holds no `<RequestId>` (docs/decisions/0040)."""
    from moto.core.responses import BaseResponse
    from moto.core.serialize import TimestampSerializer
    from moto.kinesis.responses import KinesisResponse

    arrival_seconds = TimestampSerializer._timestamp_unixtimestamp  # moto's own conversion

    def record_json(record: Any) -> dict[str, Any]:
        # moto's field order (the GetRecords output shape's). `record.data` is the base64 text
        # the put carried; decoded and encoded again, it is the canonical form moto sends.
        return {
            "SequenceNumber": str(record.sequence_number),
            "ApproximateArrivalTimestamp": arrival_seconds(record.created_at_datetime),
            "Data": base64.b64encode(base64.b64decode(record.data)).decode("ascii"),
            "PartitionKey": record.partition_key,
        }

    def get_records(self: Any) -> tuple[str, dict[str, str]]:
        next_iterator, records, millis_behind = self.kinesis_backend.get_records(
            self._get_param("StreamARN"), self._get_param("ShardIterator"), self._get_param("Limit")
        )
        answer: dict[str, Any] = {"Records": [record_json(record) for record in records]}
        if next_iterator is not None:  # moto's serializer leaves out a null member
            answer["NextShardIterator"] = next_iterator
        answer["MillisBehindLatest"] = millis_behind
        return json.dumps(answer), {"Content-Type": "application/x-amz-json-1.1"}

    original_enrich = BaseResponse._enrich_response

    def enrich_response(headers: dict[str, str], body: Any) -> tuple[dict[str, str], Any]:
        # The request id goes into the headers either way; only an XML body holds the tag.
        if isinstance(body, str) and "<RequestId>" not in body:
            return original_enrich(headers, "")[0], body
        return original_enrich(headers, body)

    KinesisResponse.get_records = get_records  # type: ignore[method-assign,assignment]
    BaseResponse._enrich_response = staticmethod(enrich_response)  # type: ignore[method-assign]


def _split_state_file(argv: list[str]) -> tuple[Path | None, list[str]]:
    if "--state-file" not in argv:
        return None, argv
    at = argv.index("--state-file")
    return Path(argv[at + 1]), argv[:at] + argv[at + 2 :]


def main(argv: list[str] | None = None) -> None:
    patch_kinesis()
    patch_kinesis_get_records()
    from moto.server import main as moto_main

    state_file, moto_argv = _split_state_file(argv if argv is not None else sys.argv[1:])
    if state_file is not None and load_state(state_file):
        print(f"moto state loaded from {state_file}", file=sys.stderr, flush=True)
    try:
        moto_main(moto_argv)  # moto's SIGTERM/SIGINT handler exits with SystemExit
    finally:
        if state_file is not None:
            save_state(state_file)
            print(f"moto state saved to {state_file}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
