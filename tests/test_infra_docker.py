"""Static checks on the container image definition (hadolint, non-root user, pinned bases)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[1] / "infrastructure" / "docker" / "Dockerfile"


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
