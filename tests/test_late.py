"""The late-event threshold: arithmetic and storage beside the checkpoint (local and S3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.aws import make_client
from config.settings import Settings
from processor.late import (
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


def test_local_store_round_trip(tmp_path: Path) -> None:
    store = ThresholdStore(str(tmp_path / "checkpoint"))
    assert store.read() == {}
    store.write({"max_event_time_ms": 5, "threshold_ms": 1})
    assert store.read() == {"max_event_time_ms": 5, "threshold_ms": 1}


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
    store.write({"max_event_time_ms": 9, "threshold_ms": 3})
    assert store.read() == {"max_event_time_ms": 9, "threshold_ms": 3}
