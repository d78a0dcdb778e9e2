"""The embedded AWS emulator: moto's server on loopback, as a background process.

    python -m scripts.local_aws start|stop|status [--profile local] [--port N]

`start` is idempotent: a healthy server already on the port is reused. The pid file and the
server's log live in the profile's `local_aws.state_dir`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from config.cli import configure_logging, load_settings, new_parser, run_cli
from config.exceptions import AwsSetupError

logger = logging.getLogger(__name__)

HEALTH_PATH = "/moto-api/"


@dataclass(frozen=True)
class LocalAws:
    """Where one emulator listens and keeps its pid file and log."""

    host: str
    port: int
    state_dir: Path

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"moto-{self.port}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"moto-{self.port}.log"

    @property
    def state_file(self) -> Path:
        """Where a persistent emulator keeps its streams, tables and buckets between runs."""
        return self.state_dir / f"moto-{self.port}.state"


def free_port() -> int:
    """A free TCP port on loopback (for tests and benchmarks that start their own server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_healthy(endpoint_url: str, timeout_s: float = 1.0) -> bool:
    """True when a moto server answers on its management route."""
    try:
        with urllib.request.urlopen(endpoint_url + HEALTH_PATH, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _read_pid(emulator: LocalAws) -> int | None:
    try:
        pid = int(emulator.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def start(emulator: LocalAws, wait_s: float = 30.0, persist: bool = False) -> int | None:
    """Start moto's server unless one already answers; returns its pid (None if not ours).

    `persist`: keep streams, tables and buckets in `emulator.state_file` across restarts.
    """
    if is_healthy(emulator.endpoint_url):
        logger.info("moto server already running at %s", emulator.endpoint_url)
        return _read_pid(emulator)
    emulator.state_dir.mkdir(parents=True, exist_ok=True)
    log = emulator.log_file.open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scripts.moto_server",
            "-H",
            emulator.host,
            "-p",
            str(emulator.port),
            *(["--state-file", str(emulator.state_file)] if persist else []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # survives the shell that started it, like a daemon
    )
    emulator.pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AwsSetupError(
                f"moto server exited with code {process.returncode}; see {emulator.log_file}"
            )
        if is_healthy(emulator.endpoint_url):
            logger.info("moto server pid %d healthy at %s", process.pid, emulator.endpoint_url)
            return process.pid
        time.sleep(0.1)
    process.terminate()
    raise AwsSetupError(
        f"moto server did not become healthy on {emulator.endpoint_url} in {wait_s}s"
    )


def _reap(pid: int) -> None:
    """Collect the server's exit status if this process started it (else its zombie would
    look alive to `os.kill(pid, 0)` until the stop timed out)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: its own parent reaps it
        pass


def stop(emulator: LocalAws, wait_s: float = 60.0) -> bool:
    """Stop the server started by `start`; False when none was running. A persistent one
    saves its state as it stops, hence the generous wait before SIGKILL."""
    pid = _read_pid(emulator)
    if pid is None:
        emulator.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        _reap(pid)
        if _read_pid(emulator) is None:
            break
        time.sleep(0.1)
    if _read_pid(emulator) is not None:
        os.kill(pid, signal.SIGKILL)
    emulator.pid_file.unlink(missing_ok=True)
    return True


def from_profile(profile: str | None, port: int | None = None) -> LocalAws:
    settings = load_settings(profile)
    local = settings.local_aws
    return LocalAws(local.host, port or local.port, Path(local.state_dir))


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("scripts.local_aws", __doc__)
    parser.add_argument(
        "command",
        choices=["start", "stop", "status"],
        help="start (idempotent), stop, or status (exit 0 when up, 1 when down)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="port (default: the profile's local_aws.port: $FRAUD_LOCAL_AWS_PORT, else 4566)",
    )
    parser.add_argument(
        "--persist",
        action="store_true",
        help="start: keep streams, tables and buckets across restarts (in the state folder)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    emulator = from_profile(args.profile, args.port)
    if args.command == "start":
        start(emulator, persist=args.persist)
        print(f"local AWS (moto) running at {emulator.endpoint_url}")
    elif args.command == "stop":
        stopped = stop(emulator)
        print("local AWS stopped" if stopped else "local AWS was not running")
    else:
        healthy = is_healthy(emulator.endpoint_url)
        print(f"local AWS at {emulator.endpoint_url}: {'up' if healthy else 'down'}")
        return 0 if healthy else 1
    return 0


def cli() -> int:
    """Console script `fraud-local-aws`; `python -m scripts.local_aws` runs the same."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
