"""Python workers started while the query starts (processor/python_workers.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from processor.python_workers import start_python_workers


def test_workers_are_started_by_a_job_of_one_task_per_core(
    spark: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = spark.sparkContext.statusTracker()
    jobs_before = set(tracker.getJobIdsForGroup())
    caplog.set_level(logging.WARNING, logger="processor.python_workers")
    start_python_workers(spark).join(timeout=120)
    new_jobs = set(tracker.getJobIdsForGroup()) - jobs_before
    assert len(new_jobs) == 1
    info = tracker.getJobInfo(new_jobs.pop())
    assert info is not None and info.status == "SUCCEEDED"
    stage = tracker.getStageInfo(info.stageIds[-1])
    assert stage is not None and stage.numCompletedTasks == spark.sparkContext.defaultParallelism
    assert "not started" not in caplog.text


def test_a_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A head start only: whatever goes wrong, the query starts and its tasks start workers."""

    class Broken:
        class sparkContext:  # noqa: N801 - mimics SparkSession.sparkContext
            defaultParallelism = 2

        def range(self, *_: Any, **__: Any) -> Any:
            raise RuntimeError("session stopped")

    caplog.set_level(logging.WARNING, logger="processor.python_workers")
    start_python_workers(Broken()).join(timeout=10)  # type: ignore[arg-type]
    assert "not started ahead of the first batch: session stopped" in caplog.text
