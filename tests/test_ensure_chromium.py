"""scripts/ensure_chromium.sh: `make test` installs the browser the console's tests need.

apt-get and id are fakes on PATH, so nothing is installed here: the fakes record their calls and
do (or fail) what the real ones would.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ensure_chromium.sh"


def fake_tool(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


ScriptRun = tuple[subprocess.CompletedProcess[str], Path, Path]
# What apt-get is asked to do, each line after the DEBIAN_FRONTEND it saw.
INSTALL_CALLS = [
    "noninteractive update -qq",
    "noninteractive install -y -qq --no-install-recommends chromium",
]


def installing_apt(tmp_path: Path) -> str:
    """A fake apt-get whose install puts the binary where the script then looks for it."""
    installed = tmp_path / "chromium"
    return f'if [[ "$1" == install ]]; then touch {installed}; chmod +x {installed}; fi'


def run_script(tmp_path: Path, *, uid: int, apt_body: str, sudo_body: str = "exit 1") -> ScriptRun:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    chromium = tmp_path / "chromium"
    calls = tmp_path / "apt-calls"
    fake_tool(bin_dir, "id", f"echo {uid}")
    fake_tool(bin_dir, "apt-get", f'echo "$DEBIAN_FRONTEND $*" >> {calls}\n{apt_body}')
    fake_tool(bin_dir, "sudo", sudo_body)  # by default, sudo that asks for a password
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "CHROMIUM": str(chromium)}
    result = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=False, timeout=30
    )
    return result, chromium, calls


def test_installs_chromium_with_apt_get_when_missing(tmp_path: Path) -> None:
    apt_body = installing_apt(tmp_path)
    result, chromium, calls = run_script(tmp_path, uid=0, apt_body=apt_body)
    assert result.returncode == 0
    assert chromium.exists()
    assert calls.read_text().splitlines() == INSTALL_CALLS
    assert "failed" not in result.stderr


def test_installs_through_password_less_sudo_without_root(tmp_path: Path) -> None:
    apt_body = installing_apt(tmp_path)
    # Like sudo's env_reset: the command runs with a bare environment, PATH kept.
    sudo_body = '[[ "$1" == -n ]] && shift\nexec env -i PATH="$PATH" "$@"'
    result, chromium, calls = run_script(tmp_path, uid=1000, apt_body=apt_body, sudo_body=sudo_body)
    assert result.returncode == 0
    assert chromium.exists()
    assert calls.read_text().splitlines() == INSTALL_CALLS


def test_does_nothing_when_chromium_is_there(tmp_path: Path) -> None:
    (tmp_path / "chromium").write_text("")
    (tmp_path / "chromium").chmod(0o755)
    result, _, calls = run_script(tmp_path, uid=0, apt_body="exit 0")
    assert result.returncode == 0
    assert not calls.exists()
    assert result.stderr == ""


def test_a_failed_install_is_one_line_and_does_not_stop_the_suite(tmp_path: Path) -> None:
    result, chromium, _ = run_script(tmp_path, uid=0, apt_body="exit 100")
    assert result.returncode == 0
    assert not chromium.exists()
    assert "installing chromium failed" in result.stderr
    assert "browser tests will be skipped" in result.stderr


def test_without_root_or_sudo_it_says_what_to_run(tmp_path: Path) -> None:
    result, _, calls = run_script(tmp_path, uid=1000, apt_body="exit 0")
    assert result.returncode == 0
    assert not calls.exists()
    assert "sudo apt-get install chromium" in result.stderr
