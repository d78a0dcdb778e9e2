"""The lake's daily maintenance (processor/lake_maintenance.py): closed days compacted into big
files, today's left to the job, every row kept, a bad option refused in one line, and the
CronJob's command against a lake on moto's S3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deltalake import DeltaTable

from config.aws import make_client
from config.cli import run_cli
from config.lake import commit_options_for, delta_uri
from config.settings import Settings
from processor.lake_commit import commit_batch
from processor.lake_maintenance import main
from scripts.setup_aws import ensure_bucket
from tests.test_infra_k8s import cronjob_args
from tests.test_lake_commit import WRITER, batch_ids, dead_letters, ids, scored

# scored() spans 2026-03-01 and 2026-03-02; dead letters arrive on 2026-03-01.
TODAY = "2026-03-02"


def _files_by_day(uri: str, column: str, options: dict[str, str] | None = None) -> dict[str, int]:
    actions = DeltaTable(uri, storage_options=options).get_add_actions(flatten=True)
    days = [str(day) for day in actions.column(f"partition.{column}").to_pylist()]
    return {day: days.count(day) for day in sorted(set(days))}


def test_closed_days_are_compacted_and_today_is_left_to_the_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = tmp_path / "lake"
    transactions, letters = str(lake / "transactions"), str(lake / "dead_letters")
    for batch in range(4):
        commit_batch(transactions, scored(batch), "event_date", WRITER, batch)
        commit_batch(letters, dead_letters(batch), "arrival_date", WRITER, batch)
    assert _files_by_day(transactions, "event_date") == {"2026-03-01": 4, TODAY: 4}
    # The dead letters keep removed files no time at all: VACUUM deletes the compacted ones.
    DeltaTable(letters).alter.set_table_properties(
        {"delta.deletedFileRetentionDuration": "interval 0 hours"}
    )

    assert main(["--lake-path", str(lake), "--before", TODAY, "--vacuum"]) == 0

    assert _files_by_day(transactions, "event_date") == {"2026-03-01": 1, TODAY: 4}
    assert _files_by_day(letters, "arrival_date") == {"2026-03-01": 1}
    assert ids(transactions) == batch_ids(0, 1, 2, 3)
    assert len(DeltaTable(letters).to_pyarrow_table()) == 4
    assert DeltaTable(transactions).transaction_version(WRITER) == 3
    reports = {r["table"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert reports["transactions"]["files_removed"] == 4
    assert reports["transactions"]["files_added"] == 1
    # Removed files are younger than the 7-day retention: nothing is deleted yet.
    assert reports["transactions"]["files_vacuumed"] == 0
    assert reports["dead_letters"]["files_vacuumed"] == 4
    assert len(list((lake / "dead_letters").rglob("*.parquet"))) == 1
    assert reports["labels"]["skipped"] == "no table yet"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--before", "yesterday", "argument --before: not an ISO date (YYYY-MM-DD): 'yesterday'"),
        ("--target-mib", "0", "argument --target-mib: must be at least 1, got 0"),
    ],
)
def test_a_bad_option_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    argv = ["--lake-path", str(tmp_path), option, value]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.usefixtures("restore_logging")
def test_the_cronjobs_command_compacts_and_vacuums_a_lake_on_s3(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The manifest's arguments as they are (`--profile aws`, the profile's lake, every day
    before today, `--vacuum`), with the `aws` profile pointed at moto's S3 the way the pod's
    fraud-env points it at the bucket: the S3 commit options, OPTIMIZE and VACUUM's deletes."""
    module, *args = cronjob_args("lake-maintenance-cronjob.yaml")
    assert module == "processor.lake_maintenance" and "--lake-path" not in args
    ensure_bucket(make_client("s3", settings.aws), settings.s3.bucket, settings.aws.region)
    assert settings.aws.endpoint_url
    monkeypatch.setenv("FRAUD_ENDPOINT_URL", settings.aws.endpoint_url)
    monkeypatch.setenv("FRAUD_BUCKET", settings.s3.bucket)
    lake = f"s3a://{settings.s3.bucket}/lake"  # the aws profile's processor.lake_path
    transactions, letters = delta_uri(lake, "transactions"), delta_uri(lake, "dead_letters")
    options = commit_options_for(transactions, settings.aws)
    for batch in range(3):
        commit_batch(transactions, scored(batch), "event_date", WRITER, batch, options)
        commit_batch(letters, dead_letters(batch), "arrival_date", WRITER, batch, options)
    DeltaTable(letters, storage_options=options).alter.set_table_properties(
        {"delta.deletedFileRetentionDuration": "interval 0 hours"}
    )

    assert main(args) == 0

    # scored() spans two days, both before today: each is one file now.
    assert _files_by_day(transactions, "event_date", options) == {"2026-03-01": 1, TODAY: 1}
    assert ids(transactions, options) == batch_ids(0, 1, 2)
    assert DeltaTable(transactions, storage_options=options).transaction_version(WRITER) == 2
    reports = {r["table"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert reports["transactions"]["uri"] == transactions
    assert reports["dead_letters"]["files_vacuumed"] == 3
    listing = make_client("s3", settings.aws).list_objects_v2(
        Bucket=settings.s3.bucket, Prefix="lake/dead_letters/arrival_date="
    )
    assert len([item for item in listing["Contents"] if item["Key"].endswith(".parquet")]) == 1
