"""The compaction lease (processor/compaction_lease.py): one holder per table at a time, on a
folder (flock) and on moto's S3 (conditional puts), taken back after a crash, and the job's and
the maintenance's compactions of one table never overlapping."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from config.aws import make_client
from config.lake import delta_uri, s3_client
from config.settings import Settings
from processor import lake_maintenance, sinks
from processor.compaction_lease import LEASE_NAME, compaction_lease
from processor.job import lake_writer
from processor.lake_commit import COMPACT_INTERVAL, commit_batch
from processor.lake_maintenance import main as maintain
from scripts.setup_aws import ensure_bucket
from tests.test_lake_commit import WRITER, batch_ids, ids, scored

TTL = 60.0


def _table(tmp_path: Path, batches: int = 2) -> str:
    uri = str(tmp_path / "lake" / "transactions")
    for batch in range(batches):
        commit_batch(uri, scored(batch), "event_date", WRITER, batch)
    return uri


def test_a_folder_lease_has_one_holder_at_a_time(tmp_path: Path) -> None:
    uri = _table(tmp_path, 1)
    with compaction_lease(uri, "job", None, TTL) as first:
        assert first.taken and first.holder == "job"
        with compaction_lease(uri, "maintenance", None, TTL) as second:
            assert not second.taken and second.holder == "job"
    with compaction_lease(uri, "maintenance", None, TTL) as third:
        assert third.taken


def test_a_folder_lease_is_free_once_its_holder_dies(tmp_path: Path) -> None:
    """flock: the kernel drops the lock of a killed process; no expiry to wait for."""
    uri = _table(tmp_path, 1)
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time\n"
            "from processor.compaction_lease import compaction_lease\n"
            f"with compaction_lease({uri!r}, 'dead job', None, 60) as lease:\n"
            "    print(lease.taken, flush=True)\n"
            "    time.sleep(120)\n"
        )],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        with compaction_lease(uri, "job", None, TTL) as refused:
            assert (refused.taken, refused.holder) == (False, "dead job")
        holder.kill()
        holder.wait(timeout=30)
        with compaction_lease(uri, "job", None, TTL) as lease:
            assert lease.taken
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_no_lease_without_a_table_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), compaction_lease(str(tmp_path / "none"), "job", None, 1):
        pass
    assert not (tmp_path / "none").exists()


def _s3_table(settings: Settings) -> str:
    ensure_bucket(make_client("s3", settings.aws), settings.s3.bucket, settings.aws.region)
    return delta_uri(f"s3a://{settings.s3.bucket}/lake", "transactions")


def _s3_lease(settings: Settings) -> dict[str, Any]:
    body = (
        s3_client(settings.aws)
        .get_object(Bucket=settings.s3.bucket, Key=f"lake/transactions/{LEASE_NAME}")["Body"]
        .read()
    )
    lease: dict[str, Any] = json.loads(body)
    return lease


@pytest.mark.integration
def test_an_s3_lease_has_one_holder_until_given_back_or_expired(settings: Settings) -> None:
    uri, aws = _s3_table(settings), settings.aws
    with compaction_lease(uri, "job", aws, TTL) as first:
        assert first.taken
        assert _s3_lease(settings)["holder"] == "job"
        with compaction_lease(uri, "maintenance", aws, TTL) as second:
            assert (second.taken, second.holder) == (False, "job")
        # The same holder takes back what it left (a job restarted after a crash).
        with compaction_lease(uri, "job", aws, TTL) as again:
            assert again.taken
    assert _s3_lease(settings)["expires_at"] == "released"
    with compaction_lease(uri, "maintenance", aws, TTL) as released:
        assert released.taken
    # A holder that died: its lease is taken over once it has expired, not before.
    with compaction_lease(uri, "dead", aws, 0.0) as dead:
        assert dead.taken
        with compaction_lease(uri, "job", aws, TTL) as lease:
            assert lease.taken
            assert _s3_lease(settings)["holder"] == "job"
        assert _s3_lease(settings)["expires_at"] == "released"


@pytest.mark.integration
def test_an_s3_lease_taken_over_is_not_given_back_by_its_old_holder(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    uri, aws = _s3_table(settings), settings.aws
    slow = compaction_lease(uri, "slow", aws, 0.0)  # expired as soon as taken
    assert slow.__enter__().taken
    with (
        caplog.at_level(logging.WARNING, logger="processor.compaction_lease"),
        compaction_lease(uri, "job", aws, TTL) as job,
    ):
        assert job.taken
        slow.__exit__(None, None, None)  # the slow holder ends while the job holds the lease
        lease = _s3_lease(settings)
    # Its give-back's If-Match failed: the job's lease stood until the job gave it back.
    assert lease["holder"] == "job" and lease["expires_at"] != "released"
    assert "taken over while slow held it" in caplog.text
    assert _s3_lease(settings)["expires_at"] == "released"


@pytest.mark.integration
def test_two_takers_of_a_free_s3_lease_only_one_gets_it(settings: Settings) -> None:
    """The race between reading "no lease" and putting one: the second put's `If-None-Match`
    fails, so it is refused rather than overwriting the first."""
    uri, aws = _s3_table(settings), settings.aws
    client = s3_client(aws)
    real_get = client.get_object
    inner: list[Any] = []

    def get_then_lose_the_race(**kwargs: Any) -> Any:
        try:
            return real_get(**kwargs)
        finally:
            if not inner:  # another taker reads and puts between our read and our put
                inner.append(compaction_lease(uri, "other", aws, TTL))
                assert inner[0].__enter__().taken

    client.get_object = get_then_lose_the_race
    try:
        with compaction_lease(uri, "job", aws, TTL) as late:
            assert not late.taken
    finally:
        del client.get_object
        inner[0].__exit__(None, None, None)
    assert _s3_lease(settings)["holder"] == "other"


@pytest.mark.integration
def test_an_unreadable_s3_lease_is_taken_over(settings: Settings) -> None:
    uri, aws = _s3_table(settings), settings.aws
    s3_client(aws).put_object(
        Bucket=settings.s3.bucket, Key=f"lake/transactions/{LEASE_NAME}", Body=b"not json"
    )
    with compaction_lease(uri, "job", aws, TTL) as lease:
        assert lease.taken


def test_the_job_leaves_a_leased_table_to_its_holder_and_asks_again(tmp_path: Path) -> None:
    uri = _table(tmp_path)
    files = len(DeltaTable(uri).file_uris())
    holder = "processor.job query q1"
    with compaction_lease(uri, "processor.lake_maintenance host pid 7", None, TTL):
        assert sinks._compact_table(uri, None, None, holder) is False
    assert len(DeltaTable(uri).file_uris()) == files
    assert sinks._compact_table(uri, None, None, holder) is True
    assert len(DeltaTable(uri).file_uris()) < files


def test_the_maintenance_skips_a_table_the_job_holds_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = _table(tmp_path)
    files = len(DeltaTable(uri).file_uris())
    lake = str(tmp_path / "lake")
    with compaction_lease(uri, "processor.job query q1", None, TTL):
        assert maintain(["--lake-path", lake, "--before", "2026-03-03", "--lease-wait", "0"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[0])
    assert report["skipped"] == "compaction lease held by processor.job query q1"
    assert len(DeltaTable(uri).file_uris()) == files


def test_the_jobs_and_the_maintenances_compactions_never_duplicate_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both started at once, round after round, on new small files: without the lease they
    read the same version and both commit their rewrite (ADR 0028, "Found later")."""
    monkeypatch.setattr(lake_maintenance, "LEASE_POLL_SECONDS", 0.01)
    lake = tmp_path / "lake"
    uri = str(lake / "transactions")
    argv = ["--lake-path", str(lake), "--before", "2026-03-03", "--lease-wait", "30"]
    for round_ in range(6):
        for batch in range(3 * round_, 3 * round_ + 3):
            commit_batch(uri, scored(batch), "event_date", WRITER, batch)
        start = threading.Barrier(2)

        def job(start: threading.Barrier) -> None:
            start.wait()
            sinks._compact_table(uri, None, None, "processor.job query q1")

        thread = threading.Thread(target=job, args=(start,))
        thread.start()
        start.wait()
        assert maintain(argv) == 0
        thread.join()
        assert ids(uri) == batch_ids(*range(3 * round_ + 3)), f"round {round_}"


@pytest.mark.integration
def test_the_sink_asks_again_at_the_next_batch_for_a_table_it_was_refused(
    settings: Settings,
) -> None:
    """The interval's compaction is not lost while the maintenance holds the lease: the batch
    after it compacts the table, although its own commit is not at an interval."""
    writer = lake_writer(settings)
    writer.query_id = "q1"
    uri = delta_uri(settings.processor.lake_path, "transactions")
    for batch in range(3):
        commit_batch(uri, scored(batch), "event_date", WRITER, batch)
    files = len(DeltaTable(uri).file_uris())
    with compaction_lease(uri, "processor.lake_maintenance host pid 7", None, TTL):
        writer._start_compaction({"transactions": COMPACT_INTERVAL, "labels": None})
        writer.wait_for_compaction()
    assert len(DeltaTable(uri).file_uris()) == files
    writer._start_compaction({"transactions": COMPACT_INTERVAL + 1})
    writer.wait_for_compaction()
    assert len(DeltaTable(uri).file_uris()) == 2  # one per event date
    assert ids(uri) == batch_ids(0, 1, 2)
    writer._start_compaction({"transactions": COMPACT_INTERVAL + 2})
    assert writer._compaction is None  # asked once, then only at the next interval


@pytest.mark.integration
def test_a_compaction_runs_beside_the_next_batches_one_at_a_time(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch no longer waits for the compaction the batch before started (ADR 0031); a table
    due while one runs is compacted by the first batch that finds it ended."""
    release, compacted = threading.Event(), []

    def compacting(uri: str, options: Any, aws: Any, holder: str) -> bool:
        compacted.append(uri)
        return release.wait(30)

    monkeypatch.setattr(sinks, "_compact_table", compacting)
    writer = lake_writer(settings)
    writer.query_id = "q1"
    transactions, labels = (
        delta_uri(settings.processor.lake_path, table) for table in ("transactions", "labels")
    )
    writer._start_compaction({"transactions": COMPACT_INTERVAL})
    running = writer._compaction
    assert running is not None
    writer._start_compaction({"labels": COMPACT_INTERVAL})  # returns without waiting
    assert writer._compaction is running and not running.done()
    release.set()
    running.result(timeout=30)
    assert compacted == [transactions]
    writer._start_compaction({"labels": COMPACT_INTERVAL + 1})  # not due itself: labels still is
    assert writer._compaction is not running
    writer.wait_for_compaction()
    assert compacted == [transactions, labels]
    writer._start_compaction({"labels": COMPACT_INTERVAL + 2})
    assert writer._compaction is None
