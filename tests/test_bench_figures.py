"""The benchmarks' own arithmetic: CPU seconds per process role, the engine bench's figures."""

from __future__ import annotations

import json
import math
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from producer.contract import format_epoch_ms
from producer.kinesis_writer import KinesisWriter
from producer.stats import SendStats
from scripts import bench_density, bench_engine, bench_lake, bench_parse
from scripts.bench_scoring import BatchWall, _after_warm_up, cpu_used, tail_batches
from scripts.bench_streams import latency_records, restamped


def test_a_process_read_after_it_exited_keeps_its_role() -> None:
    """An exited, unreaped process has no command line (role `other`) but still its CPU time:
    the time counts for the role it had while it ran."""
    before = {1: ("driver", 10.0), 2: ("source", 1.0)}
    readings = [
        {1: ("driver", 12.0), 2: ("source", 3.0)},
        {1: ("driver", 15.0), 2: ("other", 4.5), 3: ("other", 0.5)},
    ]
    used = cpu_used(before, readings, seconds=5.0)
    assert used["seconds_by_role"] == {"driver": 5.0, "other": 0.5, "source": 3.5}
    assert used["cores_busy"] == 1.8


def test_the_tail_batches_are_those_with_the_most_steps_above_p99_after_the_warm_up() -> None:
    walls = {
        0: BatchWall(15_000, 900, [2500, 2600, 2700]),  # warm-up: left out whatever it holds
        1: BatchWall(100, 800, [900, 2100]),
        2: BatchWall(1200, 1500, [2050, 2300, 2400]),
        3: BatchWall(90, 700, [1000, 1100]),
    }
    phases = {2: {"engine": 400}}
    tail = tail_batches(_after_warm_up(walls, warm_up=3), phases, p99=2000, count=5)
    assert [(t["batch"], t["above_p99"], t["max_ms"]) for t in tail] == [(2, 3, 2400), (1, 1, 2100)]
    assert tail[0]["before_sink_ms"] == 1200 and tail[0]["sink_ms"] == 1500
    assert tail[0]["sink_engine"] == 400
    assert tail_batches(walls, phases, p99=None) == []


def test_the_engine_bench_times_every_batch_and_digests_the_same_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each run starts from empty state over the same parsed batches, so every repeat (and a
    second invocation) must give one digest; the figures land in bench-results/engine.json."""
    monkeypatch.chdir(tmp_path)
    args = ["--transactions", "1500", "--customers", "60", "--batch", "1000", "--repeats", "2"]
    assert bench_engine.main(args) == 0
    first = json.loads((tmp_path / "bench-results" / "engine.json").read_text())
    assert first["batches"] == math.ceil(first["records"] / 1000) >= 2
    assert [len(run) for run in first["ms_per_batch"]] == [first["batches"]] * 2
    assert [len(run) for run in first["changelog_ms_per_batch"]] == [first["batches"]] * 2
    snapshot = first["snapshot"]
    assert snapshot["bytes"] > 0 and len(snapshot["encode_ms"]) == len(snapshot["decode_ms"]) == 2
    assert isinstance(first["features_digest"], str)  # one digest: the runs agree
    assert first["steady_best_us_per_event"] <= first["steady_median_us_per_event"]
    assert bench_engine.main(args) == 0
    second = json.loads((tmp_path / "bench-results" / "engine.json").read_text())
    assert second["features_digest"] == first["features_digest"]


def test_the_engine_bench_at_a_rate_replays_the_latency_stream_a_batch_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--rate: `rate` events a batch, stamped within their second, and each minute's median."""
    monkeypatch.chdir(tmp_path)
    batches = bench_engine.batches_at_rate(50, 3, shards=2)
    assert [table.num_rows for table in batches] == [50, 50, 50]
    for second, table in enumerate(batches):
        stamps = table.column("event_time").cast(pa.int64()).to_pylist()
        begins = (bench_engine.T0 + second * 1000) * 1000  # µs
        assert min(stamps) == begins and max(stamps) == begins + 900_000
    args = ["--rate", "40", "--seconds", "130", "--repeats", "1", "--label", "r"]
    assert bench_engine.main(args) == 0
    saved = json.loads((tmp_path / "bench-results" / "engine-at-rate.json").read_text())
    assert saved["rate_per_s"] == 40 and saved["records"] == 40 * 130
    assert [len(run) for run in saved["ms_per_batch"]] == [130]
    assert [len(run) for run in saved["median_ms_per_batch_by_minute"]] == [3]
    assert not (tmp_path / "bench-results" / "engine.json").exists()
    with pytest.raises(SystemExit) as refused:  # ten ticks a second: a multiple of 10
        bench_engine.main(["--rate", "15"])
    assert refused.value.code == 2


def test_the_density_bench_times_a_card_and_a_terminal_at_each_density(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["--per-day", "5", "80", "--events", "20", "--repeats", "2", "--label", "t"]
    assert bench_density.main(args) == 0
    saved = json.loads((tmp_path / "bench-results" / "density.json").read_text())
    assert [row["per_day"] for row in saved["densities"]] == [5, 80]
    for row in saved["densities"]:
        assert row["card_us_per_event"] > 0 and row["terminal_us_per_event"] > 0
    assert saved["label"] == "t" and len(saved["load_average_before"]) == 3


def test_the_lake_bench_compacts_at_its_interval_and_keeps_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both runs append the same batches (the bench asserts every row is there once); only the
    compacted one ends with fewer files than commits."""
    monkeypatch.chdir(tmp_path)
    args = ["--commits", "12", "--rows", "5", "--commits-per-day", "6", "--interval", "5"]
    assert bench_lake.main(args) == 0
    figures = json.loads((tmp_path / "bench-results" / "lake.json").read_text())
    never, compacted = figures["never_compacted"], figures["compacted"]
    assert never["files_at_end"] == 12 and "compactions" not in never
    assert compacted["compactions"]["count"] == 2  # after versions 5 and 10
    # Day one's six files became one at version 5, day two's first four one at version 10,
    # and the last two batches' files are not compacted yet.
    assert compacted["files_at_end"] == 4


def test_the_parse_bench_parses_every_record_into_the_same_rows_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["--transactions", "600", "--customers", "30", "--batch", "250", "--repeats", "2"]
    assert bench_parse.main(args) == 0
    first = json.loads((tmp_path / "bench-results" / "parse.json").read_text())
    assert first["records"] >= 600 and len(first["runs_s"]) == 2
    assert first["best_us_per_record"] <= first["median_us_per_record"]
    assert bench_parse.main(args) == 0
    second = json.loads((tmp_path / "bench-results" / "parse.json").read_text())
    assert second["rows_digest"] == first["rows_digest"]


class _RecordingKinesis:
    """PutRecords that accepts every entry and keeps each call's partition keys."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls.append([entry["PartitionKey"] for entry in Records])
        return {"Records": [{"ShardId": "shardId-000000000000"} for _ in Records]}


def test_a_tick_of_the_restamped_latency_stream_goes_out_in_as_few_calls_as_its_cards_allow(
    tmp_path: Path,
) -> None:
    """The writer holds a card's next record for a later call and ends a call that would pass a
    held record by more than its reorder bound of send time. A tick's records all carry the
    tick's send time, so only a card's repeats split it: as many calls as the busiest card has
    records. With the generator's send times left in place, calls held ~18 records."""
    now_ms = 1_800_000_000_000
    records = [restamped(record, now_ms) for record in islice(latency_records(), 400)]
    assert {record.send_time_ms for record in records} == {now_ms}
    assert {json.loads(record.data)["event_time"] for record in records} == {
        format_epoch_ms(now_ms)
    }
    kinesis = _RecordingKinesis()
    writer = KinesisWriter(kinesis, "bench", SendStats(), tmp_path / "failed.jsonl")
    writer.put(records)
    writer.flush()
    busiest = max(Counter(record.partition_key for record in records).values())
    assert len(kinesis.calls) == busiest
    assert sum(map(len, kinesis.calls)) == writer.stats.sent == 400
