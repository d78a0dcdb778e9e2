"""A saved model loads only into the scikit-learn minor (and numpy major) release it was saved
with; a patch difference loads. No Spark: a tiny model written by the project's own function."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from config.exceptions import ModelError, ModelVersionError
from ml_model.artifacts import (
    CARD_FILE,
    MODEL_FILE,
    load_model,
    read_card,
    read_model,
    write_artifacts,
)
from tests.model_cards import small_card

SKLEARN = version("scikit-learn")
NUMPY = version("numpy")


def _bump(text: str, index: int) -> str:
    """`text` with release number `index` raised by one and the later ones zeroed."""
    parts = [int(part) for part in text.split(".")[:3]]
    parts += [0] * (3 - len(parts))
    parts[index] += 1
    parts[index + 1 :] = [0] * (2 - index)
    return ".".join(str(part) for part in parts)


@pytest.fixture()
def model_dir(tmp_path: Path) -> str:
    features = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 0.9], [1.0, 0.1]])
    model = LogisticRegression().fit(features, [0, 1, 0, 1])
    card = small_card(
        "test-model",
        ["a", "b"],
        library_versions={lib: version(lib) for lib in ("scikit-learn", "numpy", "pandas")},
    )
    path = str(tmp_path / "model")
    write_artifacts(path, model, card)
    return path


def _record(path: str, **versions: str) -> None:
    """Tamper with the versions the saved card records."""
    card_file = Path(path) / CARD_FILE
    data = json.loads(card_file.read_text())
    data["library_versions"].update(versions)
    card_file.write_text(json.dumps(data))


def test_same_versions_load(model_dir: str) -> None:
    model, card = read_model(model_dir)
    assert model.predict(np.array([[1.0, 0.0]])).tolist() == [1]
    assert card.library_versions["scikit-learn"] == SKLEARN


@pytest.mark.parametrize("part", [0, 1], ids=["major", "minor"])
def test_sklearn_release_line_mismatch_is_a_clear_error(model_dir: str, part: int) -> None:
    recorded = _bump(SKLEARN, part)
    _record(model_dir, **{"scikit-learn": recorded})
    with pytest.raises(ModelVersionError) as info:
        read_model(model_dir)
    message = str(info.value)
    assert f"scikit-learn {recorded}" in message
    assert f"scikit-learn {SKLEARN} is installed" in message
    assert "python -m ml_model.train" in message
    assert f"pip install scikit-learn=={recorded}" in message
    assert model_dir in message
    assert isinstance(info.value, ModelError)  # callers that catch ModelError still do


def test_sklearn_patch_difference_loads_with_a_log_line(
    model_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    recorded = _bump(SKLEARN, 2)
    _record(model_dir, **{"scikit-learn": recorded})
    with caplog.at_level(logging.INFO, logger="ml_model.artifacts"):
        model, _ = read_model(model_dir)
    assert model.predict(np.array([[0.0, 1.0]])).tolist() == [0]
    assert any(recorded in r.message and SKLEARN in r.message for r in caplog.records)


def test_numpy_major_mismatch_is_an_error_minor_is_not(model_dir: str) -> None:
    _record(model_dir, numpy=_bump(NUMPY, 1))
    read_model(model_dir)
    _record(model_dir, numpy=_bump(NUMPY, 0))
    with pytest.raises(ModelVersionError, match=f"numpy {NUMPY} is installed"):
        read_model(model_dir)


def test_pandas_difference_is_not_checked(model_dir: str) -> None:
    _record(model_dir, pandas="0.1.0")
    read_model(model_dir)


def test_card_without_versions_loads_with_a_warning(
    model_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    card_file = Path(model_dir) / CARD_FILE
    data = json.loads(card_file.read_text())
    del data["library_versions"]
    card_file.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="ml_model.artifacts"):
        read_model(model_dir)
    assert any("records no scikit-learn version" in r.message for r in caplog.records)


def test_load_model_checks_before_unpickling(model_dir: str) -> None:
    """The helper for callers that read the blob themselves: the check comes first."""
    card = read_card(model_dir)
    stale = replace(card, library_versions={"scikit-learn": _bump(SKLEARN, 1)})
    with pytest.raises(ModelVersionError):
        load_model(b"not a pickle", stale, model_dir)
    blob = (Path(model_dir) / MODEL_FILE).read_bytes()
    assert load_model(blob, card, model_dir).classes_.tolist() == [0, 1]


def test_the_streaming_job_checks_the_versions_too(tmp_path: Path) -> None:
    from config.settings import load_config
    from ml_model.features import FEATURE_NAMES
    from processor.scoring import frame_scorer

    width = len(FEATURE_NAMES)
    features = np.vstack([np.zeros(width), np.ones(width)])
    model = LogisticRegression().fit(features, [0, 1])
    card = small_card("job-model")
    path = str(tmp_path / "model")
    write_artifacts(path, model, card)
    settings = load_config("local").with_overrides(model={"path": path})
    assert callable(frame_scorer(settings))
    _record(path, **{"scikit-learn": _bump(SKLEARN, 1)})
    with pytest.raises(ModelVersionError):
        frame_scorer(settings)
