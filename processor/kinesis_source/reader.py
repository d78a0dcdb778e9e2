"""The streaming reader: per-shard offsets, admission control, replayable batches.

Offsets are plain dicts; an offset always means "the next record to read":
`{"position": {"type": "TRIM_HORIZON"} | {"type": "AT_TIMESTAMP", "timestampMs": n},
  "shards": {shardId: {"after": sequenceNumber | None, "closed": bool}}}`.
`after` is the last Kinesis record already delivered (None: start at `position`); `closed`
means the shard is closed and was read to its end, so its children may start; `caughtUp` says
whether the batch read the shard to its tip (False: records were left for later batches, the
shard has a backlog). The engine holds terminal features back for backlogged shards
(processor/engine/ordering.py); being part of the offset, the flag is the same on a replay.

Design (docs/decisions/0003-kinesis-source-offsets.md): the driver probes each shard to fix the
batch's end sequence numbers (a batch is then fully determined by its offsets, so a replay reads
the same records; the shards' probes run at once, ADR 0042), and in `handoff` mode passes the
records it read to the executors inside the partitions, so steady-state batches read Kinesis
once. A partition planned after a restart has no records attached and its executor re-reads
exactly `(after, end]`.

While a batch runs, the driver already reads the next one of every shard that still has a
backlog (`prefetch`, ADR 0020): the next `latestOffset` takes that read when it starts exactly
where the read did, with the same budget, and reads itself otherwise. Offsets are decided as
before, so a batch holds the same records with or without it. A reader's first batch takes at
most `firstBatchRecordsPerShard` of each shard, so that the next one is read ahead while the
first pays the start's one-off costs (ADR 0027).

With a `recordParser` (ADR 0023) the source yields parsed rows: a read ahead parses its records
on that background thread and hands them off parsed; so does a probe, on the same thread while
it reads the next shard (ADR 0025). A range planned after a restart is parsed by its task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyarrow as pa
from pyspark.sql.datasource import DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import (
    ReadAllAvailable,
    ReadLimit,
    ReadMaxRows,
    SupportsTriggerAvailableNow,
)

from processor.kinesis_source.client import ShardReader, log_fetched, make_client
from processor.kinesis_source.deaggregation import user_records
from processor.kinesis_source.options import MAX_GET_RECORDS_LIMIT, SourceOptions
from processor.kinesis_source.record_parser import RecordParser, load_parser
from processor.kinesis_source.shards import list_shards, readable_shards
from processor.kinesis_source.spool import BatchSpool

logger = logging.getLogger(__name__)

ARROW_SCHEMA = pa.schema(
    [
        ("data", pa.binary()),
        ("streamName", pa.string()),
        ("shardId", pa.string()),
        ("partitionKey", pa.string()),
        ("sequenceNumber", pa.string()),
        ("subSequenceNumber", pa.int64()),
        ("approximateArrivalTimestamp", pa.timestamp("us", tz="UTC")),
    ]
)
Record = tuple[bytes, str, str, float]  # data, partition key, sequence number, arrival (epoch s)
# Consecutive empty GetRecords answers after which a shard that is not behind counts as drained.
_EMPTY_CALLS_WHEN_CAUGHT_UP = 1
_EMPTY_CALLS_MAX = 5
# Shards probed at once by the driver (each probe mostly waits on GetRecords; ADR 0042).
PROBE_THREADS = 8


class ParsedRecords(NamedTuple):
    """A range's records already through the `recordParser` (ADR 0023)."""

    size: int  # Kinesis records parsed (before KPL de-aggregation)
    batches: tuple[pa.RecordBatch, ...]


# A range's records as the driver hands them off: raw, or parsed instead (read ahead), or raw
# with their parse still running in the background (probed).
HandOff = tuple[list[Record] | None, ParsedRecords | Future[ParsedRecords] | None]


@dataclass
class ShardRange(InputPartition):
    """One shard's share of a batch: records after `after` up to and including `end`."""

    shard_id: str
    after: str | None
    position: dict[str, Any]
    end: str
    records: list[Record] | None  # handed off by the driver, or None
    parsed: ParsedRecords | None = None  # handed off already parsed (then `records` is None)

    @property
    def handed_off(self) -> int | None:
        """Records the driver passes with the range; None: the executor reads them itself."""
        if self.parsed is not None:
            return self.parsed.size
        return None if self.records is None else len(self.records)


@dataclass
class ShardRanges(InputPartition):
    """One Spark partition: the ranges of one or more shards, read one after the other."""

    ranges: list[ShardRange]


def group_ranges(ranges: list[ShardRange], min_records: int) -> list[ShardRanges]:
    """Handed-off ranges share partitions, about `min_records` records or more each (a task
    costs the same fixed round trips whatever it carries); a range to re-read from Kinesis
    (after a restart: its size is unknown) gets a partition of its own."""
    handed = [(r.handed_off, r) for r in ranges if r.handed_off is not None]
    reread = [ShardRanges([r]) for r in ranges if r.handed_off is None]
    total = sum(size for size, _ in handed)
    count = max(1, min(len(handed), total // min_records))
    bins: list[list[ShardRange]] = [[] for _ in range(count)]
    sizes = [0] * count
    for size, shard_range in sorted(handed, key=lambda pair: -pair[0]):
        lightest = sizes.index(min(sizes))  # the largest ranges first, each to the lightest bin
        bins[lightest].append(shard_range)
        sizes[lightest] += size
    grouped = [ShardRanges(sorted(b, key=lambda r: r.shard_id)) for b in bins if b]
    return grouped + reread


class ProbeArgs(NamedTuple):
    """What one shard's probe reads: up to `budget` records after `after`."""

    shard_id: str
    after: str | None
    position: dict[str, Any]
    budget: int
    shard_closed: bool


class Probe(NamedTuple):
    """A probe's records, whether the shard is exhausted / read to its tip, and its reader;
    a read ahead also parses the records when the source has a `recordParser`."""

    records: list[Record]
    closed: bool
    caught_up: bool
    reader: ShardReader
    parsed: ParsedRecords | None = None


def _initial_position(options: SourceOptions) -> dict[str, Any]:
    if options.starting_position == "TRIM_HORIZON":
        return {"type": "TRIM_HORIZON"}
    if options.starting_position == "AT_TIMESTAMP":
        return {"type": "AT_TIMESTAMP", "timestampMs": options.starting_timestamp_ms}
    # LATEST is pinned to the query's start time, so a restart before the first batch
    # commits still reads the same records.
    return {"type": "AT_TIMESTAMP", "timestampMs": int(time.time() * 1000)}


def _compact(record: dict[str, Any]) -> tuple[bytes, str, str, float]:
    arrival = record["ApproximateArrivalTimestamp"]
    return (
        bytes(record["Data"]),
        record["PartitionKey"],
        record["SequenceNumber"],
        arrival.timestamp() if hasattr(arrival, "timestamp") else float(arrival),
    )


class KinesisStreamReader(DataSourceStreamReader, SupportsTriggerAvailableNow):
    """Driver side: offsets and planning. Executor side: `read()` of one ShardRange."""

    def __init__(self, options: SourceOptions) -> None:
        self.options = options
        self._client: Any = None
        self._handoff: dict[tuple[str, str | None, str], HandOff] = {}
        self._lag: dict[str, int | None] = {}
        # shard -> (the sequence number an iterator reads after, that iterator): the probe of
        # the next batch starts where this one stopped without asking for a new iterator.
        self._iterators: dict[str, tuple[str | None, str]] = {}
        self._target_ms: int | None = None  # AvailableNow: ignore records arriving later
        # shard -> the read of its next batch, started when this batch's offsets were decided
        self._prefetches: dict[str, tuple[ProbeArgs, Future[Probe]]] = {}
        self._background_thread: ThreadPoolExecutor | None = None  # made on the driver, when needed
        self._probe_pool: ThreadPoolExecutor | None = None  # the probes' threads (driver)
        self._parser: RecordParser | None = None  # built from the options on first use
        self._decided_a_batch = False  # whether latestOffset has run in this process
        self._spool = None if options.driver_spool is None else BatchSpool(options.driver_spool)
        self._spooled: list[dict[str, Any]] = []  # end offsets of the batches in the spool

    # ------------------------------------------------------------------ driver
    def _kinesis(self) -> Any:
        if self._client is None:
            self._client = make_client(self.options)
        return self._client

    def initialOffset(self) -> dict[str, Any]:
        shards = {
            shard: {"after": sequence, "closed": False}
            for shard, sequence in self.options.starting_sequence_numbers
        }
        return {"position": _initial_position(self.options), "shards": shards}

    def getDefaultReadLimit(self) -> ReadLimit:
        if self.options.max_records_per_trigger is not None:
            return ReadMaxRows(self.options.max_records_per_trigger)
        return ReadAllAvailable()

    def prepareForTriggerAvailableNow(self) -> None:
        self._target_ms = int(time.time() * 1000)
        logger.info("AvailableNow: reading records that arrived before %d", self._target_ms)

    def latestOffset(self, start: dict[str, Any], limit: ReadLimit) -> dict[str, Any]:
        """Probe every readable shard for at most its budget; returns the batch's end."""
        shards_state: dict[str, dict[str, Any]] = {
            k: dict(v) for k, v in start.get("shards", {}).items()
        }
        position = start["position"]
        prefetched = self._finished_prefetches()
        shards = list_shards(self._kinesis(), self.options)
        ready = readable_shards(shards, shards_state)
        closed_shards = {s.shard_id for s in shards if s.closed}
        total = limit.max_rows if isinstance(limit, ReadMaxRows) else None
        fetched = 0
        backlogged: list[ProbeArgs] = []
        reads_ahead = self.options.prefetch and self.options.read_mode == "handoff"
        first_batch, self._decided_a_batch = not self._decided_a_batch, True
        planned: list[tuple[ProbeArgs, int]] = []  # each shard's probe and its full budget
        for index, shard_id in enumerate(ready):
            budget = self.options.max_records_per_shard
            if total is not None:
                share = total // len(ready) + (1 if index < total % len(ready) else 0)
                budget = min(budget, share)
            if budget <= 0:
                continue
            # The next batch, read ahead, gets the full budget: the next probe asks for it.
            full_budget = budget
            if first_batch and reads_ahead:
                budget = min(budget, self.options.first_batch_records_per_shard)
            state = shards_state.setdefault(shard_id, {"after": None, "closed": False})
            args = ProbeArgs(shard_id, state["after"], position, budget, shard_id in closed_shards)
            planned.append((args, full_budget))
        probes = self._probe_all([args for args, _ in planned], prefetched)
        spooled: list[tuple[str, HandOff]] = []  # each range's hand-off, for the driver's spool
        for (args, full_budget), probe in zip(planned, probes, strict=True):
            shard_id, state = args.shard_id, shards_state[args.shard_id]
            records, closed, caught_up, reader, parsed = probe
            fetched += reader.fetched
            self._lag[shard_id] = reader.millis_behind_latest
            if records:
                end = records[-1][2]
                if self.options.read_mode == "handoff":
                    handed: HandOff = (None, parsed)
                    if parsed is None:
                        handed = (records, self._parse_in_background(shard_id, records))
                    self._handoff[(shard_id, state["after"], end)] = handed
                    spooled.append((shard_id, handed))
                state["after"] = end
            state["closed"] = closed
            state["caughtUp"] = caught_up
            # Only an iterator right after the batch's end can serve the next probe (an
            # AvailableNow cut may have read past it).
            if reader.next_iterator is not None and reader.last_sequence == state["after"]:
                self._iterators[shard_id] = (state["after"], reader.next_iterator)
            if records and not closed and not caught_up:
                backlogged.append(args._replace(after=state["after"], budget=full_budget))
        # Reads ahead no probe took (another start or budget, a shard not visited) still count.
        fetched += sum(probe.reader.fetched for _, probe in prefetched.values())
        log_fetched(self.options, "driver", fetched)
        offset = {"position": position, "shards": shards_state}
        if self._spool is not None and spooled:
            self._spool_batch(self._spool, offset, spooled)
        if reads_ahead:
            self._start_prefetches(backlogged)
        return offset

    def _spool_batch(
        self, spool: BatchSpool, offset: dict[str, Any], handed: list[tuple[str, HandOff]]
    ) -> None:
        """Write the batch's parsed records to the driver's spool, named by its end offset
        (processor/kinesis_source/spool.py). A range whose parse failed leaves the batch
        unspooled: the sink then collects it from Spark, whose task parses and meets the error."""
        parsed: list[ParsedRecords] = []
        for shard_id, (records, parse) in handed:
            if isinstance(parse, Future):
                parse = self._parsed(shard_id, parse)
            elif parse is None and records is not None:  # prefetch off: nothing parsed it yet
                parser = self._record_parser()
                assert parser is not None  # the options require one with a spool
                try:
                    parse = self._parse(parser, shard_id, records)
                except Exception as exc:  # noqa: BLE001 - the task parses again and reports it
                    logger.warning("shard %s: batch not spooled, its parse failed: %s",
                                   shard_id, exc)  # fmt: skip
            if parse is None:
                return
            parsed.append(parse)
        if spool.put(offset, [batch for p in parsed for batch in p.batches]) is not None:
            self._spooled.append(offset)

    def _background(self) -> ThreadPoolExecutor:
        """The driver's one background thread: parses of probed records, then reads ahead."""
        if self._background_thread is None:
            self._background_thread = ThreadPoolExecutor(1, thread_name_prefix="prefetch")
        return self._background_thread

    def _probe_all(
        self, planned: list[ProbeArgs], prefetched: dict[str, tuple[ProbeArgs, Probe]]
    ) -> list[Probe]:
        """Each shard's probe, in `planned` order: its read ahead when one was made for exactly
        these arguments (then taken out of `prefetched`), else a probe now. The probes of
        several shards run at once, on threads of their own: each waits on its GetRecords
        calls, so one after another the batch's start grew with the shard count (ADR 0042)."""
        taken: dict[str, Probe] = {}
        for args in planned:
            read_ahead = prefetched.get(args.shard_id)
            if read_ahead is not None and read_ahead[0] == args:
                del prefetched[args.shard_id]
                taken[args.shard_id] = read_ahead[1]
        to_read = [args for args in planned if args.shard_id not in taken]
        if len(to_read) > 1:
            pool = self._probe_threads()  # they share the client latestOffset already made
            futures = {args.shard_id: pool.submit(self._probe, *args) for args in to_read}
            # Every probe ends before this call does, even when one fails: none is left
            # running beside the next batch's probe of the same shard.
            wait(futures.values())
            read = {shard_id: future.result() for shard_id, future in futures.items()}
        else:
            read = {args.shard_id: self._probe(*args) for args in to_read}
        return [
            taken[args.shard_id] if args.shard_id in taken else read[args.shard_id]
            for args in planned
        ]

    def _probe_threads(self) -> ThreadPoolExecutor:
        if self._probe_pool is None:
            self._probe_pool = ThreadPoolExecutor(PROBE_THREADS, thread_name_prefix="probe")
        return self._probe_pool

    def _start_prefetches(self, backlogged: list[ProbeArgs]) -> None:
        """Read the next batch of each backlogged shard in the background, one after another
        on one thread: they run while the current batch is in the sink."""
        for args in backlogged:
            future = self._background().submit(self._read_ahead, args)
            self._prefetches[args.shard_id] = (args, future)

    def _read_ahead(self, args: ProbeArgs) -> Probe:
        """The probe of a backlogged shard's next batch, its records parsed too when the source
        has a parser: the parse then runs while the current batch is in the sink (ADR 0023)."""
        probe = self._probe(*args)
        parser = self._record_parser()
        if parser is None or not probe.records:
            return probe
        return probe._replace(parsed=self._parse(parser, args.shard_id, probe.records))

    def _parse(self, parser: RecordParser, shard_id: str, records: list[Record]) -> ParsedRecords:
        batches = tuple(parser(batch) for batch in self._to_arrow(shard_id, records))
        return ParsedRecords(len(records), batches)

    def _parse_in_background(
        self, shard_id: str, records: list[Record]
    ) -> Future[ParsedRecords] | None:
        """A probed range's parse, started on the background thread while the probe reads the
        next shard (its GetRecords waits leave the process idle); `partitions` takes it. None
        without a parser or with `prefetch` off: the range's task parses it."""
        parser = self._record_parser()
        if parser is None or not self.options.prefetch:
            return None
        return self._background().submit(self._parse, parser, shard_id, records)

    def _record_parser(self) -> RecordParser | None:
        if self._parser is None and self.options.record_parser is not None:
            self._parser = load_parser(
                self.options.record_parser, self.options.record_parser_argument
            )
        return self._parser

    def _finished_prefetches(self) -> dict[str, tuple[ProbeArgs, Probe]]:
        """shard -> (what was read, the read), once every started read has ended (a probe of
        the same shard must not run beside one: they share the shard's cached iterator). A read
        that failed is dropped: the probe then reads itself and meets the error, if it lasts."""
        done: dict[str, tuple[ProbeArgs, Probe]] = {}
        prefetches, self._prefetches = self._prefetches, {}
        for shard_id, (args, future) in prefetches.items():
            try:
                done[shard_id] = (args, future.result())
            except Exception as exc:  # noqa: BLE001 - the probe reads again and reports it
                logger.warning("prefetch of shard %s failed, reading it again: %s", shard_id, exc)
        return done

    def stop(self) -> None:
        for pool in (self._background_thread, self._probe_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def _probe(
        self,
        shard_id: str,
        after: str | None,
        position: dict[str, Any],
        budget: int,
        shard_closed: bool,
    ) -> Probe:
        """Read up to `budget` records; also says whether the shard is now exhausted, and
        whether it was read to its tip (caught up).

        Exhausted: GetRecords ended the shard (no next iterator), or ListShards reports it
        closed and a read from our position is empty and not behind. Caught up: exhausted, or
        a read came back empty or short of what was asked and not behind (MillisBehindLatest
        0: nothing left to read now), or (AvailableNow) the next record arrived after the
        run's cut. A read that stopped on its budget is not caught up, even if the budget
        happened to end exactly at the tip: the next batch finds out.
        """
        cached = self._iterators.pop(shard_id, None)
        iterator = cached[1] if cached is not None and cached[0] == after else None
        reader = ShardReader(self._kinesis(), self.options, shard_id, after, position, iterator)
        records: list[Record] = []
        empty = 0
        while len(records) < budget:
            asked = min(budget - len(records), MAX_GET_RECORDS_LIMIT)
            batch = reader.fetch(asked)
            if self._target_ms is not None:
                kept = [r for r in map(_compact, batch) if r[3] * 1000 <= self._target_ms]
                if len(kept) < len(batch):
                    records.extend(kept)
                    return Probe(records, False, True, reader)
                records.extend(kept)
            else:
                records.extend(map(_compact, batch))
            if reader.closed:
                # Closed and read to its end, unless the budget stopped us first.
                return Probe(records, True, True, reader)
            if not batch:
                empty += 1
                caught_up = reader.millis_behind_latest == 0
                if caught_up and shard_closed:
                    return Probe(records, True, True, reader)
                if empty >= (_EMPTY_CALLS_WHEN_CAUGHT_UP if caught_up else _EMPTY_CALLS_MAX):
                    return Probe(records, False, caught_up, reader)
            elif len(batch) < asked and reader.millis_behind_latest == 0 and not shard_closed:
                # Fewer records than asked and none behind them: this read reached the tip,
                # so a second, empty read would only confirm it.
                return Probe(records, False, True, reader)
            else:
                empty = 0
        return Probe(records, False, False, reader)

    def reportLatestOffset(self) -> dict[str, Any] | None:
        """Shown in the query progress as the source's latest offset: the per-shard lag."""
        return {"millisBehindLatest": dict(sorted(self._lag.items()))} if self._lag else None

    def partitions(self, start: dict[str, Any], end: dict[str, Any]) -> list[ShardRanges]:
        ranges = []
        start_shards = start.get("shards", {})
        # A spooled batch is the driver's sink's to take (ADR 0048). Spark plans its partitions
        # all the same, so they go without the records it would pickle and ship for nothing;
        # a sink that collects the batch after all has its tasks read them from Kinesis.
        spooled = end in self._spooled
        for shard_id, state in sorted(end.get("shards", {}).items()):
            after = start_shards.get(shard_id, {}).get("after")
            if state["after"] is None or state["after"] == after:
                continue
            records, handed = self._handoff.pop((shard_id, after, state["after"]), (None, None))
            if spooled:
                records, handed = None, None
            if isinstance(handed, Future):  # a probed range: its parse, or its raw records
                parsed = self._parsed(shard_id, handed)
                records = None if parsed is not None else records
            else:
                parsed = handed
            ranges.append(
                ShardRange(shard_id, after, end["position"], state["after"], records, parsed)
            )
        return group_ranges(ranges, self.options.min_records_per_partition)

    @staticmethod
    def _parsed(shard_id: str, parse: Future[ParsedRecords]) -> ParsedRecords | None:
        """A background parse's records; None if it failed: the range's task then parses the
        raw records itself (and meets the error, if it lasts)."""
        try:
            return parse.result()
        except Exception as exc:  # noqa: BLE001 - the task parses again and reports it
            logger.warning("parse of shard %s's probed records failed, handing them off raw: %s",
                           shard_id, exc)  # fmt: skip
            return None

    def commit(self, end: dict[str, Any]) -> None:
        # Handed-off records of committed batches are no longer needed for a retry.
        committed = {(k, v.get("after")) for k, v in end.get("shards", {}).items()}
        self._handoff = {
            key: value for key, value in self._handoff.items() if (key[0], key[2]) not in committed
        }
        # Nor are the spooled batches up to this one (they were spooled in order).
        if self._spool is not None and end in self._spooled:
            done = self._spooled.index(end) + 1
            for offset in self._spooled[:done]:
                self._spool.remove(offset)
            del self._spooled[:done]

    # ------------------------------------------------------------------ executor
    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        assert isinstance(partition, ShardRanges)
        for shard_range in partition.ranges:
            yield from self._read_range(shard_range)

    def _read_range(self, partition: ShardRange) -> Iterator[pa.RecordBatch]:
        if partition.parsed is not None:
            yield from partition.parsed.batches
            return
        parser = self._record_parser()
        if partition.records is not None:
            raw: Any = partition.records
        else:
            reader = ShardReader(
                make_client(self.options),
                self.options,
                partition.shard_id,
                partition.after,
                partition.position,
            )
            raw = (_compact(r) for r in reader.read_until(partition.end))
        for batch in self._to_arrow(partition.shard_id, raw):
            yield batch if parser is None else parser(batch)
        if partition.records is None:
            log_fetched(self.options, "executor", reader.fetched)

    def _to_arrow(self, shard_id: str, raw: Any) -> Iterator[pa.RecordBatch]:
        columns: dict[str, list[Any]] = {name: [] for name in ARROW_SCHEMA.names}
        stream = self.options.stream_name
        for data, key, sequence, arrival in raw:
            for user_data, user_key, sub in user_records(data, key):
                columns["data"].append(user_data)
                columns["partitionKey"].append(user_key)
                columns["sequenceNumber"].append(sequence)
                columns["subSequenceNumber"].append(sub)
                columns["approximateArrivalTimestamp"].append(int(arrival * 1_000_000))
            if len(columns["data"]) >= 8192:
                yield self._batch(columns, stream, shard_id)
                columns = {name: [] for name in ARROW_SCHEMA.names}
        if columns["data"]:
            yield self._batch(columns, stream, shard_id)

    @staticmethod
    def _batch(columns: dict[str, list[Any]], stream: str, shard_id: str) -> pa.RecordBatch:
        size = len(columns["data"])
        return pa.RecordBatch.from_arrays(
            [
                pa.array(columns["data"], pa.binary()),
                pa.array([stream] * size, pa.string()),
                pa.array([shard_id] * size, pa.string()),
                pa.array(columns["partitionKey"], pa.string()),
                pa.array(columns["sequenceNumber"], pa.string()),
                pa.array(columns["subSequenceNumber"], pa.int64()),
                pa.array(columns["approximateArrivalTimestamp"], pa.timestamp("us", tz="UTC")),
            ],
            schema=ARROW_SCHEMA,
        )
