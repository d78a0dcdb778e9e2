"""The dependency locks (`make lock`): in step with pyproject.toml, hashed, and the image's
runtime lock pinned exactly as the dev lock that the tests run on."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
DEV_LOCK = ROOT / "requirements" / "dev.lock"

_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)(?:\s*;\s*(?P<marker>.*?))?\s*\\?$"
)


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str
    hashes: frozenset[str]


def _pins(lock: Path) -> list[Pin]:
    pins: list[Pin] = []
    current: dict[str, str] | None = None
    hashes: set[str] = set()
    for line in [*lock.read_text().splitlines(), ""]:
        match = _PIN.match(line)
        if match or not line.startswith(" "):
            if current is not None:
                pins.append(Pin(**current, hashes=frozenset(hashes)))
                current, hashes = None, set()
        if match:
            current = {
                "name": canonicalize_name(match["name"]),
                "version": match["version"],
                "marker": match["marker"] or "",
            }
        elif current is not None:
            hashes.update(re.findall(r"--hash=(sha256:[0-9a-f]{64})", line))
    return pins


def _declared(extras: tuple[str, ...] = ()) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(text) for text in project["dependencies"]]
    for extra in extras:
        declared += [Requirement(text) for text in project["optional-dependencies"][extra]]
    return declared


@pytest.mark.parametrize(
    ("lock", "extras"), [(RUNTIME_LOCK, ()), (DEV_LOCK, ("dev", "infra"))], ids=["runtime", "dev"]
)
def test_lock_pins_every_declared_dependency_within_its_range(
    lock: Path, extras: tuple[str, ...]
) -> None:
    pins = _pins(lock)
    for requirement in _declared(extras):
        matching = [pin for pin in pins if pin.name == canonicalize_name(requirement.name)]
        assert matching, f"{requirement} is not in {lock.name}: run `make lock`"
        for pin in matching:
            assert requirement.specifier.contains(pin.version, prereleases=True), (
                f"{lock.name} pins {pin.name}=={pin.version}, outside {requirement}: "
                "run `make lock`"
            )


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=["runtime", "dev"])
def test_every_pin_is_hashed(lock: Path) -> None:
    pins = _pins(lock)
    assert len(pins) > 20
    assert [pin.name for pin in pins if not pin.hashes] == []


def test_runtime_lock_is_the_dev_lock_without_the_dev_tools() -> None:
    """The image runs exactly the versions (and files) that the test suite ran on."""
    dev = {(pin.name, pin.marker): pin for pin in _pins(DEV_LOCK)}
    for pin in _pins(RUNTIME_LOCK):
        assert dev.get((pin.name, pin.marker)) == pin, f"{pin.name} differs between the locks"
