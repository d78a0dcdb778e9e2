"""moto's server with Kinesis made linear: what `scripts.local_aws` starts.

moto 5's Kinesis shard copies all of its keys into a list on every put
(`get_max_sequence_number`) and scans from its first record on every GetRecords, so a stream of
a few hundred thousand records takes hours to fill and read. Sequence numbers in a moto shard
are consecutive integers, so both lookups can be direct; anything unusual falls back to moto's
own code. Behaviour is otherwise moto's.

    python -m scripts.moto_server -H 127.0.0.1 -p 4566
"""

from __future__ import annotations

import sys
from typing import Any


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


def main(argv: list[str] | None = None) -> None:
    patch_kinesis()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
