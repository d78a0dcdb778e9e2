"""Typed configuration: `config/config.yaml` profiles, `${VAR}` expansion, env-var overrides.

`load_config("local")` returns a frozen, validated `Settings`. Any problem (unknown profile,
unknown key, wrong type, bad value) becomes one `ConfigError` naming the field.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.exceptions import ConfigError

CONFIG_PATH = Path(__file__).with_name("config.yaml")
DEFAULT_PROFILE = "local"
PROFILE_ENV = "FRAUD_PROFILE"

# Environment variables that override one field of the chosen profile, after YAML expansion.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "FRAUD_STREAM_NAME": ("kinesis", "stream_name"),
    "FRAUD_SHARD_COUNT": ("kinesis", "shard_count"),
    "FRAUD_REGION": ("aws", "region"),
    "FRAUD_ENDPOINT_URL": ("aws", "endpoint_url"),
    "FRAUD_ALERTS_TABLE": ("dynamodb", "alerts_table"),
    "FRAUD_BUCKET": ("s3", "bucket"),
    "FRAUD_LAKE_PATH": ("processor", "lake_path"),
    "FRAUD_CHECKPOINT_LOCATION": ("processor", "checkpoint_location"),
    "FRAUD_MODEL_PATH": ("model", "path"),
}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AwsSettings(_Section):
    region: str = Field(min_length=1)
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    connect_timeout_s: float = Field(gt=0)
    read_timeout_s: float = Field(gt=0)
    max_attempts: int = Field(ge=1, le=20)

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")


class KinesisSettings(_Section):
    stream_name: str = Field(pattern=r"^[a-zA-Z0-9_.-]{1,128}$")
    shard_count: int = Field(ge=1, le=500)


class DynamoDbSettings(_Section):
    alerts_table: str = Field(pattern=r"^[a-zA-Z0-9_.-]{3,255}$")
    alert_ttl_days: int = Field(default=90, ge=1)  # the table's TTL attribute `expires_at`


class S3Settings(_Section):
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class LocalAwsSettings(_Section):
    host: str
    port: int = Field(ge=1, le=65535)
    state_dir: str


class ProducerSettings(_Section):
    batch_size: int = Field(ge=1, le=500)
    rate: float = Field(ge=0)
    fraud_rate: float = Field(ge=0, le=1)
    anomaly_rate: float = Field(ge=0, le=1)
    network: Literal["excellent", "good", "normal", "poor", "terrible"]
    seed: int
    failed_records_path: str
    stats_interval_s: float = Field(gt=0)
    api_host: str
    api_port: int = Field(ge=1, le=65535)


class ProcessorSettings(_Section):
    starting_position: Literal["TRIM_HORIZON", "LATEST"]
    trigger_interval: str = Field(pattern=r"^\d+(\.\d+)?\s*(milliseconds?|seconds?|minutes?)$")
    max_records_per_shard: int = Field(ge=1, le=10000)
    shuffle_partitions: int = Field(ge=1)
    watermark: str = Field(pattern=r"^\d+\s*(seconds?|minutes?|hours?|days?)$")
    lake_path: str
    checkpoint_location: str
    metrics_port: int = Field(ge=0, le=65535)
    tokenization_key_env: str
    # A shard with nothing newer than this (arrival time) stops holding the watermark back.
    idle_shard_timeout: str = Field(
        default="1 minute", pattern=r"^\d+\s*(seconds?|minutes?|hours?|days?)$"
    )
    # How long (event time) a transaction id is remembered for exact dedupe.
    dedupe_retention: str = Field(
        default="35 days", pattern=r"^\d+\s*(seconds?|minutes?|hours?|days?)$"
    )
    # Options of the JVM the job starts itself (not one spark-submit started): the driver's,
    # which in local mode runs the executors too. Each must start with "-".
    driver_java_options: str = Field(default="", pattern=r"^\s*(-\S+\s*)*$")


class ModelSettings(_Section):
    path: str
    # A shadow model scored beside `path` on every transaction: its score and version go to the
    # lake (challenger_score, challenger_version); it never decides or alerts.
    challenger_path: str | None = None
    threshold: float | None = Field(default=None, ge=0, le=1)
    review_band: float = Field(gt=0, le=1)
    scorer: Literal["local", "sagemaker"]
    # Native threads (OpenMP, BLAS) a local model may score a batch with; null: one per core.
    # The job's driver shares its cores with Spark and the source (docs/decisions/0041).
    threads: int | None = Field(default=1, ge=1)
    sagemaker_endpoint: str | None = None
    sagemaker_timeout_s: float = Field(default=2.0, gt=0)
    sagemaker_max_attempts: int = Field(default=3, ge=1, le=10)
    breaker_failures: int = Field(default=3, ge=1)
    breaker_cooldown_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _endpoint_for_sagemaker(self) -> ModelSettings:
        if self.scorer == "sagemaker" and not self.sagemaker_endpoint:
            raise ValueError("sagemaker_endpoint is required when scorer is 'sagemaker'")
        return self


class Settings(_Section):
    """The whole configuration of one profile."""

    profile: str
    aws: AwsSettings
    kinesis: KinesisSettings
    dynamodb: DynamoDbSettings
    s3: S3Settings
    local_aws: LocalAwsSettings
    producer: ProducerSettings
    processor: ProcessorSettings
    model: ModelSettings

    def with_overrides(self, **sections: Mapping[str, Any]) -> Settings:
        """A copy with some fields replaced, validated again: `with_overrides(kinesis={...})`."""
        data = self.model_dump()
        for section, values in sections.items():
            if section not in data or not isinstance(data[section], dict):
                raise ConfigError(f"unknown config section {section!r}")
            data[section].update(values)
        return _validate(data, source=f"overrides of profile {self.profile!r}")


def expand_env(value: Any, environ: Mapping[str, str]) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string of a YAML tree."""
    if isinstance(value, dict):
        return {key: expand_env(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [expand_env(item, environ) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} is referenced in the config but not set")

    expanded = _VAR.sub(substitute, value)
    # A whole-value placeholder may stand for a number or null: let YAML type it.
    return yaml.safe_load(expanded) if expanded != value and _VAR.fullmatch(value) else expanded


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _validate(data: dict[str, Any], source: str) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid config field {field!r} in {source}: {problems}") from exc


def load_config(
    profile: str | None = None,
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load one profile: defaults, deep-merged profile, `${VAR}` expansion, env overrides."""
    env = os.environ if environ is None else environ
    profile = profile or env.get(PROFILE_ENV) or DEFAULT_PROFILE
    config_path = Path(path) if path is not None else CONFIG_PATH
    try:
        raw = yaml.safe_load(config_path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {config_path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {config_path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or "profiles" not in raw:
        raise ConfigError(f"config file {config_path} must have a 'profiles' mapping")

    profiles = raw["profiles"] or {}
    if profile not in profiles:
        raise ConfigError(
            f"unknown profile {profile!r} (option --profile); choose one of {sorted(profiles)}"
        )
    data = _deep_merge(raw.get("defaults") or {}, profiles[profile] or {})
    data = expand_env(data, env)
    for var, (section, field) in ENV_OVERRIDES.items():
        if var in env:
            data.setdefault(section, {})[field] = env[var]
    data["profile"] = profile
    return _validate(data, source=f"profile {profile!r} of {config_path}")
