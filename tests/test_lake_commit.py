"""Lake commits with delta-rs (processor/lake_commit.py): once per writer and batch, on a folder
and on the session's moto S3, and interchangeable with the Spark writer the job used before
(ADR 0016): the same `txn` entries, schema, partitions and protocol, checkpoints either way."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, SchemaMismatchError

from config.aws import make_client
from config.lake import COMMIT_OPTIONS, commit_options_for, delta_uri
from config.settings import Settings
from ml_model.features import FEATURE_NAMES
from processor import lake_commit, sinks
from processor.lake_commit import (
    COMPACT_TARGET_BYTES,
    commit_batch,
    committed_batch,
    compact_table,
    compaction_due,
    open_table,
)
from processor.lake_tables import (
    SCORED_TRANSACTION_TABLE,
    TRANSACTION_TABLE,
    dead_letter_table,
    event_table,
)
from scripts.setup_aws import ensure_bucket

T0 = datetime(2026, 3, 1, 23, 50, tzinfo=UTC)  # a batch spans two event dates
WRITER = "fraud-processor-q1-transactions"


def scored(batch_id: int, n: int = 3) -> pa.Table:
    """`n` scored transactions of one batch, ids `tx-<batch>-<i>`, over two event dates."""
    rows = []
    for i in range(n):
        row: dict[str, Any] = dict.fromkeys(SCORED_TRANSACTION_TABLE.names)
        row.update(dict.fromkeys(FEATURE_NAMES, 0.5))
        row.update(
            event_type="transaction",
            event_id=f"e-{batch_id}-{i}",
            schema_version=1,
            transaction_id=f"tx-{batch_id}-{i}",
            amount=10.0 + i,
            event_time=T0 + timedelta(minutes=7 * i),
            approximateArrivalTimestamp=T0 + timedelta(minutes=7 * i, seconds=1),
            subSequenceNumber=0,
            late=False,
            lateness_ms=0,
            fraud_score=0.1,
            model_version="m1",
            decision="OK",
            reason_codes=["amount", "velocity"] if i else [],
        )
        rows.append(row)
    return event_table(rows, SCORED_TRANSACTION_TABLE)


def dead_letters(batch_id: int) -> pa.Table:
    return dead_letter_table(
        [
            {
                "dead_letter_reason": "not_json",
                "dead_letter_field": None,
                "dead_letter_detail": "Expecting value",
                "raw_payload_masked": b"{broken" + bytes([batch_id]),
                "shardId": "shardId-000000000000",
                "sequenceNumber": f"{batch_id:030d}",
                "subSequenceNumber": 0,
                "approximateArrivalTimestamp": T0,
            }
        ]
    )


def ids(uri: str, options: dict[str, str] | None = None) -> list[str]:
    table = DeltaTable(uri, storage_options=options).to_pyarrow_table(columns=["transaction_id"])
    return sorted(table.column("transaction_id").to_pylist())


def batch_ids(*batches: int, n: int = 3) -> list[str]:
    return sorted(f"tx-{b}-{i}" for b in batches for i in range(n))


def test_a_replayed_batch_is_committed_once(tmp_path: Path) -> None:
    uri = str(tmp_path / "transactions")
    assert commit_batch(uri, scored(0), "event_date", WRITER, 0) == 0
    assert commit_batch(uri, scored(0), "event_date", WRITER, 0) is None  # the replay
    assert ids(uri) == batch_ids(0)
    table = DeltaTable(uri)
    assert table.version() == 0 and committed_batch(table, WRITER) == 0
    assert table.metadata().partition_columns == ["event_date"]


def test_new_batches_append_and_older_ones_are_skipped(tmp_path: Path) -> None:
    uri = str(tmp_path / "transactions")
    for batch in (0, 1, 2):
        assert commit_batch(uri, scored(batch), "event_date", WRITER, batch) == batch
    assert commit_batch(uri, scored(1), "event_date", WRITER, 1) is None
    # A reset checkpoint is a new query id, so a new writer: its batch 0 is new data.
    assert commit_batch(uri, scored(9), "event_date", "fraud-processor-q2-transactions", 0) == 3
    assert ids(uri) == batch_ids(0, 1, 2, 9)
    assert committed_batch(DeltaTable(uri), WRITER) == 2


def test_a_concurrent_commit_of_the_same_batch_fails_instead_of_appending_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another instance of the query commits the batch between this one's check and its commit:
    the commit is refused (delta-rs checks the writer id against the winning commit)."""
    uri = str(tmp_path / "transactions")
    commit_batch(uri, scored(0), "event_date", WRITER, 0)
    real_open = lake_commit.open_table

    def open_then_lose_the_race(where: str, options: Any = None) -> DeltaTable | None:
        stale = real_open(where, options)
        monkeypatch.setattr(lake_commit, "open_table", real_open)
        assert commit_batch(where, scored(1), "event_date", WRITER, 1) == 1  # the other one
        return stale

    monkeypatch.setattr(lake_commit, "open_table", open_then_lose_the_race)
    with pytest.raises(CommitFailedError, match="(?i)concurrent transaction"):
        commit_batch(uri, scored(1), "event_date", WRITER, 1)
    assert ids(uri) == batch_ids(0, 1)


def test_checkpoints_every_ten_versions_keep_the_writer_ids(tmp_path: Path) -> None:
    uri = tmp_path / "transactions"
    for batch in range(12):
        commit_batch(str(uri), scored(batch, n=1), "event_date", WRITER, batch)
    log = uri / "_delta_log"
    assert sorted(p.name for p in log.glob("*.checkpoint.parquet")) == [
        "00000000000000000010.checkpoint.parquet"
    ]
    assert (log / "_last_checkpoint").is_file()
    # What log cleanup leaves once the commits before it expire: the checkpoint alone carries
    # the txn entries, and a replay is still recognised.
    for version in range(10):
        (log / f"{version:020d}.json").unlink()
    assert commit_batch(str(uri), scored(11, n=1), "event_date", WRITER, 11) is None
    assert commit_batch(str(uri), scored(12, n=1), "event_date", WRITER, 12) == 12
    assert ids(str(uri)) == batch_ids(*range(13), n=1)


def test_a_table_without_the_newer_columns_gets_them_as_nulls_and_never_new_ones(
    tmp_path: Path,
) -> None:
    """As Spark's append with autoMerge off: columns the batch lacks are null, columns the table
    lacks are refused (README, "Shadow challenger": added once, by hand)."""
    uri = str(tmp_path / "transactions")
    commit_batch(uri, scored(0), "event_date", WRITER, 0)
    unscored = scored(1).select(TRANSACTION_TABLE.names)
    assert commit_batch(uri, unscored, "event_date", WRITER, 1) == 1
    rows = DeltaTable(uri).to_pyarrow_table().to_pylist()
    assert {r["transaction_id"]: r["decision"] for r in rows if r["decision"] is None} == {
        f"tx-1-{i}": None for i in range(3)
    }
    old = str(tmp_path / "old")
    commit_batch(old, unscored, "event_date", WRITER, 0)
    with pytest.raises(SchemaMismatchError, match="lacks: fraud_score, model_version"):
        commit_batch(old, scored(2), "event_date", WRITER, 2)
    assert committed_batch(DeltaTable(old), WRITER) == 0


def _log_actions(uri: str, version: int) -> list[dict[str, Any]]:
    log = Path(uri) / "_delta_log" / f"{version:020d}.json"
    return [json.loads(line) for line in log.read_text().splitlines()]


def batches_committed(tmp_path: Path, count: int) -> str:
    """A transactions table of batches 0..count-1, one commit each; its uri."""
    uri = str(tmp_path / "transactions")
    for batch in range(count):
        commit_batch(uri, scored(batch), "event_date", WRITER, batch)
    return uri


def test_compaction_rewrites_small_files_and_keeps_rows_writer_ids_and_replays(
    tmp_path: Path,
) -> None:
    uri = batches_committed(tmp_path, 6)
    before = DeltaTable(uri)
    assert len(before.file_uris()) == 12  # each batch spans two event dates
    metrics = compact_table(uri)
    after = DeltaTable(uri)
    assert (metrics["numFilesRemoved"], metrics["numFilesAdded"]) == (12, 2)
    assert len(after.file_uris()) == 2 and after.version() == 6
    assert ids(uri) == batch_ids(*range(6))
    # A change of layout only: Delta's streaming readers skip it (dataChange false), and the
    # writer's batches are still known, so a replay is skipped and the next batch appends.
    changes = [
        action[kind]["dataChange"]
        for action in _log_actions(uri, 6)
        for kind in ("add", "remove")
        if kind in action
    ]
    assert len(changes) == 14 and not any(changes)
    assert committed_batch(after, WRITER) == 5
    assert commit_batch(uri, scored(5), "event_date", WRITER, 5) is None
    assert commit_batch(uri, scored(6), "event_date", WRITER, 6) == 7
    assert ids(uri) == batch_ids(*range(7))
    assert compact_table(uri)["numFilesRemoved"] == 4  # the new batch's two files, and two kept
    assert ids(uri) == batch_ids(*range(7))


def test_batches_commit_beside_a_compaction_and_both_land(tmp_path: Path) -> None:
    """The sink no longer waits for a compaction before the next batch's commits (ADR 0031):
    a compaction planned before three batches committed still lands after them, and every
    row and the writer's batch are as they were."""
    uri = batches_committed(tmp_path, 6)
    planned = DeltaTable(uri)  # the compaction's view, taken before the next batches commit
    for batch in range(6, 9):
        assert commit_batch(uri, scored(batch), "event_date", WRITER, batch) == batch
    metrics = planned.optimize.compact(target_size=COMPACT_TARGET_BYTES, max_concurrent_tasks=1)
    after = DeltaTable(uri)
    assert (metrics["numFilesRemoved"], metrics["numFilesAdded"]) == (12, 2)
    assert after.history(1)[0]["operation"] == "OPTIMIZE" and after.version() == 9
    assert len(after.file_uris()) == 2 + 6  # compacted, and the three batches' own files
    assert ids(uri) == batch_ids(*range(9))
    assert committed_batch(after, WRITER) == 8


_WORDS = "card terminal merchant online retail grocery fuel travel hotel airline pharmacy".split()


def _appends(uri: str, batches: range, rows: int) -> None:
    """One append per batch of `rows` random amounts (they compress little, as a scored
    transaction's features do)."""
    rng = np.random.default_rng(batches.start)
    for batch in batches:
        write_deltalake(
            uri,
            pa.table(
                {
                    "event_date": pa.array(["2026-03-01"] * rows),
                    "transaction_id": pa.array([f"tx-{batch}-{i}" for i in range(rows)]),
                    "amount": pa.array(rng.gamma(2.0, 30.0, rows)),
                }
            ),
            partition_by=["event_date"],
            mode="append",
        )


def _file_sizes(uri: str) -> list[int]:
    return sorted(pa.table(DeltaTable(uri).get_add_actions(flatten=True))["size_bytes"].to_pylist())


def test_the_sinks_compaction_writes_zstd_level_one(tmp_path: Path) -> None:
    """ADR 0032: the compaction beside the batches trades some size for ~30% of its CPU
    (delta-rs's OPTIMIZE writes ZSTD level 4 unless told otherwise)."""
    rng = np.random.default_rng(7)
    # The same rows in every append, so the compacted file is the same whatever order the
    # compaction reads the appends in.
    notes = pa.table(
        {
            "event_date": pa.array(["2026-03-01"] * 4_000),
            "note": pa.array([" ".join(words) for words in rng.choice(_WORDS, (4_000, 6))]),
        }
    )
    for copy in ("sink", "level1", "level4"):
        for _ in range(4):
            write_deltalake(tmp_path / copy, notes, partition_by=["event_date"], mode="append")
    compact_table(str(tmp_path / "sink"))
    for copy, level in (("level1", 1), ("level4", 4)):
        DeltaTable(tmp_path / copy).optimize.compact(
            target_size=COMPACT_TARGET_BYTES,
            writer_properties=WriterProperties(compression="ZSTD", compression_level=level),
        )
    [sink] = _file_sizes(str(tmp_path / "sink"))
    assert [sink] == _file_sizes(str(tmp_path / "level1"))
    assert [sink] != _file_sizes(str(tmp_path / "level4"))
    path = DeltaTable(tmp_path / "sink").file_uris()[0]
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_a_compaction_rewrites_the_new_files_not_the_day_before_them(tmp_path: Path) -> None:
    """delta-rs 1.6 packs a partition's files newest first, each bin a run of adjacent files
    until the next does not fit, so an in-day compaction rewrites the files since the last one
    and at most the newest earlier output (two earlier ones over half the target never share a
    bin): its cost follows the versions since the last compaction, not the day (ADR 0032)."""
    uri = str(tmp_path / "day")
    _appends(uri, range(12), rows=500)
    target = int(4.5 * max(_file_sizes(uri)))  # four appends to a file
    DeltaTable(uri).alter.set_table_properties({"delta.targetFileSize": str(target)})
    first = compact_table(uri)
    assert first["numFilesRemoved"] == 12 and first["numFilesAdded"] == 3
    earlier = _file_sizes(uri)
    _appends(uri, range(12, 18), rows=100)
    new = _file_sizes(uri)[:6]  # the six smallest
    assert min(earlier) > target / 2 and target - max(earlier) > max(new)  # room for a new one
    second = compact_table(uri)
    assert 6 <= second["numFilesRemoved"] <= 6 + 1
    expected = [f"tx-{b}-{i}" for b in range(18) for i in range(500 if b < 12 else 100)]
    assert ids(uri) == sorted(expected)


def test_a_commit_at_every_interval_is_due_for_compaction() -> None:
    interval = lake_commit.COMPACT_INTERVAL
    due = [v for v in (None, 0, 1, interval - 1, interval, 2 * interval) if compaction_due(v)]
    assert due == [interval, 2 * interval]


def test_a_table_can_opt_out_of_compaction_and_files_over_the_target_are_kept(
    tmp_path: Path,
) -> None:
    uri = batches_committed(tmp_path, 3)
    table = DeltaTable(uri)
    table.alter.set_table_properties({"delta.autoOptimize.autoCompact": "false"})
    assert compact_table(uri) == {}
    assert len(DeltaTable(uri).file_uris()) == 6
    # A target below every file's size: no file is small, so nothing is rewritten.
    table.alter.set_table_properties(
        {"delta.autoOptimize.autoCompact": "true", "delta.targetFileSize": "1"}
    )
    assert compact_table(uri)["numFilesRemoved"] == 0
    assert len(DeltaTable(uri).file_uris()) == 6


def test_a_failed_compaction_is_logged_and_leaves_the_batch_whole(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The sink compacts after the batch has landed, so a failure there must not fail it."""
    missing = str(tmp_path / "no-table")
    with caplog.at_level(logging.WARNING, logger="processor.sinks"):
        assert sinks._compact_table(missing, None, None, "processor.job query q1")
    assert f"{missing}: compaction failed" in caplog.text


@pytest.mark.integration
def test_commits_on_s3_are_put_if_absent(settings: Settings) -> None:
    ensure_bucket(make_client("s3", settings.aws), settings.s3.bucket, settings.aws.region)
    uri = delta_uri(f"s3a://{settings.s3.bucket}/lake", "transactions")
    assert uri.startswith("s3://")
    options = commit_options_for(uri, settings.aws)
    assert options is not None and COMMIT_OPTIONS.items() <= options.items()
    assert commit_options_for("/data/lake/transactions", settings.aws) is None

    assert commit_batch(uri, scored(0), "event_date", WRITER, 0, options) == 0
    assert commit_batch(uri, scored(0), "event_date", WRITER, 0, options) is None
    # Two writers that read the same version: the second's commit file is not overwritten
    # (If-None-Match), it is retried as the next version.
    first, second = DeltaTable(uri, storage_options=options), open_table(uri, options)
    assert second is not None
    write_deltalake(first, scored(5), mode="append")
    write_deltalake(second, scored(6), mode="append")
    assert DeltaTable(uri, storage_options=options).version() == 2
    assert commit_batch(uri, scored(1), "event_date", WRITER, 1, options) == 3
    assert ids(uri, options) == batch_ids(0, 1, 5, 6)
    listing = make_client("s3", settings.aws).list_objects_v2(
        Bucket=settings.s3.bucket, Prefix="lake/transactions/_delta_log/"
    )
    assert [item["Key"].rsplit("/", 1)[1] for item in listing["Contents"]] == [
        f"{version:020d}.json" for version in range(4)
    ]
    # Compaction on S3 commits with the same options (put-if-absent) and keeps every row.
    assert compact_table(uri, options)["numFilesRemoved"] == 8
    assert ids(uri, options) == batch_ids(0, 1, 5, 6)
    assert DeltaTable(uri, storage_options=options).version() == 4


# --------------------------------------------------------------------- with the Spark writer
def spark_append(
    spark: Any, data: pa.Table, path: str, partition: str, writer_id: str, batch_id: int
) -> None:
    """The job's lake write before ADR 0016: a Spark Delta append with txnAppId/txnVersion."""
    (
        spark.createDataFrame(data)
        .write.format("delta")
        .mode("append")
        .partitionBy(partition)
        .option("txnAppId", writer_id)
        .option("txnVersion", batch_id)
        .save(path)
    )


def spark_ids(spark: Any, path: str) -> list[str]:
    rows = spark.read.format("delta").load(path).select("transaction_id").collect()
    return sorted(r.transaction_id for r in rows)


@pytest.mark.integration
@pytest.mark.slow
def test_the_tables_are_what_the_spark_writer_made(spark: Any, tmp_path: Path) -> None:
    """Same Delta schema (types, nullability, arrays, binary, timestamps), partitions and
    protocol as Spark made from the same Arrow table, and Spark reads back the same rows."""
    for table, data, partition in (
        ("transactions", scored(0), "event_date"),
        ("dead_letters", dead_letters(0), "arrival_date"),
    ):
        by_spark, by_rust = str(tmp_path / "spark" / table), str(tmp_path / "rust" / table)
        spark_append(spark, data, by_spark, partition, WRITER, 0)
        commit_batch(by_rust, data, partition, WRITER, 0)
        made, wrote = DeltaTable(by_spark), DeltaTable(by_rust)
        assert wrote.schema().to_json() == made.schema().to_json(), table
        assert wrote.metadata().partition_columns == made.metadata().partition_columns
        assert (wrote.protocol().min_reader_version, wrote.protocol().min_writer_version) == (
            made.protocol().min_reader_version,
            made.protocol().min_writer_version,
        )
        assert not made.protocol().writer_features and not wrote.protocol().writer_features
        expected = spark.read.format("delta").load(by_spark)
        actual = spark.read.format("delta").load(by_rust)
        assert sorted(map(tuple, actual.collect())) == sorted(map(tuple, expected.collect()))


@pytest.mark.integration
@pytest.mark.slow
def test_spark_and_delta_rs_share_the_writer_ids_and_checkpoints(
    spark: Any, tmp_path: Path
) -> None:
    """A lake the Spark writer began continues with delta-rs and back, exactly once, each
    reading the other's checkpoint once the commits before it are gone."""
    path = tmp_path / "transactions"
    uri, log = str(path), path / "_delta_log"
    spark_append(spark, scored(0), uri, "event_date", WRITER, 0)  # version 0
    spark.sql(f"ALTER TABLE delta.`{uri}` SET TBLPROPERTIES ('delta.checkpointInterval' = '2')")
    spark_append(spark, scored(1), uri, "event_date", WRITER, 1)  # version 2: Spark checkpoint
    assert (log / f"{2:020d}.checkpoint.parquet").is_file()
    for version in (0, 1):
        (log / f"{version:020d}.json").unlink()

    assert commit_batch(uri, scored(1), "event_date", WRITER, 1) is None  # Spark's txn
    assert commit_batch(uri, scored(2), "event_date", WRITER, 2) == 3
    assert commit_batch(uri, scored(3), "event_date", WRITER, 3) == 4  # delta-rs checkpoint
    assert (log / f"{4:020d}.checkpoint.parquet").is_file()
    for version in (2, 3):
        (log / f"{version:020d}.json").unlink()

    spark_append(spark, scored(3), uri, "event_date", WRITER, 3)  # skipped by Spark
    spark_append(spark, scored(4), uri, "event_date", WRITER, 4)  # version 5
    assert commit_batch(uri, scored(4), "event_date", WRITER, 4) is None
    assert spark_ids(spark, uri) == ids(uri) == batch_ids(0, 1, 2, 3, 4)
    assert committed_batch(DeltaTable(uri), WRITER) == 4
