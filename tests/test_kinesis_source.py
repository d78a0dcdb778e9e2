"""The Kinesis source alone: options, lineage, KPL, replay, and Spark queries against moto."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from botocore.exceptions import ClientError
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadMaxRows
from pyspark.sql.types import BinaryType, StringType, StructField, StructType

from config.aws import make_client
from config.exceptions import SourceOptionError
from config.settings import Settings
from processor.kinesis_source import parse_options, register
from processor.kinesis_source.client import ShardReader
from processor.kinesis_source.client import make_client as make_source_client
from processor.kinesis_source.deaggregation import user_records
from processor.kinesis_source.reader import KinesisStreamReader, ShardRange, group_ranges
from processor.kinesis_source.shards import ShardInfo, readable_shards
from processor.kinesis_source.spool import BatchSpool
from scripts.local_aws import free_port
from scripts.setup_aws import ensure_stream


def put(client: Any, stream: str, items: list[tuple[str, bytes]]) -> None:
    for start in range(0, len(items), 500):
        chunk = items[start : start + 500]
        response = client.put_records(
            StreamName=stream, Records=[{"PartitionKey": k, "Data": d} for k, d in chunk]
        )
        assert response["FailedRecordCount"] == 0


def items(n: int, keys: int = 20, tag: str = "a") -> list[tuple[str, bytes]]:
    return [(f"card-{i % keys}", f"{tag}-{i:06d}".encode()) for i in range(n)]


def options(settings: Settings, **extra: str) -> dict[str, str]:
    return {
        "streamName": settings.kinesis.stream_name,
        "endpointUrl": str(settings.aws.endpoint_url),
        "region": settings.aws.region,
        "awsAccessKeyId": "testing",
        "awsSecretKey": "testing",
        "startingPosition": "TRIM_HORIZON",
        **extra,
    }


# ---------------------------------------------------------------- options and planning
@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "option 'streamName' is required"),
        ({"streamName": "s", "startingPosition": "EARLIEST"}, "option 'startingPosition'"),
        ({"streamName": "s", "startingPosition": "AT_TIMESTAMP"}, "option 'startingTimestamp'"),
        ({"streamName": "s", "maxRecordsPerShard": "many"}, "option 'maxRecordsPerShard'"),
        ({"streamName": "s", "maxRecordsPerTrigger": "0"}, "option 'maxRecordsPerTrigger'"),
        ({"streamName": "s", "readMode": "twice"}, "option 'readMode'"),
        ({"streamName": "s", "minRecordsPerPartition": "0"}, "option 'minRecordsPerPartition'"),
        ({"streamName": "s", "prefetch": "yes"}, "option 'prefetch' must be true or false"),
        ({"streamName": "s", "firstBatchRecordsPerShard": "0"}, "'firstBatchRecordsPerShard'"),
        ({"streamName": "s", "awsAccessKeyId": "x"}, "'awsSecretKey'"),
        ({"streamName": "s", "startingSequenceNumbers": "[1]"}, "'startingSequenceNumbers'"),
        ({"streamName": "s", "startingSequenceNumbers": '{"a": 1}'}, "'startingSequenceNumbers'"),
        ({"streamName": "s", "recordParser": "processor.parse"}, "'recordParser' must be module:"),
        (
            {"streamName": "s", "recordParser": "processor.parse:none"},
            "'recordParser': cannot load",
        ),
        ({"streamName": "s", "recordParser": "processor.parse:contract_parser"}, "ParserArgument'"),
        ({"streamName": "s", "driverSpool": "/tmp/spool"}, "option 'driverSpool' needs a 'record"),
    ],
)
def test_bad_options_are_one_clear_error(given: dict[str, str], message: str) -> None:
    with pytest.raises(SourceOptionError, match=message):
        parse_options(given)


def _shard_range(shard: str, records: int | None) -> ShardRange:
    handed = None if records is None else [(b"x", "k", str(n), 0.0) for n in range(records)]
    return ShardRange(shard, None, {"type": "TRIM_HORIZON"}, "9", handed)


def test_small_handed_off_ranges_share_a_partition() -> None:
    """A task costs the same round trips whatever it carries: a 1,700-record batch over four
    shards is one partition, a 40,000-record one is four; a range to re-read keeps its own."""
    small = [_shard_range(f"s{i}", 425) for i in range(4)]
    assert [[r.shard_id for r in p.ranges] for p in group_ranges(small, 5_000)] == [
        ["s0", "s1", "s2", "s3"]
    ]
    large = [_shard_range(f"s{i}", 10_000) for i in range(4)]
    assert [len(p.ranges) for p in group_ranges(large, 5_000)] == [1, 1, 1, 1]
    uneven = [_shard_range("a", 9_000), _shard_range("b", 600), _shard_range("c", 500)]
    assert [[r.shard_id for r in p.ranges] for p in group_ranges(uneven, 5_000)] == [
        ["a"],
        ["b", "c"],
    ]
    mixed = [_shard_range("a", 10), _shard_range("b", None), _shard_range("c", 10)]
    assert [[r.shard_id for r in p.ranges] for p in group_ranges(mixed, 5_000)] == [
        ["a", "c"],
        ["b"],
    ]
    assert group_ranges([], 5_000) == []


def test_timestamps_parse_from_iso_or_epoch() -> None:
    iso = parse_options(
        {
            "streamName": "s",
            "startingPosition": "at_timestamp",
            "startingTimestamp": "2026-01-01T00:00:00Z",
        }
    )
    assert iso.starting_position == "AT_TIMESTAMP"
    assert iso.starting_timestamp_ms == 1_767_225_600_000
    epoch = parse_options({"streamname": "s", "startingTimestamp": "1767225600000"})
    assert epoch.starting_timestamp_ms == 1_767_225_600_000


def test_children_wait_until_their_parents_are_read_to_the_end() -> None:
    shards = [
        ShardInfo("shard-0", ()),
        ShardInfo("shard-1", ("shard-0",)),
        ShardInfo("shard-2", ("shard-0",)),
        ShardInfo("shard-3", ("shard-1", "shard-2")),
        ShardInfo("shard-9", ("trimmed-away",)),
    ]
    assert readable_shards(shards, {}) == ["shard-0", "shard-9"]
    assert readable_shards(shards, {"shard-0": {"after": "5", "closed": True}}) == [
        "shard-1",
        "shard-2",
        "shard-9",
    ]
    done = {"closed": True}
    offsets = {"shard-0": done, "shard-1": done, "shard-2": {"closed": False}}
    assert "shard-3" not in readable_shards(shards, offsets)
    offsets["shard-2"] = done
    assert "shard-3" in readable_shards(shards, offsets)


def test_kpl_aggregated_records_come_out_as_user_records() -> None:
    import aws_kinesis_agg

    # The package's generated protobuf module imports `config_pb2` as a top-level module.
    sys.path.insert(0, str(Path(aws_kinesis_agg.__file__).parent))
    try:
        from aws_kinesis_agg.aggregator import RecordAggregator
    finally:
        sys.path.pop(0)
    aggregator = RecordAggregator()
    for i in range(5):
        assert aggregator.add_user_record(f"card-{i % 2}", f"user-{i}".encode()) is None
    packed = aggregator.clear_and_get()
    assert packed is not None
    key, _hash_key, data = packed.get_contents()
    out = list(user_records(data, key))
    assert [(d, k, s) for d, k, s in out] == [
        (f"user-{i}".encode(), f"card-{i % 2}", i) for i in range(5)
    ]
    assert list(user_records(b"plain", "k")) == [(b"plain", "k", 0)]


# ---------------------------------------------------------------- reader against moto
def drain(reader: KinesisStreamReader, start: dict[str, Any], limit: Any) -> tuple[dict, list]:
    end = reader.latestOffset(start, limit)
    rows: list[dict[str, Any]] = []
    for partition in reader.partitions(start, end):
        for batch in reader.read(partition):
            rows.extend(pa.Table.from_batches([batch]).to_pylist())
    return end, rows


@pytest.mark.integration
def test_replayed_batch_reads_exactly_the_same_records(settings: Settings) -> None:
    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, 2)
    put(client, settings.kinesis.stream_name, items(300))
    reader = KinesisStreamReader(parse_options(options(settings, maxRecordsPerShard="70")))
    start = reader.initialOffset()
    end, first = drain(reader, start, ReadAllAvailable())
    assert len(first) == 140  # 70 per shard
    assert reader.partitions(end, end) == []

    # A fresh reader (a restarted driver: nothing handed off) re-reads the same range.
    replay = KinesisStreamReader(parse_options(options(settings, readMode="reread")))
    again = [
        row
        for partition in replay.partitions(start, end)
        for batch in replay.read(partition)
        for row in pa.Table.from_batches([batch]).to_pylist()
    ]
    assert again == first
    rest: list[dict[str, Any]] = []
    while True:  # maxRecordsPerShard caps every batch, so drain in several
        next_end, rows = drain(reader, end, ReadMaxRows(1000))
        if next_end == end:
            break
        assert 0 < len(rows) <= 140
        rest.extend(rows)
        end = next_end
    assert len(first) + len(rest) == 300
    assert {r["data"] for r in first}.isdisjoint({r["data"] for r in rest})


@pytest.mark.integration
def test_a_caught_up_probe_costs_one_read_per_shard(settings: Settings) -> None:
    """Steady state: the next probe reuses the iterator the last one left, and a short read
    that is not behind counts as the tip without a second, empty read."""
    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, 2)
    put(client, settings.kinesis.stream_name, items(100))
    reader = KinesisStreamReader(parse_options(options(settings)))
    calls: Counter[str] = Counter()
    reader._kinesis().meta.events.register(
        "before-call.kinesis", lambda model, **_: calls.update([model.name])
    )
    end, first = drain(reader, reader.initialOffset(), ReadAllAvailable())
    assert len(first) == 100
    assert all(shard["caughtUp"] for shard in end["shards"].values())
    put(client, settings.kinesis.stream_name, items(50, tag="b"))
    calls.clear()
    _, second = drain(reader, end, ReadAllAvailable())
    assert sorted(r["data"] for r in second) == sorted(d for _, d in items(50, tag="b"))
    assert calls == {"ListShards": 1, "GetRecords": 2}


@pytest.mark.integration
def test_the_shards_of_a_batch_are_probed_at_once(settings: Settings) -> None:
    """Each shard's probe mostly waits on its GetRecords calls, so a batch probes its shards
    side by side. The first read of each of four shards waits at a barrier that opens only
    when all four are in flight: probed one after another, the first would wait alone until
    the barrier gives up, and the batch would fail."""
    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, 4)
    put(client, settings.kinesis.stream_name, items(200))
    reader = KinesisStreamReader(parse_options(options(settings)))
    all_four = threading.Barrier(4, timeout=20)
    first_reads = iter(range(4))
    threads: set[str] = set()

    def wait_for_the_other_shards(model: Any, **_: Any) -> None:
        if model.name == "GetRecords" and next(first_reads, None) is not None:
            threads.add(threading.current_thread().name)
            all_four.wait()

    reader._kinesis().meta.events.register("before-call.kinesis", wait_for_the_other_shards)
    end, rows = drain(reader, reader.initialOffset(), ReadAllAvailable())
    assert sorted(r["data"] for r in rows) == sorted(d for _, d in items(200))
    assert len(end["shards"]) == 4 and all(s["caughtUp"] for s in end["shards"].values())
    assert len(threads) == 4


@pytest.mark.integration
def test_a_failed_probe_fails_the_batch_after_every_other_probe_ended(
    settings: Settings,
) -> None:
    """One shard's probe fails while the others are still reading: the batch fails with that
    error, and only after the others have ended, so none is left reading beside the next
    attempt's probe of the same shard."""
    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, 4)
    put(client, settings.kinesis.stream_name, items(40))
    reader = KinesisStreamReader(parse_options(options(settings)))
    lock, in_flight = threading.Lock(), [0]

    def first_shard_fails_others_are_slow(params: dict[str, Any], **_: Any) -> None:
        if params["ShardId"] == "shardId-000000000000":
            raise RuntimeError("shard 0 unreachable")
        with lock:
            in_flight[0] += 1
        time.sleep(0.3)
        with lock:
            in_flight[0] -= 1

    reader._kinesis().meta.events.register(
        "before-parameter-build.kinesis.GetShardIterator", first_shard_fails_others_are_slow
    )
    with pytest.raises(RuntimeError, match="shard 0 unreachable"):
        reader.latestOffset(reader.initialOffset(), ReadAllAvailable())
    assert in_flight[0] == 0


def batches(reader: KinesisStreamReader, count: int) -> list[tuple[dict, list]]:
    """`count` batches one after another, each starting at the end of the one before."""
    out, start = [], reader.initialOffset()
    for _ in range(count):
        end, rows = drain(reader, start, ReadAllAvailable())
        out.append((end, rows))
        start = end
    return out


def count_calls(reader: KinesisStreamReader) -> Counter[tuple[str, str]]:
    """(thread name, API call) of every call the reader's driver client makes from now on."""
    calls: Counter[tuple[str, str]] = Counter()
    reader._kinesis().meta.events.register(
        "before-call.kinesis",
        lambda model, **_: calls.update([(threading.current_thread().name, model.name)]),
    )
    return calls


@pytest.mark.integration
def test_a_backlogged_shard_is_read_while_the_batch_runs(settings: Settings) -> None:
    """The next batch of a backlogged shard is read in the background; the probe that follows
    takes it without a GetRecords call of its own, and the batches are the same as without."""
    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, 2)
    put(client, settings.kinesis.stream_name, items(300))
    plain = KinesisStreamReader(parse_options(options(settings, maxRecordsPerShard="70")))
    plain_batches = batches(plain, 4)  # 70 + 70 + the rest of each shard + nothing
    prefetching = KinesisStreamReader(
        parse_options(options(settings, maxRecordsPerShard="70", prefetch="true"))
    )
    calls = count_calls(prefetching)
    start = prefetching.initialOffset()
    end, rows = drain(prefetching, start, ReadAllAvailable())
    assert (end, rows) == plain_batches[0]
    assert sorted(prefetching._prefetches) == sorted(end["shards"])  # both shards backlogged
    for _, future in prefetching._prefetches.values():
        future.result()
    in_probe = Counter(call for (thread, call), n in calls.items() for _ in range(n)
                       if not thread.startswith("prefetch"))  # fmt: skip
    calls.clear()
    second = drain(prefetching, end, ReadAllAvailable())
    assert second == plain_batches[1]
    probe_reads = sum(n for (thread, call), n in calls.items()
                      if call == "GetRecords" and not thread.startswith("prefetch"))  # fmt: skip
    assert in_probe["GetRecords"] >= 2
    assert probe_reads == 0
    third = drain(prefetching, second[0], ReadAllAvailable())
    assert third == plain_batches[2]
    assert not any(shard["caughtUp"] is False for shard in third[0]["shards"].values())
    assert prefetching._prefetches == {}  # nothing left behind: no read ahead
    assert drain(prefetching, third[0], ReadAllAvailable()) == plain_batches[3]


def _per_shard(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(row["shardId"] for row in rows)


@pytest.mark.integration
def test_the_first_batch_is_small_while_the_next_is_read_ahead(settings: Settings) -> None:
    """A reader's first batch takes `firstBatchRecordsPerShard` of each shard; the next batch
    of each is read ahead with the full budget and taken by the next probe, which reads
    nothing itself. A restarted reader starts small again; without `prefetch` it does not."""
    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, 2)
    put(client, settings.kinesis.stream_name, items(300))
    small_first = {"maxRecordsPerShard": "70", "firstBatchRecordsPerShard": "20"}
    reader = KinesisStreamReader(parse_options(options(settings, **small_first)))
    calls = count_calls(reader)
    first_end, first = drain(reader, reader.initialOffset(), ReadAllAvailable())
    assert sorted(_per_shard(first).values()) == [20, 20]
    assert {args.budget for args, _ in reader._prefetches.values()} == {70}
    for _, future in reader._prefetches.values():
        future.result()
    calls.clear()
    second_end, second = drain(reader, first_end, ReadAllAvailable())
    assert sorted(_per_shard(second).values()) == [70, 70]
    assert not [call for (thread, call) in calls if call == "GetRecords"
                and not thread.startswith("prefetch")]  # fmt: skip
    rest: list[dict[str, Any]] = []
    end = second_end
    while True:
        end, rows = drain(reader, end, ReadAllAvailable())
        if not rows:
            break
        assert max(_per_shard(rows).values()) <= 70
        rest.extend(rows)
    assert sorted(r["data"] for r in first + second + rest) == sorted(d for _, d in items(300))

    # A restarted driver's reader (batches already committed up to `first_end`) starts small.
    restarted = KinesisStreamReader(parse_options(options(settings, **small_first)))
    _, again = drain(restarted, first_end, ReadAllAvailable())
    for shard in _per_shard(second):
        of_shard = [row for row in second if row["shardId"] == shard]
        assert [row for row in again if row["shardId"] == shard] == of_shard[:20]
    unfetched = KinesisStreamReader(
        parse_options(options(settings, prefetch="false", **small_first))
    )
    _, whole = drain(unfetched, unfetched.initialOffset(), ReadAllAvailable())
    assert sorted(_per_shard(whole).values()) == [70, 70]


class ThreadNamingParser:
    """A `recordParser` for tests: keeps each record's data and sequence number and names the
    thread that parsed it."""

    def schema(self) -> StructType:
        return StructType(
            [
                StructField("data", BinaryType()),
                StructField("sequenceNumber", StringType()),
                StructField("parsedOn", StringType()),
            ]
        )

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        where = pa.array([threading.current_thread().name] * batch.num_rows, pa.string())
        columns = [batch.column("data"), batch.column("sequenceNumber"), where]
        return pa.RecordBatch.from_arrays(columns, names=["data", "sequenceNumber", "parsedOn"])


def thread_naming_parser(argument: str | None) -> ThreadNamingParser:
    assert argument == "the argument"
    return ThreadNamingParser()


class FailingInBackgroundParser(ThreadNamingParser):
    """Fails on the reader's background thread only, as a parse could on a bad day."""

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if threading.current_thread().name.startswith("prefetch"):
            raise RuntimeError("out of memory")
        return super().__call__(batch)


def failing_in_background_parser(argument: str | None) -> FailingInBackgroundParser:
    return FailingInBackgroundParser()


def two_shards_of(settings: Settings, records: int) -> None:
    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, 2)
    put(client, settings.kinesis.stream_name, items(records))


def parsed_batches(settings: Settings, parser: str, **extra: str) -> list[list[dict[str, Any]]]:
    """The stream's first four batches, 70 records per shard and batch, through `parser`."""
    named = {"recordParser": f"{__name__}:{parser}", "recordParserArgument": "the argument"}
    reader = KinesisStreamReader(
        parse_options(options(settings, maxRecordsPerShard="70", **named, **extra))
    )
    return [rows for _, rows in batches(reader, 4)]


def plain_batches(settings: Settings) -> list[list[tuple[bytes, str]]]:
    """What `parsed_batches` must hold: the same batches from a reader without a parser."""
    plain = KinesisStreamReader(parse_options(options(settings, maxRecordsPerShard="70")))
    return [[(r["data"], r["sequenceNumber"]) for r in rows] for _, rows in batches(plain, 4)]


def _threads(batch: list[dict[str, Any]]) -> set[str]:
    return {row["parsedOn"].split("_")[0] for row in batch}


@pytest.mark.integration
def test_the_source_hands_its_records_off_parsed(settings: Settings) -> None:
    """With a `recordParser`, a backlogged shard's read ahead parses its records on its
    background thread and hands them off parsed; a probed range is parsed on that thread too,
    while the probe reads on. Every batch holds the same records as a reader without a parser."""
    two_shards_of(settings, 300)
    got = parsed_batches(settings, "thread_naming_parser")
    assert [[(r["data"], r["sequenceNumber"]) for r in b] for b in got] == plain_batches(settings)
    # The first batch was probed, the next two read ahead; the last is empty.
    assert [_threads(b) for b in got] == [{"prefetch"}, {"prefetch"}, {"prefetch"}, set()]


@pytest.mark.integration
def test_without_prefetch_or_when_the_background_parse_fails_the_task_parses(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    two_shards_of(settings, 300)
    expected = plain_batches(settings)
    unfetched = parsed_batches(settings, "thread_naming_parser", prefetch="false")
    assert [[(r["data"], r["sequenceNumber"]) for r in b] for b in unfetched] == expected
    assert [_threads(b) for b in unfetched] == [{"MainThread"}] * 3 + [set()]
    failing = parsed_batches(settings, "failing_in_background_parser")
    assert [[(r["data"], r["sequenceNumber"]) for r in b] for b in failing] == expected
    assert [_threads(b) for b in failing] == [{"MainThread"}] * 3 + [set()]
    assert "parse of shard" in caplog.text and "out of memory" in caplog.text


def _spooled_rows(spool: BatchSpool, end: dict[str, Any]) -> list[dict[str, Any]] | None:
    taken = spool.take(end)
    return None if taken is None else pa.Table.from_batches(taken).to_pylist()


@pytest.mark.integration
@pytest.mark.parametrize("prefetch", ["true", "false"])
def test_each_batch_is_spooled_with_the_records_its_tasks_read(
    settings: Settings, tmp_path: Path, prefetch: str
) -> None:
    """With `driverSpool`, the driver writes each batch's parsed records before it returns the
    batch's end, named by it: the records the batch's tasks would read. Spark's commit of a
    batch deletes its file and those before it."""
    two_shards_of(settings, 300)
    spool = BatchSpool(tmp_path / "spool")
    named = {
        "recordParser": f"{__name__}:thread_naming_parser",
        "recordParserArgument": "the argument",
    }
    reader = KinesisStreamReader(
        parse_options(
            options(
                settings,
                maxRecordsPerShard="70",
                driverSpool=str(spool.directory),
                prefetch=prefetch,
                **named,
            )
        )
    )
    start, ends = reader.initialOffset(), []
    for _ in range(3):
        end = reader.latestOffset(start, ReadAllAvailable())
        planned = reader.partitions(start, end)
        # Spark still plans a spooled batch: its ranges carry no records, and its tasks, if
        # ever run, read them from Kinesis.
        assert planned and all(r.handed_off is None for p in planned for r in p.ranges)
        rows = [
            r
            for p in planned
            for b in reader.read(p)
            for r in pa.Table.from_batches([b]).to_pylist()
        ]
        spooled = _spooled_rows(spool, end)
        assert spooled is not None and len(spooled) == len(rows) > 0
        assert sorted((r["data"], r["sequenceNumber"]) for r in spooled) == sorted(
            (r["data"], r["sequenceNumber"]) for r in rows
        )
        ends.append(end)
        start = end
    _, rest = drain(reader, start, ReadAllAvailable())
    assert rest == [] and len(list(spool.directory.iterdir())) == 3  # nothing read, no file
    reader.commit(ends[1])
    assert _spooled_rows(spool, ends[0]) is None and _spooled_rows(spool, ends[1]) is None
    assert _spooled_rows(spool, ends[2]) is not None


@pytest.mark.integration
def test_a_batch_whose_background_parse_failed_is_not_spooled(
    settings: Settings, tmp_path: Path
) -> None:
    two_shards_of(settings, 100)
    spool = BatchSpool(tmp_path / "spool")
    named = {"recordParser": f"{__name__}:failing_in_background_parser"}
    reader = KinesisStreamReader(
        parse_options(options(settings, driverSpool=str(spool.directory), **named))
    )
    end, rows = drain(reader, reader.initialOffset(), ReadAllAvailable())
    assert len(rows) == 100  # the tasks parse it
    assert _spooled_rows(spool, end) is None


@pytest.mark.integration
def test_a_read_ahead_for_another_start_or_a_failed_one_is_not_used(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, 1)
    put(client, settings.kinesis.stream_name, items(100, keys=1))
    reader = KinesisStreamReader(parse_options(options(settings, maxRecordsPerShard="40")))
    start = reader.initialOffset()
    first_end, first = drain(reader, start, ReadAllAvailable())
    assert reader._prefetches
    # Reads ahead from now on fail (GetRecords from the background thread).
    source = reader._kinesis()
    real_get_records = source.get_records

    def get_records(**kwargs: Any) -> Any:
        if threading.current_thread().name.startswith("prefetch"):
            raise RuntimeError("connection reset")
        return real_get_records(**kwargs)

    source.get_records = get_records
    # The same batch planned again (its start, not the end the read ahead began at): the
    # probe reads it itself, and starts another read ahead, which fails.
    assert drain(reader, start, ReadAllAvailable()) == (first_end, first)
    second_end, second = drain(reader, first_end, ReadAllAvailable())
    assert "prefetch of shard" in caplog.text and "connection reset" in caplog.text
    source.get_records = real_get_records
    _, third = drain(reader, second_end, ReadAllAvailable())
    assert [r["data"] for r in first + second + third] == [d for _, d in items(100, keys=1)]


@pytest.mark.integration
def test_an_expired_iterator_is_renewed_after_the_last_record(settings: Settings) -> None:
    """Kinesis expires an iterator after 5 minutes (moto does not): the reader asks for a new
    one after the last record it read, losing and repeating nothing."""
    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, 1)
    put(client, settings.kinesis.stream_name, items(30, keys=1))
    source = make_source_client(parse_options(options(settings)))
    shard = client.list_shards(StreamName=settings.kinesis.stream_name)["Shards"][0]["ShardId"]
    reader = ShardReader(
        source, parse_options(options(settings)), shard, None, {"type": "TRIM_HORIZON"}
    )
    read = [r["Data"] for r in reader.fetch(10)]
    expired = ClientError({"Error": {"Code": "ExpiredIteratorException"}}, "GetRecords")
    real_get_records = source.get_records
    answers = iter([expired])

    def get_records(**kwargs: Any) -> Any:
        failure = next(answers, None)
        if failure is not None:
            raise failure
        return real_get_records(**kwargs)

    source.get_records = get_records
    while batch := reader.fetch(10):
        read.extend(r["Data"] for r in batch)
    assert read == [d for _, d in items(30, keys=1)]


@pytest.mark.integration
def test_starting_sequence_numbers_resume_right_after_them(settings: Settings) -> None:
    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, 2)
    put(client, settings.kinesis.stream_name, items(100))
    first = KinesisStreamReader(parse_options(options(settings, maxRecordsPerShard="30")))
    _, done = drain(first, first.initialOffset(), ReadAllAvailable())
    last = {}
    for row in done:  # the last record processed in each shard
        last[row["shardId"]] = row["sequenceNumber"]
    resumed = KinesisStreamReader(
        parse_options(options(settings, startingSequenceNumbers=json.dumps(last)))
    )
    _, rest = drain(resumed, resumed.initialOffset(), ReadAllAvailable())
    assert len(done) == 60 and len(rest) == 40
    assert sorted(r["data"] for r in done + rest) == sorted(d for _, d in items(100))


@pytest.mark.integration
def test_aggregated_records_through_the_reader(settings: Settings) -> None:
    import aws_kinesis_agg

    sys.path.insert(0, str(Path(aws_kinesis_agg.__file__).parent))
    try:
        from aws_kinesis_agg.aggregator import RecordAggregator
    finally:
        sys.path.pop(0)
    client = make_client("kinesis", settings.aws)
    ensure_stream(client, settings.kinesis.stream_name, 1)
    aggregator = RecordAggregator()
    for i in range(50):
        aggregator.add_user_record("card-7", f"agg-{i}".encode())
    key, _, data = aggregator.clear_and_get().get_contents()
    put(client, settings.kinesis.stream_name, [(key, data), ("card-8", b"single")])
    reader = KinesisStreamReader(parse_options(options(settings)))
    _, rows = drain(reader, reader.initialOffset(), ReadAllAvailable())
    assert [r["data"] for r in rows] == [f"agg-{i}".encode() for i in range(50)] + [b"single"]
    assert [r["subSequenceNumber"] for r in rows[:3]] == [0, 1, 2]
    assert len({r["sequenceNumber"] for r in rows[:50]}) == 1


# ---------------------------------------------------------------- Spark queries
def run_available_now(spark: Any, opts: dict[str, str], checkpoint: Path) -> list[list[dict]]:
    """One availableNow run; returns the rows of each micro-batch."""
    register(spark)
    batches: list[list[dict]] = []

    def collect(frame: Any, batch_id: int) -> None:
        batches.append([row.asDict() for row in frame.collect()])

    reader = spark.readStream.format("kinesis")
    for key, value in opts.items():
        reader = reader.option(key, value)
    query = (
        reader.load()
        .writeStream.foreachBatch(collect)
        .trigger(availableNow=True)
        .option("checkpointLocation", str(checkpoint))
        .start()
    )
    query.awaitTermination()
    assert query.exception() is None
    return batches


@pytest.mark.slow
@pytest.mark.integration
def test_exactly_once_across_shards_with_trigger_limit_and_restart(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    client = make_client("kinesis", settings.aws)
    stream = settings.kinesis.stream_name
    ensure_stream(client, stream, 3)
    first = items(1_200, tag="a")
    put(client, stream, first)
    opts = options(settings, maxRecordsPerTrigger="500")
    batches = run_available_now(spark, opts, tmp_path / "ck")
    assert all(0 < len(b) <= 500 for b in batches) and len(batches) >= 3
    got = [r["data"] for b in batches for r in b]
    assert sorted(got) == sorted(d for _, d in first)
    assert {r["shardId"] for b in batches for r in b} == {
        f"shardId-00000000000{i}" for i in range(3)
    }

    second = items(400, tag="b")
    put(client, stream, second)
    resumed = run_available_now(spark, opts, tmp_path / "ck")  # same checkpoint
    assert sorted(r["data"] for b in resumed for r in b) == sorted(d for _, d in second)


@pytest.fixture
def resharding_settings(settings: Settings) -> Iterator[Settings]:
    """moto in this process, with PutRecords routed only to OPEN shards as AWS does.

    moto 5 keeps routing records to a parent after a split, and moves the parent's records into
    the children; AWS leaves old records in the parent and sends new ones to the children.
    """
    from moto.kinesis.models import Stream
    from moto.server import ThreadedMotoServer

    original = Stream.get_shard_for_key
    original_split = Stream.split_shard

    def split_keeping_parent_records(self: Any, shard_to_split: str, new_hash: str) -> None:
        before = set(self.shards)
        kept = self.shards[shard_to_split].records
        original_split(self, shard_to_split, new_hash)
        self.shards[shard_to_split].records = kept
        for shard_id in set(self.shards) - before:
            self.shards[shard_id].records.clear()

    def open_shards_only(self: Any, partition_key: str, explicit_hash_key: str) -> Any:
        closed = [s for s in self.shards.values() if not s.is_open]
        for shard in closed:
            shard.starting_hash, shard.saved_range = (
                2**128,
                (shard.starting_hash, shard.ending_hash),
            )
        try:
            return original(self, partition_key, explicit_hash_key)
        finally:
            for shard in closed:
                shard.starting_hash, shard.ending_hash = shard.saved_range

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    Stream.get_shard_for_key = open_shards_only  # type: ignore[method-assign]
    Stream.split_shard = split_keeping_parent_records  # type: ignore[method-assign]
    try:
        yield settings.with_overrides(aws={"endpoint_url": f"http://127.0.0.1:{port}"})
    finally:
        Stream.get_shard_for_key = original  # type: ignore[method-assign]
        Stream.split_shard = original_split  # type: ignore[method-assign]
        server.stop()


@pytest.mark.slow
@pytest.mark.integration
def test_reshard_mid_stream_loses_nothing_and_keeps_per_key_order(
    spark: Any, resharding_settings: Settings, tmp_path: Path
) -> None:
    settings = resharding_settings
    client = make_client("kinesis", settings.aws)
    stream = settings.kinesis.stream_name
    ensure_stream(client, stream, 2)
    before = items(600, keys=10, tag="before")
    put(client, stream, before)
    opts = options(settings, maxRecordsPerTrigger="250")
    first = run_available_now(spark, opts, tmp_path / "ck")

    shard = client.list_shards(StreamName=stream)["Shards"][0]
    low = int(shard["HashKeyRange"]["StartingHashKey"])
    high = int(shard["HashKeyRange"]["EndingHashKey"])
    client.split_shard(
        StreamName=stream,
        ShardToSplit=shard["ShardId"],
        NewStartingHashKey=str((low + high) // 2),
    )
    after = items(600, keys=10, tag="after")
    put(client, stream, after)
    second = run_available_now(spark, opts, tmp_path / "ck")

    batches = first + second
    received = [(i, r) for i, batch in enumerate(batches) for r in batch]
    assert sorted(r["data"] for _, r in received) == sorted(d for _, d in before + after)
    assert len({r["shardId"] for _, r in received}) >= 3  # children were read too
    by_key: dict[str, list[bytes]] = defaultdict(list)
    for _, row in sorted(received, key=lambda item: (item[0], int(item[1]["sequenceNumber"]))):
        by_key[row["partitionKey"]].append(row["data"])
    sent: dict[str, list[bytes]] = defaultdict(list)
    for key, data in before + after:
        sent[key].append(data)
    assert by_key == sent


@pytest.mark.integration
def test_get_records_parsed_without_botocore_equal_what_boto3_returns(settings: Settings) -> None:
    """The source's client takes GetRecords' records out of the JSON body itself (speed);
    they must carry what plain boto3 gives, and errors must still be botocore's."""
    plain = make_client("kinesis", settings.aws)
    ensure_stream(plain, settings.kinesis.stream_name, 1)
    sent = [("key-α", b"\x00binary\xff"), ("k2", json.dumps({"a": "é"}).encode())] + items(50)
    put(plain, settings.kinesis.stream_name, sent)
    opts = parse_options(options(settings))
    fast = ShardReader(make_source_client(opts), opts, "shardId-000000000000", None, {})
    got = fast.fetch(1000)
    iterator = plain.get_shard_iterator(
        StreamName=settings.kinesis.stream_name,
        ShardId="shardId-000000000000",
        ShardIteratorType="TRIM_HORIZON",
    )["ShardIterator"]
    response = plain.get_records(ShardIterator=iterator, Limit=1000)
    assert [(r["PartitionKey"], r["Data"]) for r in got] == sent
    assert [
        (r["PartitionKey"], r["Data"], r["SequenceNumber"], r["ApproximateArrivalTimestamp"])
        for r in got
    ] == [
        (
            r["PartitionKey"],
            r["Data"],
            r["SequenceNumber"],
            r["ApproximateArrivalTimestamp"].timestamp(),
        )
        for r in response["Records"]
    ]
    assert fast.millis_behind_latest == response["MillisBehindLatest"]
    assert fast.fetch(1000) == []  # the iterator botocore parsed from the rest of the body
    with pytest.raises(ClientError) as failure:
        make_source_client(opts).get_records(ShardIterator="not-an-iterator", Limit=10)
    assert failure.value.response["Error"]["Code"]
