"""docker-compose.yml (LocalStack + setup + producer + processor) agrees with config/.

Docker is not available here, so the file is checked statically: services, ports, commands and
environment, with each container's environment fed to `load_config` as the container would.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import Settings, load_config

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("setup", "producer", "processor")

Service = dict[str, Any]


@pytest.fixture(scope="module")
def services() -> dict[str, Service]:
    compose = yaml.safe_load(COMPOSE.read_text())
    found: dict[str, Service] = compose["services"]
    return found


def _environment(service: Service) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "write environment as a mapping"
    return {key: str(value) for key, value in env.items()}


def _settings(service: Service) -> Settings:
    """The configuration the container loads: its profile and environment, no compose secrets."""
    env = {k: v for k, v in _environment(service).items() if not v.startswith("${")}
    profile = service["command"][service["command"].index("--profile") + 1]
    assert env["FRAUD_PROFILE"] == profile
    return load_config(profile, environ=env)


def _ports(service: Service) -> dict[int, tuple[str, int]]:
    """container port -> (host address, host port)."""
    mapped = {}
    for spec in service.get("ports", []):
        host, host_port, container_port = spec.split(":")
        mapped[int(container_port)] = (host, int(host_port))
    return mapped


def test_services(services: dict[str, Service]) -> None:
    assert set(services) == {"localstack", *APP_SERVICES}


def test_localstack_serves_what_the_pipeline_uses(services: dict[str, Service]) -> None:
    localstack = services["localstack"]
    assert re.fullmatch(r"localstack/localstack:\d+\.\d+\.\d+", localstack["image"])
    env = _environment(localstack)
    assert set(env["SERVICES"].split(",")) == {"kinesis", "dynamodb", "s3"}
    assert env["AWS_DEFAULT_REGION"] == load_config("localstack", environ={}).aws.region
    assert "_localstack/health" in " ".join(localstack["healthcheck"]["test"])
    # From the host, the localstack profile's default endpoint reaches the published port.
    host, host_port = _ports(localstack)[4566]
    assert host == "127.0.0.1"
    assert load_config("localstack", environ={}).aws.endpoint_url == f"http://localhost:{host_port}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_containers_use_the_image_and_reach_localstack(
    services: dict[str, Service], name: str
) -> None:
    service = services[name]
    assert service["build"]["context"] == "."
    assert (ROOT / service["build"]["dockerfile"]).is_file()
    dockerfile = (ROOT / service["build"]["dockerfile"]).read_text()
    assert 'ENTRYPOINT ["python", "-m"]' in dockerfile
    module = service["command"][0]
    assert (ROOT / Path(*module.split("."))).with_suffix(".py").is_file(), module
    settings = _settings(service)
    assert settings.profile == "localstack"
    assert settings.aws.endpoint_url == "http://localstack:4566"
    assert 4566 in _ports(services["localstack"])
    assert settings.aws.region == _environment(services["localstack"])["AWS_DEFAULT_REGION"]


def test_all_containers_share_stream_table_and_bucket(services: dict[str, Service]) -> None:
    reference = load_config("localstack", environ={})
    for name in APP_SERVICES:
        settings = _settings(services[name])
        assert settings.kinesis.stream_name == reference.kinesis.stream_name, name
        assert settings.dynamodb.alerts_table == reference.dynamodb.alerts_table, name
        assert settings.s3.bucket == reference.s3.bucket, name
        # scripts.setup_aws creates s3.bucket: the lake, checkpoints and models must live there.
        for path in (
            settings.processor.lake_path,
            settings.processor.checkpoint_location,
            settings.model.path,
        ):
            assert re.match(rf"s3a?://{re.escape(settings.s3.bucket)}/", path), path


def test_start_order(services: dict[str, Service]) -> None:
    assert services["setup"]["depends_on"] == {"localstack": {"condition": "service_healthy"}}
    assert services["setup"]["restart"] == "no"
    for name in ("producer", "processor"):
        assert services[name]["depends_on"] == {
            "setup": {"condition": "service_completed_successfully"}
        }


def test_producer_api_port(services: dict[str, Service]) -> None:
    producer = services["producer"]
    command = producer["command"]
    assert command[:2] == ["producer.main", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = int(command[command.index("--port") + 1])
    assert port == _settings(producer).producer.api_port
    assert _ports(producer)[port] == ("127.0.0.1", port)
    assert f"127.0.0.1:{port}/health" in " ".join(producer["healthcheck"]["test"])


def test_processor_metrics_port_and_key(services: dict[str, Service]) -> None:
    processor = services["processor"]
    settings = _settings(processor)
    port = settings.processor.metrics_port
    assert _ports(processor)[port] == ("127.0.0.1", port)
    env = _environment(processor)
    key_env = settings.processor.tokenization_key_env
    # The key comes from the user's environment; compose refuses to start without it.
    assert re.fullmatch(rf"\$\{{{key_env}:\?[^}}]+\}}", env[key_env])
    # processor.job waits up to 300 s for the batch in flight after SIGTERM.
    assert processor["stop_grace_period"] == "5m"


def test_compose_config_validates() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker not installed: `docker compose config` not run")
    plugin = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    if plugin.returncode != 0:
        pytest.skip("the docker compose plugin is not installed: `docker compose config` not run")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env={"CARD_TOKEN_KEY": "x" * 32, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
