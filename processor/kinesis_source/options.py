"""Options of the `kinesis` data source, named like AWS's Scala connector; checked once."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from config.exceptions import SourceOptionError
from processor.kinesis_source.record_parser import load_parser
from producer.contract import to_epoch_ms

STARTING_POSITIONS: Final = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
READ_MODES: Final = ("handoff", "reread")
MAX_GET_RECORDS_LIMIT: Final = 10_000
# Handed-off records a Spark partition should carry before another is planned: every task pays
# ~70 ms of Python worker round trips whatever its size (docs/benchmarks.md).
MIN_RECORDS_PER_PARTITION: Final = 5_000
# A reader's first batch pays the start's one-off costs (Spark's read planner, a cold JVM: ~7 s
# on the 2-core machine) whatever its size; with a small one, each shard's next batch is read
# ahead while they are paid and the first results come sooner (ADR 0027).
FIRST_BATCH_RECORDS_PER_SHARD: Final = 2_500


@dataclass(frozen=True)
class SourceOptions:
    """Plain picklable values only: the reader ships to executors."""

    stream_name: str
    region: str
    endpoint_url: str | None
    access_key_id: str | None
    secret_key: str | None
    starting_position: str
    starting_timestamp_ms: int | None
    max_records_per_shard: int
    max_records_per_trigger: int | None
    read_mode: str
    max_retries: int
    retry_backoff_ms: int
    fetch_log: str | None
    min_records_per_partition: int = MIN_RECORDS_PER_PARTITION
    # Read a backlogged shard's next batch while this one runs (handoff mode only; ADR 0020).
    prefetch: bool = True
    # With `prefetch`, the cap of each shard's share of the reader's first batch (ADR 0027).
    first_batch_records_per_shard: int = FIRST_BATCH_RECORDS_PER_SHARD
    # Shard -> the last sequence number already processed: those shards start right after it
    # (a fresh checkpoint resuming where the lake ends); other shards start at the position.
    starting_sequence_numbers: tuple[tuple[str, str], ...] = ()
    # `module:function` building the parser of every record, and its argument (ADR 0023).
    record_parser: str | None = None
    record_parser_argument: str | None = None
    # A directory on the driver: each batch's parsed records are also written there for a
    # driver-side sink to take instead of collecting the batch (processor/kinesis_source/spool.py).
    driver_spool: str | None = None


def _get(options: Mapping[str, str], name: str) -> str | None:
    # Spark passes a case-insensitive dict; plain dicts (unit tests) are matched loosely too.
    if name in options:
        return options[name]
    lowered = {key.lower(): value for key, value in options.items()}
    return lowered.get(name.lower())


def _int(
    options: Mapping[str, str], name: str, default: int | None, low: int, high: int
) -> int | None:
    raw = _get(options, name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SourceOptionError(f"option '{name}' must be an integer, got {raw!r}") from exc
    if not low <= value <= high:
        raise SourceOptionError(f"option '{name}' must be between {low} and {high}, got {value}")
    return value


def _bool(options: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(options, name)
    if raw is None or raw == "":
        return default
    if raw.lower() not in ("true", "false"):
        raise SourceOptionError(f"option '{name}' must be true or false, got {raw!r}")
    return raw.lower() == "true"


def _timestamp_ms(name: str, raw: str) -> int:
    if raw.isdigit():
        return int(raw)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SourceOptionError(
            f"option '{name}' must be epoch milliseconds or ISO-8601, got {raw!r}"
        ) from exc
    if moment.tzinfo is None:
        raise SourceOptionError(f"option '{name}' needs a time-zone offset, got {raw!r}")
    return to_epoch_ms(moment)


def _sequence_numbers(raw: str | None) -> tuple[tuple[str, str], ...]:
    if not raw:
        return ()
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise SourceOptionError(
            "option 'startingSequenceNumbers' must be a JSON object {shardId: sequenceNumber}"
        ) from exc
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.isdigit() for k, v in value.items()
    ):
        raise SourceOptionError(
            "option 'startingSequenceNumbers' must map shard ids to decimal sequence numbers"
        )
    return tuple(sorted(value.items()))


def parse_options(options: Mapping[str, str]) -> SourceOptions:
    """Validate the options; a missing or invalid one raises SourceOptionError naming it."""
    stream = _get(options, "streamName")
    if not stream:
        raise SourceOptionError("option 'streamName' is required")
    position = (_get(options, "startingPosition") or "LATEST").upper()
    if position not in STARTING_POSITIONS:
        raise SourceOptionError(
            f"option 'startingPosition' must be one of {STARTING_POSITIONS}, got {position!r}"
        )
    raw_ts = _get(options, "startingTimestamp")
    if position == "AT_TIMESTAMP" and not raw_ts:
        raise SourceOptionError("option 'startingTimestamp' is required with AT_TIMESTAMP")
    timestamp = _timestamp_ms("startingTimestamp", raw_ts) if raw_ts else None
    mode = (_get(options, "readMode") or "handoff").lower()
    if mode not in READ_MODES:
        raise SourceOptionError(f"option 'readMode' must be one of {READ_MODES}, got {mode!r}")
    key_id, secret = _get(options, "awsAccessKeyId"), _get(options, "awsSecretKey")
    if bool(key_id) != bool(secret):
        raise SourceOptionError("options 'awsAccessKeyId' and 'awsSecretKey' go together")
    per_shard = _int(options, "maxRecordsPerShard", MAX_GET_RECORDS_LIMIT, 1, 1_000_000)
    assert per_shard is not None
    parser, parser_argument = _get(options, "recordParser"), _get(options, "recordParserArgument")
    if parser:
        load_parser(parser, parser_argument)  # a parser that cannot be built fails here
    spool = _get(options, "driverSpool")
    if spool and (not parser or mode != "handoff"):
        raise SourceOptionError(
            "option 'driverSpool' needs a 'recordParser' and readMode 'handoff'"
        )
    return SourceOptions(
        stream_name=stream,
        region=_get(options, "region") or os.environ.get("AWS_REGION", "us-east-1"),
        endpoint_url=_get(options, "endpointUrl") or None,
        access_key_id=key_id or None,
        secret_key=secret or None,
        starting_position=position,
        starting_timestamp_ms=timestamp,
        max_records_per_shard=per_shard,
        max_records_per_trigger=_int(options, "maxRecordsPerTrigger", None, 1, 10**12),
        read_mode=mode,
        max_retries=_int(options, "maxRetries", 8, 0, 100) or 0,
        retry_backoff_ms=_int(options, "retryBackoffMs", 100, 1, 60_000) or 100,
        fetch_log=_get(options, "fetchLogPath") or None,
        min_records_per_partition=_int(
            options, "minRecordsPerPartition", MIN_RECORDS_PER_PARTITION, 1, 10**9
        )
        or MIN_RECORDS_PER_PARTITION,
        prefetch=_bool(options, "prefetch", True),
        first_batch_records_per_shard=_int(
            options, "firstBatchRecordsPerShard", FIRST_BATCH_RECORDS_PER_SHARD, 1, 1_000_000
        )
        or FIRST_BATCH_RECORDS_PER_SHARD,
        starting_sequence_numbers=_sequence_numbers(_get(options, "startingSequenceNumbers")),
        record_parser=parser or None,
        record_parser_argument=parser_argument,
        driver_spool=spool or None,
    )
