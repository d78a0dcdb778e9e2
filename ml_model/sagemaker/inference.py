"""SageMaker scikit-learn container entry point: model_fn, input_fn, predict_fn, output_fn.

The container imports this file as `code/inference.py` of model.tar.gz, next to the project
modules it needs (ml_model.artifacts, ml_model.scorer, config.exceptions; see deploy.py), so
the endpoint scores with the very code the local scorer runs.

Wire format (application/json both ways):
    request   {"features": [name, ...], "instances": [[value or null, ...], ...],
               "reason_threshold": 0.4}                      # optional
    response  {"model_version": "...", "scores": [...], "reason_codes": [[...], ...]}
`null` is a missing value (NaN). Reason codes are computed for rows whose score is at or
above `reason_threshold`, by default the card's review threshold; other rows get `[]`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from config.exceptions import ModelError
from ml_model.artifacts import read_model
from ml_model.scorer import LocalScorer

JSON = "application/json"


@dataclass(frozen=True)
class InferenceRequest:
    """A parsed request: feature names in the client's order and a float matrix (NaN = null)."""

    features: list[str]
    instances: np.ndarray
    reason_threshold: float | None = None


@dataclass(frozen=True)
class Prediction:
    model_version: str
    scores: np.ndarray
    reason_codes: list[list[str]]


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def model_fn(model_dir: str) -> LocalScorer:
    """Load model.joblib + model_card.json from the unpacked model archive."""
    model, card = read_model(model_dir)
    return LocalScorer(model, card)


def input_fn(request_body: str | bytes, request_content_type: str | None) -> InferenceRequest:
    """Parse and check the JSON request; a malformed one raises ModelError naming the field."""
    if _media_type(request_content_type) != JSON:
        raise ModelError(
            f"unsupported ContentType {request_content_type!r}: send {JSON} "
            '({"features": [...], "instances": [[...], ...]})'
        )
    try:
        payload = json.loads(request_body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ModelError("request body must be a JSON object with 'features' and 'instances'")
    features = payload.get("features")
    if not isinstance(features, list) or not all(isinstance(name, str) for name in features):
        raise ModelError("request field 'features' must be a list of feature names")
    if len(set(features)) != len(features):
        raise ModelError(f"request field 'features' names a feature twice: {features}")
    rows = payload.get("instances")
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise ModelError("request field 'instances' must be a list of rows (lists of numbers)")
    for index, row in enumerate(rows):
        if len(row) != len(features):
            raise ModelError(
                f"request field 'instances' row {index} has {len(row)} values for "
                f"{len(features)} features"
            )
        for value in row:
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ModelError(
                    f"request field 'instances' row {index} holds {value!r}: values must be "
                    "numbers or null"
                )
    # None becomes NaN under dtype=float: a missing value reaches the model as missing.
    instances = np.array(rows, dtype=float).reshape(len(rows), len(features))
    reason_threshold = payload.get("reason_threshold")
    if reason_threshold is not None and (
        isinstance(reason_threshold, bool)
        or not isinstance(reason_threshold, int | float)
        or math.isnan(reason_threshold)
    ):
        raise ModelError(
            f"request field 'reason_threshold' must be a number, not {reason_threshold!r}"
        )
    return InferenceRequest(
        features=features,
        instances=instances,
        reason_threshold=None if reason_threshold is None else float(reason_threshold),
    )


def check_request_features(scorer: LocalScorer, features: list[str]) -> None:
    """Refuse a request whose feature names (or their order) differ from the model card's."""
    expected = scorer.names
    if features == expected:
        return
    missing = [name for name in expected if name not in features]
    extra = [name for name in features if name not in expected]
    if missing or extra:
        detail = f"missing {missing}, unknown {extra}"
    else:
        detail = "same names in a different order"
    raise ModelError(
        f"request field 'features' does not match model {scorer.card.version}: {detail}; "
        f"the model expects {expected}"
    )


def predict_fn(input_data: InferenceRequest, model: LocalScorer) -> Prediction:
    """Scores for every row; reason codes for rows at or above the reason threshold."""
    check_request_features(model, input_data.features)
    features = input_data.instances
    scores = model.predict(features)
    threshold = (
        model.card.review_threshold
        if input_data.reason_threshold is None
        else input_data.reason_threshold
    )
    reasons: list[list[str]] = [[] for _ in range(len(scores))]
    flagged = np.flatnonzero(scores >= threshold)
    for index, codes in zip(
        flagged, model.reasons(features[flagged], scores[flagged]), strict=True
    ):
        reasons[index] = codes
    return Prediction(model.card.version, scores, reasons)


def output_fn(prediction: Prediction, accept: str | None) -> tuple[str, str]:
    """(body, content type): the JSON response; `*/*` or no Accept header means JSON."""
    if _media_type(accept) not in ("", "*/*", JSON):
        raise ModelError(f"unsupported Accept {accept!r}: this model answers {JSON}")
    body: dict[str, Any] = {
        "model_version": prediction.model_version,
        "scores": [float(score) for score in prediction.scores],
        "reason_codes": prediction.reason_codes,
    }
    return json.dumps(body, allow_nan=False), JSON


def transform(
    model: LocalScorer, body: str | bytes, content_type: str | None, accept: str | None
) -> tuple[str, str]:
    """The four functions in the order the container calls them (for the local server)."""
    return output_fn(predict_fn(input_fn(body, content_type), model), accept)
