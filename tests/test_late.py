"""The late-event threshold: arithmetic and storage beside the checkpoint (local and S3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.aws import make_client
from config.settings import Settings
from processor.late import ThresholdStore, advance, delay_ms
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
