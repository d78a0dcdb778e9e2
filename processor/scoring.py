"""Score a micro-batch's transactions in one vectorised call, locally or on SageMaker.

The driver reads the model card once, before the query starts, and refuses a model whose feature
list differs from the one the stream computes. The local model is loaded once, on the driver,
where the feature engine hands over each batch's transactions as one frame.

A shadow challenger (`model.challenger_path`, `--challenger`) is loaded the same way, with the
same feature and library-version checks, and always scored locally. It only adds
`challenger_score` and `challenger_version` to the scored frame: the champion's columns, and so
the decision and the alerts, are the same with or without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from config.exceptions import ModelError, ScorerUnavailableError
from ml_model.artifacts import MODEL_FILE, ModelCard, load_model, read_artifact, read_card
from ml_model.features import FEATURE_NAMES
from ml_model.scorer import LocalScorer, check_features
from processor.lake_tables import CHALLENGER_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from config.settings import AwsSettings, Settings

logger = logging.getLogger(__name__)

FrameScorer = Callable[["pd.DataFrame"], "pd.DataFrame"]


def load_card(settings: Settings) -> ModelCard:
    """The deployed model's card, checked against the features this pipeline computes."""
    card = read_card(settings.model.path, settings.aws)
    check_features(card, FEATURE_NAMES)
    return card


def read_checked_model(path: str, aws: AwsSettings, attempts: int = 3) -> tuple[Any, ModelCard]:
    """(model, card) of `path`, after the feature and library-version checks.

    The card is read again after the model: a promotion (ml_model.promote) that swapped the
    folder between the two reads would pair one model's card with the other's pickle, so a
    changed card means reading both again.
    """
    for _ in range(attempts):
        card = read_card(path, aws)
        check_features(card, FEATURE_NAMES)
        model = load_model(read_artifact(path, MODEL_FILE, aws), card, path)
        if read_card(path, aws) == card:
            return model, card
        logger.info("model at %s changed while it was read (a promotion?): reading again", path)
    raise ModelError(f"model at {path} kept changing while it was read: try again")


@dataclass
class ShadowScorer:
    """The champion's scorer plus a challenger whose score is recorded, never acted on.

    A challenger that fails on a batch leaves its columns null and logs why: a shadow model
    must never stop the champion from scoring.
    """

    champion: FrameScorer
    challenger: LocalScorer

    @property
    def version(self) -> str:
        return self.challenger.card.version

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        scored = self.champion(frame)
        try:
            scores: Any = self.challenger.predict(self.challenger.matrix(frame))
            version: str | None = self.version
        except Exception:  # noqa: BLE001 - the champion's scores stand, whatever went wrong
            logger.exception("challenger %s failed on %d rows: left null", self.version, len(frame))
            scores, version = np.full(len(frame), np.nan), None
        score_column, version_column = CHALLENGER_COLUMNS
        scored[score_column] = scores
        scored[version_column] = version
        return scored


def challenger_scorer(settings: Settings) -> LocalScorer | None:
    """The configured challenger, checked like the champion; None when there is none."""
    path = settings.model.challenger_path
    if not path:
        return None
    model, card = read_checked_model(path, settings.aws)
    logger.info("shadow challenger %s from %s (scores recorded, never alerts)", card.version, path)
    return LocalScorer(model, card, threads=settings.model.threads)


def champion_scorer(settings: Settings) -> FrameScorer:
    """The pandas -> pandas scoring function of the configured (champion) scorer."""
    model = settings.model
    if model.scorer == "sagemaker":
        from processor.sagemaker_scorer import SageMakerScorer

        remote = SageMakerScorer.from_settings(settings, load_card(settings))
        try:
            served = remote.check_endpoint()
        except ScorerUnavailableError as exc:  # the circuit breaker covers an endpoint that is down
            logger.warning("endpoint %s not reachable yet: %s", model.sagemaker_endpoint, exc)
        else:
            logger.info("scoring with endpoint %s, model %s", model.sagemaker_endpoint, served)
        return remote.score
    estimator, card = read_checked_model(model.path, settings.aws)
    scorer = LocalScorer(estimator, card, model.threshold, model.review_band, model.threads)
    logger.info("scoring with model %s from %s", card.version, model.path)
    return scorer.score


def frame_scorer(settings: Settings) -> FrameScorer:
    """The job's scorer: the champion's, shadowed by the challenger when one is configured.

    Both are loaded before the query starts; either failing its checks stops the job there.
    """
    champion = champion_scorer(settings)
    challenger = challenger_scorer(settings)
    return champion if challenger is None else ShadowScorer(champion, challenger)
