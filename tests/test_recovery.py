"""Recovery without loss: a checkpoint reset and an alert-table outage (in process, Spark local)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from config.aws import make_client
from config.exceptions import DeliveryError
from config.settings import Settings
from processor import lake_commit
from processor.alerts import AlertWriter, scan_alerts
from processor.checkpoint_files import CheckpointFiles
from processor.engine import state as state_module
from processor.job import ingest, lake_writer, resume_options, write
from processor.scoring import frame_scorer
from processor.sinks import LakeWriter, table_path
from scripts.setup_aws import ensure_alerts_table
from tests.test_processor_job import expected_transactions, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run(spark: Any, settings: Settings, writer: LakeWriter, extra: dict[str, str]) -> Any:
    query = write(ingest(spark, settings, extra), settings, writer, True)
    try:
        query.awaitTermination()
    except Exception:  # noqa: BLE001 - the caller inspects query.exception()
        pass
    return query


def lake_ids(spark: Any, settings: Settings) -> list[str]:
    rows = spark.read.format("delta").load(table_path(settings.processor.lake_path, "transactions"))
    return [row.transaction_id for row in rows.select("transaction_id").collect()]


def test_checkpoint_reset_resumes_where_the_lake_ends(spark: Any, settings: Settings) -> None:
    first = produce(settings, 300, seed=101, anomaly_rate=0.0)
    query = run(spark, settings, lake_writer(settings), {})
    assert query.exception() is None
    assert sorted(lake_ids(spark, settings)) == sorted(expected_transactions(first))

    # The way out of a crash loop: throw the checkpoint away, keep the lake.
    shutil.rmtree(settings.processor.checkpoint_location)
    second = produce(settings, 200, seed=202, anomaly_rate=0.0)
    extra = resume_options(spark, settings)
    assert set(extra) == {"startingSequenceNumbers"}
    query = run(spark, settings, lake_writer(settings), extra)
    assert query.exception() is None

    # Batch 0 of the new checkpoint was written (a writer id from the path would have made
    # Delta skip it as already committed), and nothing of the first run was read again.
    ids = lake_ids(spark, settings)
    assert len(ids) == len(set(ids))
    assert set(ids) == expected_transactions(first) | expected_transactions(second)
    # With progress in the checkpoint the option is ignored: the checkpoint's offsets win.
    assert resume_options(spark, settings) == {}


class FailingOnce:
    """An alert sink whose table is unreachable for its first batch."""

    def __init__(self, inner: AlertWriter) -> None:
        self.inner = inner
        self.failed = False

    def __call__(self, transactions: Any, batch_id: int, columns: Any = None) -> None:
        if not self.failed:
            self.failed = True
            raise DeliveryError("alerts table unreachable (injected)")
        self.inner(transactions, batch_id, columns)


def test_alert_outage_never_leaves_an_alert_row_without_its_alert(
    spark: Any, settings: Settings, trained_model: Path
) -> None:
    settings = settings.with_overrides(model={"path": str(trained_model)})
    ensure_alerts_table(make_client("dynamodb", settings.aws), settings.dynamodb.alerts_table)
    produce(settings, 1_500, seed=31, fraud_rate=0.05, anomaly_rate=0.0, num_customers=200)
    alerts = AlertWriter(settings)
    failing = lake_writer(settings, frame_scorer(settings), alerts)
    failing.transaction_sinks = [FailingOnce(alerts)]
    query = run(spark, settings, failing, {})
    assert query.exception() is not None  # the batch failed and will be replayed
    transactions = table_path(settings.processor.lake_path, "transactions")
    # Nothing reached the lake ahead of its alerts.
    assert not Path(transactions).exists() or not any(
        row.decision == "ALERT" for row in spark.read.format("delta").load(transactions).collect()
    )

    query = run(spark, settings, lake_writer(settings, frame_scorer(settings), alerts), {})
    assert query.exception() is None
    rows = spark.read.format("delta").load(transactions)
    alerted = sorted(r.transaction_id for r in rows.where("decision = 'ALERT'").collect())
    assert alerted, "the model should alert on some of the fraud"
    assert sorted(i["transaction_id"]["S"] for i in scan_alerts(settings)) == alerted


class CrashAt:
    """Fails batch `batch_id` once, right after its step `step` (a fault hook).

    With `files` (the engine's checkpoint files) it first waits for the batch's changelog,
    which a forked child writes while the sinks run, and records whether it landed: the crash
    then leaves a changelog of a batch the lake does not hold yet."""

    def __init__(self, step: str, batch_id: int) -> None:
        self.step, self.batch_id, self.fired = step, batch_id, False
        self.files: CheckpointFiles | None = None
        self.changelog_landed = False

    def __call__(self, step: str, batch_id: int) -> None:
        if (step, batch_id) == (self.step, self.batch_id) and not self.fired:
            self.fired = True
            if self.files is not None:
                deadline = time.monotonic() + 60
                name = f"engine_state/{batch_id}.changes"
                while not self.files.exists(name) and time.monotonic() < deadline:
                    time.sleep(0.05)
                self.changelog_landed = self.files.exists(name)
            raise RuntimeError(f"injected crash after {step} of batch {batch_id}")


def _lake(spark: Any, settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the lake as sorted rows (all columns)."""
    out = {}
    for table in ("transactions", "auth_events", "dead_letters"):
        path = table_path(settings.processor.lake_path, table)
        if Path(path).exists():
            rows = spark.read.format("delta").load(path).collect()
            out[table] = sorted(tuple(str(v) for v in row) for row in rows)
    return out


def _alerts(settings: Settings) -> list[tuple[str, ...]]:
    kept = ("transaction_id", "fraud_score", "decision", "reason_codes", "batch_id")
    return sorted(tuple(str(item[name]) for name in kept) for item in scan_alerts(settings))


def test_a_batch_replayed_after_a_crash_at_any_step_decides_as_before(
    spark: Any,
    settings: Settings,
    trained_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every changelog written by a forked child while the sinks run, as a big batch's is, and
    # the tables compacted after every commit (ADR 0028): the replays run beside compactions.
    monkeypatch.setattr(state_module, "BACKGROUND_CHANGELOG_EVENTS", 1)
    monkeypatch.setattr(lake_commit, "COMPACT_INTERVAL", 1)
    base = settings.with_overrides(
        model={"path": str(trained_model)}, processor={"max_records_per_shard": 150}
    )
    produce(base, 900, seed=57, fraud_rate=0.05, anomaly_rate=0.03, num_customers=150)
    scorer = frame_scorer(base)

    def variant(name: str) -> Settings:
        run = base.with_overrides(
            dynamodb={"alerts_table": f"{base.dynamodb.alerts_table}-{name}"},
            processor={
                "lake_path": str(tmp_path / name / "lake"),
                "checkpoint_location": str(tmp_path / name / "checkpoint"),
            },
        )
        ensure_alerts_table(make_client("dynamodb", run.aws), run.dynamodb.alerts_table)
        return run

    def drain(run: Settings, hook: CrashAt | None) -> None:
        writer = lake_writer(run, scorer, AlertWriter(run))
        writer.after_step = hook
        if hook is not None and hook.step == "alerts":
            hook.files = writer.engine.store.files
        query = _run(spark, run, writer)
        if hook is not None:
            assert query.exception() is not None and hook.fired
            assert hook.files is None or hook.changelog_landed
            writer = lake_writer(run, scorer, AlertWriter(run))  # a restarted driver
            query = _run(spark, run, writer)
        writer.wait_for_compaction()  # as the job does before it exits
        assert query.exception() is None

    clean = variant("clean")
    drain(clean, None)
    expected_lake, expected_alerts = _lake(spark, clean), _alerts(clean)
    history = DeltaTable(table_path(clean.processor.lake_path, "transactions")).history()
    assert "OPTIMIZE" in [commit["operation"] for commit in history]
    assert expected_alerts and len(expected_lake["transactions"]) > 300
    for step in ("alerts", "delta", "state"):
        crashed = variant(step)
        drain(crashed, CrashAt(step, batch_id=1))
        assert _lake(spark, crashed) == expected_lake, step
        assert _alerts(crashed) == expected_alerts, step


def _run(spark: Any, settings: Settings, writer: LakeWriter) -> Any:
    return run(spark, settings, writer, {})
