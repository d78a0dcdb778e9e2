"""The one CLI layer (config/cli.py) on every entry point: exit codes, one-line errors, help,
JSON logs, loopback binds, console scripts, and the local profile's development key.

Entry points run as subprocesses against a closed loopback port (the `local` profile's endpoint
is http://127.0.0.1:$FRAUD_LOCAL_AWS_PORT), so nothing here needs moto, Spark or a JVM.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import logging
import os
import stat
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError
from py4j import protocol as proto
from py4j.java_gateway import GatewayClient
from py4j.protocol import Py4JNetworkError

import config.cli as cli
from config.cli import configure_logging, probe_endpoint, run_cli
from config.exceptions import AwsSetupError, ConfigError, ModelError
from config.settings import load_config
from processor.dev_token_key import ensure_token_key
from scripts.local_aws import free_port

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 60
EMULATOR_HINT = "python -m scripts.local_aws start"
TEST_KEY = "cli-layer-test-key-0123456789"


def run_module(
    *args: str, port: int | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m <args>` with a clean environment whose local endpoint is a closed port."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(ROOT),
        "FRAUD_LOCAL_AWS_PORT": str(port or free_port()),
    }
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**base, **(env or {})},
        check=False,
        timeout=TIMEOUT_S,
    )


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    lines = stderr_lines(result)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- closed port: one line, exit 2, the emulator hint ---------------------------------------

DEPLOY = [
    "ml_model.sagemaker.deploy",
    "--endpoint-name", "fraud-scorer",
    "--role-arn", "arn:aws:iam::123456789012:role/sagemaker",
    "--image-uri", "sklearn:1.9",
]  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        ["producer.main", "--num-transactions", "1"],
        ["producer.main", "test"],
        ["scripts.setup_aws"],
        ["processor.job", "--metrics-port", "0"],  # probed before Spark starts a JVM
        ["ml_model.train", "--output", "s3://fraud-lake/models/cli-test"],  # before training
        DEPLOY,
        ["processor.lake_maintenance", "--lake-path", "s3a://fraud-lake/lake"],
    ],
    ids=[
        "producer",
        "producer-test",
        "setup-aws",
        "processor-job",
        "train-to-s3",
        "deploy",
        "lake-maintenance",
    ],
)
def test_closed_endpoint_fails_in_one_line_with_a_hint(args: list[str]) -> None:
    port = free_port()
    result = run_module(*args, port=port, env={"CARD_TOKEN_KEY": TEST_KEY})
    line = assert_one_line_exit_2(result)
    assert line.startswith("error: cannot reach the AWS endpoint")
    assert f"127.0.0.1:{port}" in line
    assert EMULATOR_HINT in line


def test_closed_endpoint_error_is_a_json_line_under_log_format_json() -> None:
    result = run_module("scripts.setup_aws", "--log-format", "json")
    record = json.loads(assert_one_line_exit_2(result))
    assert record["level"] == "ERROR"
    assert {"time", "level", "logger", "message"} <= set(record)
    assert EMULATOR_HINT in record["message"]


def test_the_endpoint_probe_is_quiet_when_something_listens() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        aws = load_config("local").aws.model_copy(
            update={"endpoint_url": f"http://127.0.0.1:{port}"}
        )
        probe_endpoint(aws)
    with pytest.raises(AwsSetupError, match="cannot reach the AWS endpoint"):
        probe_endpoint(aws)
    probe_endpoint(aws.model_copy(update={"endpoint_url": None}))  # real AWS: not probed


# -- bad options and bad configuration ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["ml_model.train", "--threshold-policy", "recall=2"], "--threshold-policy"),
        (["ml_model.train", "--threshold-policy", "precision=2"], "--threshold-policy"),
        (["processor.job", "--shuffle-partitions", "many"], "--shuffle-partitions"),
        (["producer.main", "--rate", "-1"], "--rate"),
        (["producer.main", "serve", "--port", "http"], "--port"),
        (["scripts.setup_aws", "--shards", "x"], "--shards"),
        (["scripts.local_aws", "restart"], "command"),
        (["ml_model.sagemaker.serve"], "--model-dir"),
        (["scripts.setup_aws", "--log-format", "xml"], "--log-format"),
        (["processor.lake_maintenance", "--before", "monday"], "--before"),
    ],
)
def test_bad_option_is_a_usage_error_naming_it(args: list[str], option: str) -> None:
    result = run_module(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "RuntimeWarning" not in result.stderr  # serve: no double import by runpy
    last = stderr_lines(result)[-1]
    assert ": error: argument " in last or ": error: the following arguments" in last
    assert option in last


@pytest.mark.parametrize(
    "args",
    [
        ["producer.main", "--num-transactions", "1"],
        ["processor.job"],
        ["ml_model.train"],
        ["scripts.setup_aws"],
        ["scripts.local_aws", "status"],
    ],
)
def test_unknown_profile_is_one_line_naming_the_option(args: list[str]) -> None:
    line = assert_one_line_exit_2(run_module(*args, "--profile", "nope"))
    assert "unknown profile 'nope' (option --profile)" in line


def test_serve_without_a_model_is_one_line(tmp_path: Path) -> None:
    line = assert_one_line_exit_2(
        run_module("ml_model.sagemaker.serve", "--model-dir", str(tmp_path))
    )
    assert "model_card.json" in line


def test_job_on_a_non_local_profile_without_the_key_is_one_line() -> None:
    # `aws` has no endpoint to probe: the missing key is the first thing the job finds.
    line = assert_one_line_exit_2(run_module("processor.job", "--profile", "aws"))
    assert "environment variable CARD_TOKEN_KEY" in line


def test_job_on_local_without_the_key_and_a_closed_port_is_one_line(tmp_path: Path) -> None:
    """The endpoint is probed before a development key is made (and before Spark starts)."""
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "processor.job", "--metrics-port", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(ROOT),
            "FRAUD_LOCAL_AWS_PORT": str(port),
        },
        check=False,
        timeout=TIMEOUT_S,
    )
    line = assert_one_line_exit_2(result)
    assert EMULATOR_HINT in line
    assert not (tmp_path / "data").exists()  # the probe fails before any key is made


# -- run_cli itself ------------------------------------------------------------------------


def raising(exc: BaseException) -> Callable[[list[str] | None], int]:
    def main(argv: list[str] | None) -> int:
        raise exc

    return main


def test_ctrl_c_exits_130_quietly(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(raising(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == ""


def test_botocore_errors_are_one_line_with_a_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_active_profile", "local")
    monkeypatch.setattr(cli, "_json_logging", False)
    error = EndpointConnectionError(endpoint_url="http://127.0.0.1:9/")
    assert run_cli(raising(error)) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: cannot reach AWS") and EMULATOR_HINT in line

    monkeypatch.setattr(cli, "_active_profile", "aws")
    assert run_cli(raising(NoCredentialsError())) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "Unable to locate credentials" in line and "AWS_PROFILE" in line


def test_a_wrapped_connection_error_gets_the_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_active_profile", "localstack")
    monkeypatch.setattr(cli, "_json_logging", False)

    def main(argv: list[str] | None) -> int:
        try:
            raise EndpointConnectionError(endpoint_url="http://localhost:4566/")
        except EndpointConnectionError as exc:
            raise AwsSetupError("deploying endpoint 'x' failed:\n  details") from exc

    assert run_cli(main) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "error: deploying endpoint 'x' failed: details "
        "(hint: is LocalStack up? `docker compose up -d localstack`)"
    )


def test_a_bug_still_shows_its_traceback() -> None:
    with pytest.raises(ZeroDivisionError):
        run_cli(raising(ZeroDivisionError("bug")))


def test_exit_code_of_main_is_passed_through() -> None:
    assert run_cli(lambda argv: 1) == 1
    assert run_cli(lambda argv: None) == 0


# -- logging ------------------------------------------------------------------------------


@pytest.mark.usefixtures("restore_logging")
def test_json_log_lines_parse() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream=stream)
    log = logging.getLogger("fraud.test")
    log.info("plain %s", "message")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    log.debug('quotes " and\nnewlines')
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(records) == 3
    assert records[0] == {
        "time": records[0]["time"],
        "level": "INFO",
        "logger": "fraud.test",
        "message": "plain message",
    }
    assert records[0]["time"].endswith("+00:00")
    assert records[1]["level"] == "ERROR"
    assert "ValueError: boom" in records[1]["exception"]
    assert records[2]["message"] == 'quotes " and\nnewlines'


@pytest.mark.usefixtures("restore_logging")
def test_text_logging_and_level() -> None:
    stream = io.StringIO()
    configure_logging("WARNING", "text", stream=stream)
    logging.getLogger("fraud.test").info("hidden")
    logging.getLogger("fraud.test").warning("shown")
    assert stream.getvalue().strip().endswith("WARNING fraud.test: shown")
    assert "hidden" not in stream.getvalue()


class _ResettingConnection:
    """A py4j connection whose first `failing` sends meet a reset peer (a dropped connection)."""

    failing = 0
    sends = 0

    def send_command(self, command: str) -> str:
        _ResettingConnection.sends += 1
        if _ResettingConnection.sends <= _ResettingConnection.failing:
            raise Py4JNetworkError(
                "Error while sending", ConnectionResetError(104, "reset"), proto.ERROR_ON_SEND
            )
        return proto.SUCCESS + proto.VOID_TYPE

    def close(self, reset: bool = False) -> None:
        pass


def _gateway_client(failing: int) -> GatewayClient:
    client = GatewayClient()
    client._get_connection = _ResettingConnection  # type: ignore[method-assign]
    client._give_back_connection = lambda connection: None  # type: ignore[method-assign]
    _ResettingConnection.failing, _ResettingConnection.sends = failing, 0
    return client


@pytest.mark.usefixtures("restore_logging")
def test_py4j_retried_sends_stay_out_of_the_log_and_its_failures_do_not() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text", stream=stream)
    garbage_collect = proto.MEMORY_COMMAND_NAME + proto.MEMORY_DEL_SUBCOMMAND_NAME + "o1\ne\n"
    # py4j's own retry: the reset send is logged at INFO on the root logger, then re-sent.
    done = proto.SUCCESS + proto.VOID_TYPE
    assert _gateway_client(failing=1).send_command(garbage_collect) == done
    assert _ResettingConnection.sends == 2
    assert stream.getvalue() == ""
    logging.getLogger("fraud.test").info("ours")
    assert stream.getvalue().strip().endswith("INFO fraud.test: ours")
    # When the re-send fails too, py4j logs an error: it stays, with its traceback.
    assert _gateway_client(failing=2).send_command(garbage_collect) == proto.ERROR
    assert "ERROR root: Exception while sending command." in stream.getvalue()
    assert "Py4JNetworkError: Error while sending" in stream.getvalue()


# -- help: every flag documented, defaults shown --------------------------------------------


def parsers() -> dict[str, argparse.ArgumentParser]:
    from ml_model.sagemaker import deploy, serve
    from ml_model.train import build_parser as train_parser
    from processor.cli import build_parser as processor_parser
    from producer.cli import build_send_parser, build_serve_parser, build_test_parser
    from scripts import (
        bench_baseline,
        bench_engine,
        bench_features,
        bench_parse,
        demo,
        local_aws,
        setup_aws,
    )

    return {
        "producer": build_send_parser(),
        "producer test": build_test_parser(),
        "producer serve": build_serve_parser(),
        "processor.job": processor_parser(),
        "ml_model.train": train_parser(),
        "ml_model.sagemaker.serve": serve.build_parser(),
        "ml_model.sagemaker.deploy": deploy.build_parser(),
        "scripts.setup_aws": setup_aws.build_parser(),
        "scripts.local_aws": local_aws.build_parser(),
        "scripts.demo": demo.build_parser(),
        "scripts.bench_baseline": bench_baseline.main_parser(),
        "scripts.bench_engine": bench_engine.build_parser(),
        "scripts.bench_features": bench_features.build_parser(),
        "scripts.bench_parse": bench_parse.build_parser(),
    }


@pytest.mark.parametrize("name", list(parsers()))
def test_every_flag_has_help_and_defaults_show(name: str) -> None:
    parser = parsers()[name]
    for action in parser._actions:
        assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
    text = parser.format_help()
    assert "--log-format {text,json}" in text
    assert "(default: text)" in text
    assert "(default: INFO)" in text


def test_help_runs_and_shows_defaults() -> None:
    result = run_module("processor.job", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines at the terminal width
    assert "--metrics-host METRICS_HOST address the Prometheus endpoint binds" in text
    assert "(default: 127.0.0.1)" in text
    result = run_module("ml_model.sagemaker.serve", "--help")
    assert result.returncode == 0 and result.stderr == ""  # no runpy warning
    assert "--port PORT port; 0 picks a free one (default: 8080)" in " ".join(result.stdout.split())


def test_servers_bind_loopback_by_default() -> None:
    from ml_model.sagemaker.serve import parse_args as serve_args
    from processor.cli import parse_args as processor_args
    from producer.cli import build_serve_parser

    assert processor_args([]).metrics_host == "127.0.0.1"
    assert serve_args(["--model-dir", "m"]).host == "127.0.0.1"
    assert build_serve_parser().parse_args([]).host is None  # the profile's api_host, below
    for profile in ("local", "localstack", "aws"):
        assert load_config(profile, environ={}).producer.api_host == "127.0.0.1"


# -- console scripts ----------------------------------------------------------------------


def test_console_scripts_point_at_callables() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {
        "fraud-producer",
        "fraud-processor",
        "fraud-train",
        "fraud-setup-aws",
        "fraud-local-aws",
        "fraud-serve",
        "fraud-console",
        "fraud-import",
    }
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), target


# -- the local profile's development key ----------------------------------------------------


def test_local_profile_generates_a_private_key_once_and_reuses_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_config("local", environ={})
    path = tmp_path / "data" / "dev-card-token.key"
    first: dict[str, str] = {}
    with caplog.at_level(logging.WARNING, logger="processor.dev_token_key"):
        assert ensure_token_key(settings, first, path) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first["CARD_TOKEN_KEY"]) >= 32
    assert any("CARD_TOKEN_KEY is not set" in r.getMessage() for r in caplog.records)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left

    second: dict[str, str] = {}
    assert ensure_token_key(settings, second, path) == path
    assert second == first  # same key, so the same tokens as the run before


def test_a_set_key_wins_and_no_file_is_written(tmp_path: Path) -> None:
    path = tmp_path / "dev.key"
    environ = {"CARD_TOKEN_KEY": TEST_KEY}
    assert ensure_token_key(load_config("local", environ={}), environ, path) is None
    assert environ == {"CARD_TOKEN_KEY": TEST_KEY}
    assert not path.exists()


@pytest.mark.parametrize("profile", ["localstack", "aws"])
def test_other_profiles_still_refuse_to_start_without_the_key(profile: str, tmp_path: Path) -> None:
    path = tmp_path / "dev.key"
    settings = load_config(profile, environ={})
    with pytest.raises(ConfigError, match="environment variable CARD_TOKEN_KEY"):
        ensure_token_key(settings, {}, path)
    assert not path.exists()
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        ensure_token_key(settings, {"CARD_TOKEN_KEY": "short"}, path)


def test_a_readable_dev_key_file_is_made_private_and_a_short_one_refused(tmp_path: Path) -> None:
    settings = load_config("local", environ={})
    path = tmp_path / "dev.key"
    path.write_text(TEST_KEY + "\n")
    path.chmod(0o644)
    environ: dict[str, str] = {}
    ensure_token_key(settings, environ, path)
    assert environ["CARD_TOKEN_KEY"] == TEST_KEY
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("short")
    with pytest.raises(ConfigError, match="delete the file"):
        ensure_token_key(settings, {}, path)


class _SparkNotNeeded(Exception):
    pass


@pytest.mark.usefixtures("restore_logging")
def test_the_job_resolves_the_dev_key_before_building_spark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m processor.job --profile local` without CARD_TOKEN_KEY: the key is there
    (file and environment, which the Python workers inherit) by the time Spark is built."""
    import processor.job as job

    seen: dict[str, str | None] = {}

    def build_spark(settings: object) -> None:
        seen["key"] = os.environ.get("CARD_TOKEN_KEY")
        raise _SparkNotNeeded

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CARD_TOKEN_KEY", raising=False)
    monkeypatch.setattr(job, "probe_endpoint", lambda aws: None)
    monkeypatch.setattr(job, "build_spark", build_spark)
    with pytest.raises(_SparkNotNeeded):
        job.main(["--profile", "local", "--available-now", "--metrics-port", "0"])
    path = tmp_path / "data" / "dev-card-token.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert seen["key"] == path.read_text().strip()


class _Session:
    """Stands in for the SparkSession `main` builds: it only sets a log level and stops."""

    def __init__(self) -> None:
        self.stopped = False
        self.sparkContext = self

    def setLogLevel(self, level: str) -> None:  # SparkContext's method name
        pass

    def stop(self) -> None:
        self.stopped = True


@pytest.mark.usefixtures("restore_logging")
def test_the_job_loads_its_model_while_spark_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model loads beside the JVM's start; a model that does not fit still stops the job
    before the query, and the session with it."""
    import processor.job as job

    loading = threading.Event()
    session = _Session()

    def frame_scorer(settings: object) -> None:
        loading.set()
        raise ModelError("the model needs merchant_risk_score, which this pipeline lacks")

    def build_spark(settings: object) -> _Session:
        assert loading.wait(timeout=10), "the model was not loading while Spark started"
        return session

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CARD_TOKEN_KEY", "a test key of thirty-two characters")
    monkeypatch.setattr(job, "probe_endpoint", lambda aws: None)
    monkeypatch.setattr(job, "frame_scorer", frame_scorer)
    monkeypatch.setattr(job, "build_spark", build_spark)
    with pytest.raises(ModelError, match="merchant_risk_score"):
        job.main(["--profile", "local", "--available-now", "--metrics-port", "0"])
    assert session.stopped
