"""Static checks on the container image definition (hadolint, non-root user, pinned bases,
installs from the lock, health check, default command)."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "infrastructure" / "docker" / "Dockerfile"
RUNTIME_LOCK = "requirements/runtime.lock"


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


@pytest.mark.integration
def test_hadolint_passes() -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint binary not installed")
    result = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runs_as_non_root_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert users, "Dockerfile has no USER instruction"
    assert users[-1] not in {"root", "0"}


def test_base_images_pinned_to_full_versions() -> None:
    images = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert images
    for image in images:
        assert re.search(r":\d+\.\d+\.\d+", image), f"{image} is not pinned to a full version"


def test_spark_jars_baked_in() -> None:
    text = DOCKERFILE.read_text()
    assert "FRAUD_SPARK_JARS_DIR=none" in text
    assert "infrastructure/jars/pom.xml" in text


def _instructions() -> list[tuple[str, str]]:
    """(keyword, arguments) of each instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Z]+)\s+(.*)$", line)
        if match:
            pairs.append((match[1], match[2].strip()))
    return pairs


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_installs_dependencies_from_the_runtime_lock() -> None:
    stage = _final_stage()
    copies = [args for keyword, args in stage if keyword == "COPY"]
    assert any(args.split()[0] == RUNTIME_LOCK for args in copies), "lock not copied in"
    installs = [args for keyword, args in stage if keyword == "RUN" and "pip install" in args]
    assert any(f"pip install --no-cache-dir -r {RUNTIME_LOCK}" in args for args in installs)
    # Every other install is the project itself, without resolving anything past the lock.
    for args in installs:
        for command in re.findall(r"pip install [^&;]*", args):
            assert f"-r {RUNTIME_LOCK}" in command or "--no-deps" in command, command
    lock_step = next(i for i, (k, a) in enumerate(stage) if k == "RUN" and RUNTIME_LOCK in a)
    project_step = next(i for i, (k, a) in enumerate(stage) if k == "RUN" and "--no-deps" in a)
    assert lock_step < project_step


def test_lock_is_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert (ROOT / RUNTIME_LOCK).is_file()
    parts = Path(RUNTIME_LOCK).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        assert not pattern.startswith("!"), "re-inclusions make this check unreliable"
        hits = [p for p in prefixes if fnmatch.fnmatch(p, pattern.removeprefix("**/"))]
        assert not hits, f".dockerignore pattern {pattern!r} excludes {hits[0]}"


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), args
    return value


def test_default_command_serves_the_api_on_all_interfaces() -> None:
    stage = dict(_final_stage())
    command = _exec_form(stage["ENTRYPOINT"]) + _exec_form(stage["CMD"])
    assert command[:4] == ["python", "-m", "producer.main", "serve"]
    assert "--host" in command and command[command.index("--host") + 1] == "0.0.0.0"
    assert '"--host"' in (ROOT / "producer" / "cli.py").read_text()


def _healthcheck() -> tuple[str, list[str]]:
    """(options, exec-form command) of the final stage's only HEALTHCHECK."""
    checks = [args for keyword, args in _final_stage() if keyword == "HEALTHCHECK"]
    assert len(checks) == 1, "the image needs exactly one HEALTHCHECK"
    options, _, command = checks[0].partition("CMD")
    return options, _exec_form(command.strip())


def test_healthcheck_probes_the_producer_health_route_by_default() -> None:
    options, command = _healthcheck()
    assert "--timeout=" in options and "--interval=" in options
    assert command[:2] == ["python", "-c"], "slim images have no curl: the check uses Python"
    envs = " ".join(args for keyword, args in _final_stage() if keyword == "ENV")
    match = re.search(r"FRAUD_HEALTHCHECK_URL=(\S+)", envs)
    assert match, "no default FRAUD_HEALTHCHECK_URL"
    assert match[1] == "http://127.0.0.1:8000/health"
    assert '@app.get("/health")' in (ROOT / "producer" / "api.py").read_text()
    exposed = [args.split() for keyword, args in _final_stage() if keyword == "EXPOSE"]
    assert any("8000" in ports for ports in exposed)


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def health_server() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _run_check(url: str) -> int:
    _, command = _healthcheck()
    env = {"FRAUD_HEALTHCHECK_URL": url, "PATH": "/usr/bin:/bin"}
    python = [sys.executable, *command[1:]]
    return subprocess.run(python, env=env, capture_output=True, timeout=30).returncode


def test_healthcheck_command_passes_on_200_and_fails_otherwise(health_server: int) -> None:
    assert _run_check(f"http://127.0.0.1:{health_server}/health") == 0
    assert _run_check(f"http://127.0.0.1:{health_server}/other") != 0  # 503
    probe = HTTPServer(("127.0.0.1", 0), _Health)
    closed = probe.server_address[1]
    probe.server_close()
    assert _run_check(f"http://127.0.0.1:{closed}/health") != 0  # nothing listening
    assert _run_check("") == 0  # one-shot commands switch the check off
