"""The feature registry is the one declaration: the code computes exactly its names, in its order,
each written literally in the source, and the model card carries its descriptions."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ml_model.features import (
    FEATURE_NAMES,
    FEATURES,
    describe,
    empty_card_state,
    empty_terminal_state,
    update_card,
    update_terminal,
)
from ml_model.features.definitions import CARD_WINDOWS, TERMINAL_RISK_WINDOWS, TERMINAL_WINDOWS
from ml_model.features.registry import names_of
from tests.test_features import T0, tx

FEATURES_DIR = Path(__file__).resolve().parent.parent / "ml_model" / "features"


def test_the_model_order_is_the_registry_order_and_names_are_unique() -> None:
    assert FEATURE_NAMES == tuple(feature.name for feature in FEATURES)
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert all(feature.description and feature.kind for feature in FEATURES)
    windows = {*CARD_WINDOWS, *TERMINAL_WINDOWS, *TERMINAL_RISK_WINDOWS, "30d"}
    for feature in FEATURES:
        assert feature.window is None or feature.window in windows, feature
        if feature.window is not None:  # a windowed feature says its window in its name
            assert feature.name.endswith(f"_{feature.window}"), feature


def test_the_feature_functions_compute_exactly_the_registry_names() -> None:
    events = [tx(1, T0), tx(2, T0 + 60_000)]
    _, card_out = update_card(empty_card_state(), events)
    _, terminal_out = update_terminal(empty_terminal_state(), events)
    assert tuple(card_out[-1][1]) == names_of("transaction", "card")
    assert tuple(terminal_out[-1][1]) == names_of("terminal")


def test_every_name_is_written_literally_where_it_is_computed() -> None:
    source = {
        "transaction": (FEATURES_DIR / "card.py").read_text(),
        "card": (FEATURES_DIR / "card.py").read_text(),
        "terminal": (FEATURES_DIR / "terminal.py").read_text(),
    }
    registry = (FEATURES_DIR / "registry.py").read_text()
    for feature in FEATURES:
        assert f'"{feature.name}"' in registry
        assert f'"{feature.name}"' in source[feature.entity], feature.name
    # ... and never assembled: no f-string makes a feature name.
    assert not re.search(r'f"(card|terminal|tx)_', source["card"] + source["terminal"])


def test_the_model_card_carries_the_descriptions(trained_model: Path) -> None:
    card = json.loads((trained_model / "model_card.json").read_text())
    assert card["feature_descriptions"] == {name: describe(name) for name in FEATURE_NAMES}
    assert describe("card_tx_count_10m") == "card's transactions in the last 10 minutes"
