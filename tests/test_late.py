"""The late-event threshold: arithmetic and storage beside the checkpoint (local and S3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.aws import make_client
from config.settings import Settings
from processor.late import (
    RETAINED_FILES,
    WATERMARK_MAX_SKEW_US,
    ThresholdStore,
    advance,
    bound_watermark_times,
    delay_ms,
)
from scripts.setup_aws import ensure_bucket


def test_delay_units() -> None:
    assert delay_ms("10 minutes") == 600_000
    assert delay_ms("1 day") == 86_400_000
    assert delay_ms("30 seconds") == 30_000
    assert delay_ms("2 hours") == 7_200_000


def test_threshold_follows_the_largest_event_time_minus_the_delay() -> None:
    state = advance({}, 1_000_000, 600_000)
    assert state == {"max_event_time_ms": 1_000_000, "threshold_ms": 400_000}
    # An older batch never moves the watermark back, like Spark's.
    assert advance(state, 900_000, 600_000) == state
    assert advance(state, None, 600_000) == state
    assert advance(state, 2_000_000, 600_000)["threshold_ms"] == 1_400_000


MIN_US = 60_000_000
HOUR_US = 60 * MIN_US


def test_a_record_dated_tomorrow_moves_the_watermark_by_the_skew_bound_only() -> None:
    arrival = 1_000 * HOUR_US
    times = [arrival - MIN_US, arrival + 23 * HOUR_US]
    bounded = bound_watermark_times([arrival, arrival], times, None)
    assert max(t for t in bounded if t is not None) <= arrival + WATERMARK_MAX_SKEW_US
    # So the next ordinary records (event time = arrival) are not late under a 10-minute delay.
    threshold_us = advance({}, max(t for t in bounded if t) // 1000, 600_000)["threshold_ms"] * 1000
    assert threshold_us < arrival


def test_one_outlier_cannot_move_the_watermark() -> None:
    # A replay: event times far behind arrival, one of them 20 hours ahead of the rest.
    arrival = 5_000 * HOUR_US
    ordinary = [100 * HOUR_US + i * MIN_US for i in range(5)]
    times = [*ordinary[:2], 120 * HOUR_US, *ordinary[2:], None]  # None: a dead letter
    bounded = bound_watermark_times([arrival] * len(times), times, None)
    assert max(t for t in bounded if t is not None) == max(ordinary)
    assert bounded[-1] is None
    assert [bounded[0], bounded[1]] == ordinary[:2]  # ordinary rows keep their own times


def test_rows_let_through_never_fall_under_the_current_threshold() -> None:
    arrival = 5_000 * HOUR_US
    threshold = 100 * HOUR_US
    times = [threshold + HOUR_US, threshold + 3 * MIN_US, threshold + 2 * MIN_US]
    bounded = bound_watermark_times([arrival] * 3, times, threshold)
    # The capped outlier counts for the second-largest time, never for less than the threshold.
    assert bounded == [threshold + 3 * MIN_US, threshold + 3 * MIN_US, threshold + 2 * MIN_US]
    assert all(t is not None and t > threshold for t in bounded)
    assert bound_watermark_times([arrival], [threshold - MIN_US], threshold) == [threshold + 1]


def _commit(checkpoint: Path, batch_id: int) -> None:
    """What Spark writes when a batch has finished: its entry in the commit log."""
    (checkpoint / "commits").mkdir(parents=True, exist_ok=True)
    (checkpoint / "commits" / str(batch_id)).write_text("v1\n{}")


def test_a_replayed_batch_reads_what_the_previous_batch_left(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint"
    store = ThresholdStore(str(checkpoint))
    assert store.read() == {}
    store.write({"max_event_time_ms": 5, "threshold_ms": 1}, batch_id=0)
    assert store.read() == {}  # batch 0 has not committed: batch 0 itself read nothing
    _commit(checkpoint, 0)
    assert store.read() == {"max_event_time_ms": 5, "threshold_ms": 1}

    # Batch 1 writes its state, then crashes before its commit: the replay of batch 1 must
    # read what batch 0 left, exactly as the first attempt did.
    store.write({"max_event_time_ms": 90, "threshold_ms": 80}, batch_id=1)
    assert store.read() == {"max_event_time_ms": 5, "threshold_ms": 1}
    assert store.read(as_of=0) == {"max_event_time_ms": 5, "threshold_ms": 1}
    _commit(checkpoint, 1)
    assert store.read()["threshold_ms"] == 80


def test_a_batch_without_a_file_falls_back_to_the_newest_before_it(tmp_path: Path) -> None:
    store = ThresholdStore(str(tmp_path))
    store.write({"max_event_time_ms": 7, "threshold_ms": 2}, batch_id=3)
    for batch in range(6):
        _commit(tmp_path, batch)
    assert store.read() == store.read(as_of=4) == {"max_event_time_ms": 7, "threshold_ms": 2}
    assert store.read(as_of=2) == {}


def test_old_files_are_pruned(tmp_path: Path) -> None:
    store = ThresholdStore(str(tmp_path))
    for batch in range(0, RETAINED_FILES + 10):
        store.write({"max_event_time_ms": batch, "threshold_ms": batch}, batch_id=batch)
    kept = sorted(int(p.stem) for p in (tmp_path / "_late_threshold").glob("*.json"))
    assert kept[0] == 9 and kept[-1] == RETAINED_FILES + 9


@pytest.mark.integration
def test_s3_store_round_trip(settings: Settings) -> None:
    ensure_bucket(make_client("s3", settings.aws), settings.s3.bucket, settings.aws.region)
    aws = settings.aws
    store = ThresholdStore(
        f"s3a://{settings.s3.bucket}/checkpoints/job",
        aws.endpoint_url,
        aws.region,
        aws.access_key_id,
        aws.secret_access_key,
    )
    assert store.read() == {}
    store.write({"max_event_time_ms": 9, "threshold_ms": 3}, batch_id=0)
    make_client("s3", aws).put_object(
        Bucket=settings.s3.bucket, Key="checkpoints/job/commits/0", Body=b"v1\n{}"
    )
    assert store.last_committed_batch() == 0
    assert store.read() == {"max_event_time_ms": 9, "threshold_ms": 3}
