"""Score a micro-batch's transactions in one vectorised call, locally or on SageMaker.

The driver reads the model card once, before the query starts, and refuses a model whose feature
list differs from the one the stream computes. The local model is loaded once, on the driver,
where the feature engine hands over each batch's transactions as one frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from config.exceptions import ScorerUnavailableError
from ml_model.artifacts import MODEL_FILE, ModelCard, load_model, read_artifact, read_card
from ml_model.features import FEATURE_NAMES
from ml_model.scorer import LocalScorer, check_features

if TYPE_CHECKING:
    import pandas as pd

    from config.settings import Settings

logger = logging.getLogger(__name__)

FrameScorer = Callable[["pd.DataFrame"], "pd.DataFrame"]


def load_card(settings: Settings) -> ModelCard:
    """The deployed model's card, checked against the features this pipeline computes."""
    card = read_card(settings.model.path, settings.aws)
    check_features(card, FEATURE_NAMES)
    return card


def frame_scorer(settings: Settings) -> FrameScorer:
    """The pandas -> pandas scoring function of the configured scorer."""
    card = load_card(settings)
    model = settings.model
    if model.scorer == "sagemaker":
        from processor.sagemaker_scorer import SageMakerScorer

        remote = SageMakerScorer.from_settings(settings, card)
        try:
            served = remote.check_endpoint()
        except ScorerUnavailableError as exc:  # the circuit breaker covers an endpoint that is down
            logger.warning("endpoint %s not reachable yet: %s", model.sagemaker_endpoint, exc)
        else:
            logger.info("scoring with endpoint %s, model %s", model.sagemaker_endpoint, served)
        return remote.score
    blob = read_artifact(model.path, MODEL_FILE, settings.aws)
    scorer = LocalScorer(
        load_model(blob, card, model.path), card, model.threshold, model.review_band
    )
    logger.info("scoring with model %s from %s", card.version, model.path)
    return scorer.score
