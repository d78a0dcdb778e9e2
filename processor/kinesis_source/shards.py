"""Shard discovery and lineage: a child shard is read only after its parents are exhausted.

After a split or merge, a card's older records sit in the parent and newer ones in a child;
reading the parent to its end first keeps each card's order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from processor.kinesis_source.client import call
from processor.kinesis_source.options import SourceOptions


@dataclass(frozen=True)
class ShardInfo:
    shard_id: str
    parents: tuple[str, ...]
    closed: bool = False  # ListShards gave it an EndingSequenceNumber: no new records come


def list_shards(client: Any, options: SourceOptions) -> list[ShardInfo]:
    """Every shard the stream still retains (open and closed), in id order."""
    shards: list[ShardInfo] = []
    kwargs: dict[str, Any] = {"StreamName": options.stream_name}
    while True:
        response = call(options, client.list_shards, **kwargs)
        for shard in response["Shards"]:
            parents = tuple(
                p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p
            )
            closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
            shards.append(ShardInfo(shard["ShardId"], parents, closed))
        token = response.get("NextToken")
        if not token:
            break
        kwargs = {"NextToken": token}
    return sorted(shards, key=lambda s: s.shard_id)


def readable_shards(shards: list[ShardInfo], offsets: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Shards that may be read now: not exhausted, and every retained parent exhausted."""
    known = {s.shard_id for s in shards}
    ready = []
    for shard in shards:
        state = offsets.get(shard.shard_id)
        if state is not None and state.get("closed"):
            continue
        parents_done = all(
            parent not in known or bool(offsets.get(parent, {}).get("closed"))
            for parent in shard.parents
        )
        if parents_done:
            ready.append(shard.shard_id)
    return ready
