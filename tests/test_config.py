"""Typed configuration: profiles, deep merge, ${VAR} expansion, env overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.exceptions import ConfigError
from config.settings import load_config


def test_local_profile_has_the_documented_defaults() -> None:
    settings = load_config("local", environ={})
    assert settings.profile == "local"
    assert settings.aws.region == "us-east-1"
    assert settings.aws.endpoint_url == "http://127.0.0.1:4566"
    assert settings.kinesis.stream_name == "fraud-transactions"
    assert settings.dynamodb.alerts_table == "fraud-alerts"
    assert settings.s3.bucket == "fraud-lake"
    assert settings.local_aws.port == 4566
    assert settings.processor.lake_path == "data/lake"
    assert settings.processor.checkpoint_location == "data/checkpoints"


def test_profile_is_deep_merged_over_defaults() -> None:
    aws = load_config("aws", environ={})
    assert aws.aws.endpoint_url is None  # real AWS: no endpoint override
    assert aws.processor.lake_path == "s3a://fraud-lake/lake"
    # Fields the profile does not name keep the defaults.
    assert aws.processor.watermark == "10 minutes"
    assert aws.kinesis.shard_count == 4


def test_default_profile_comes_from_environment() -> None:
    assert load_config(environ={"FRAUD_PROFILE": "localstack"}).profile == "localstack"
    assert load_config(environ={}).profile == "local"


def test_environment_overrides_named_fields() -> None:
    settings = load_config(
        "local",
        environ={
            "FRAUD_STREAM_NAME": "other-stream",
            "FRAUD_REGION": "eu-west-1",
            "FRAUD_ENDPOINT_URL": "http://127.0.0.1:9999",
            "FRAUD_ALERTS_TABLE": "other-alerts",
            "FRAUD_BUCKET": "other-bucket",
            "FRAUD_SHARD_COUNT": "8",
        },
    )
    assert settings.kinesis.stream_name == "other-stream"
    assert settings.aws.region == "eu-west-1"
    assert settings.aws.endpoint_url == "http://127.0.0.1:9999"
    assert settings.dynamodb.alerts_table == "other-alerts"
    assert settings.s3.bucket == "other-bucket"
    assert settings.kinesis.shard_count == 8


def test_placeholders_expand_with_defaults_and_types() -> None:
    settings = load_config("local", environ={"FRAUD_LOCAL_AWS_PORT": "4599"})
    assert settings.local_aws.port == 4599
    assert settings.aws.endpoint_url == "http://127.0.0.1:4599"
    aws = load_config("aws", environ={"FRAUD_BUCKET": "bank-lake"})
    assert aws.processor.checkpoint_location == "s3a://bank-lake/checkpoints"


@pytest.mark.parametrize(
    ("environ", "field"),
    [
        ({"FRAUD_SHARD_COUNT": "zero"}, "kinesis.shard_count"),
        ({"FRAUD_ENDPOINT_URL": "not a url"}, "aws.endpoint_url"),
        ({"FRAUD_BUCKET": "Bad_Bucket"}, "s3.bucket"),
        ({"FRAUD_STREAM_NAME": "bad name!"}, "kinesis.stream_name"),
    ],
)
def test_bad_value_is_one_clear_error_naming_the_field(environ: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("local", environ=environ)


def test_unknown_profile_names_the_option() -> None:
    with pytest.raises(ConfigError, match=r"unknown profile 'prod'.*--profile"):
        load_config("prod", environ={})


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    text = (Path(__file__).parent.parent / "config" / "config.yaml").read_text()
    path.write_text(text.replace("    shard_count: 4", "    shard_count: 4\n    shards: 9", 1))
    with pytest.raises(ConfigError, match=r"kinesis\.shards"):
        load_config("local", path=path, environ={})


def test_missing_variable_without_default_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("defaults: {}\nprofiles:\n  x:\n    aws:\n      region: ${NOT_SET_ANYWHERE}\n")
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE"):
        load_config("x", path=path, environ={})


def test_with_overrides_validates_again() -> None:
    settings = load_config("local", environ={})
    changed = settings.with_overrides(kinesis={"shard_count": 2})
    assert changed.kinesis.shard_count == 2
    assert settings.kinesis.shard_count == 4  # frozen original untouched
    with pytest.raises(ConfigError, match=r"kinesis\.shard_count"):
        settings.with_overrides(kinesis={"shard_count": 0})


def test_driver_java_options_are_jvm_flags_or_nothing() -> None:
    settings = load_config("local", environ={})
    assert settings.processor.driver_java_options == "-XX:TieredStopAtLevel=1"
    assert settings.with_overrides(processor={"driver_java_options": ""})
    both = "-XX:TieredStopAtLevel=1  -Xss4m"
    assert settings.with_overrides(processor={"driver_java_options": both})
    with pytest.raises(ConfigError, match=r"processor\.driver_java_options"):
        settings.with_overrides(processor={"driver_java_options": "TieredStopAtLevel=1"})


def test_the_source_and_parse_step_import_without_the_settings_models() -> None:
    # Each Python process Spark starts for the source imports these; pydantic and the settings
    # models cost it ~0.1 s and it never reads them.
    import subprocess
    import sys

    probe = (
        "import sys, processor.kinesis_source.reader, processor.parse; "
        "print(sorted(m for m in ('config.settings', 'pydantic') if m in sys.modules))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert shown == "[]"


def test_the_package_still_offers_its_names() -> None:
    import config

    assert config.load_config is load_config
    assert config.ConfigError is ConfigError
    assert config.Settings.__name__ == "Settings"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        config.nope  # noqa: B018
