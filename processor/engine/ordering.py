"""When a terminal's events may be applied: once no shard can still deliver an earlier one.

A terminal sees the cards of every shard, and shards are read at different speeds: in a backlog
(a replay, a restart after an outage) one shard can be hours ahead of another in event time.
A transaction's terminal features count the terminal's earlier events, so computing them as soon
as the transaction arrives would make them depend on which shard happened to be read first.

The engine therefore applies a terminal's events (transactions, chargebacks) in event-key order
and only those before the *release mark*: the smallest mark (largest event time delivered) of
the shards that still have a backlog. Kinesis keeps a shard's records in the order they were
written and the producer writes each shard in event-time order, so a backlogged shard can only
deliver events after its mark. A shard read to its tip holds nothing back: what it delivers next
is written after this batch was read, later than what the other shards delivered. The rest wait
in the engine's state (exactly once, like the rest of it) for a later batch.

So in a backlog terminal features equal the training module's over the same events, whatever
the shards' relative speed; in a live stream (every shard read to its tip) nothing waits. An
event that arrives after later events of its terminal were applied is counted for the events
after it, not before (late ones, and ones written to Kinesis after a later event was read).

Which shards have a backlog is in the source's offset for the batch (`caughtUp` per shard,
processor/kinesis_source/reader.py), read back from Spark's offset log, so a replayed batch
releases exactly what its first attempt did.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from botocore.exceptions import ClientError

from processor.checkpoint_files import CheckpointFiles
from processor.engine.watermark import ShardMark

OFFSETS_FOLDER = "offsets"


def backlogged_shards(source_offset: Mapping[str, Any] | None) -> frozenset[str]:
    """Shards the batch left records on: open, and not read to their tip.

    Offsets written before the flag existed, and unknown offsets, count as caught up.
    """
    if not source_offset:
        return frozenset()
    return frozenset(
        shard
        for shard, state in source_offset.get("shards", {}).items()
        if not state.get("closed") and state.get("caughtUp") is False
    )


def batch_source_offset(files: CheckpointFiles, batch_id: int) -> dict[str, Any] | None:
    """The Kinesis source's end offset of `batch_id`, from Spark's offset log (its write-ahead
    log: written before the batch runs, the same on a replay).

    The file holds a version line, the batch's metadata, then one line per source.
    """
    name = f"{OFFSETS_FOLDER}/{batch_id}"
    try:
        lines = files.get(name).decode().splitlines()
    except FileNotFoundError:  # not a Spark query's checkpoint (tests, benchmarks)
        return None
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchKey":
            raise
        return None
    if len(lines) < 3:
        return None
    offset: dict[str, Any] = json.loads(lines[2])
    return offset


def release_mark(
    marks: Mapping[str, ShardMark], backlogged: Collection[str], watermark: int | None
) -> int | None:
    """Terminal events strictly before this event time may be applied (None: all of them).

    A backlogged shard that has delivered nothing yet holds everything back, except what the
    watermark has passed: nothing waits longer than lateness would make it wait.
    """
    if not backlogged:
        return None
    floor = _NOTHING if watermark is None else watermark + 1
    if any(shard not in marks for shard in backlogged):
        return floor
    return max(min(marks[shard].max_event_ms for shard in backlogged), floor)


_NOTHING = -(2**62)  # a release mark before every event
