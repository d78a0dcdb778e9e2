"""Score transactions on Arrow batches (`mapInPandas`), with the local model or SageMaker.

The driver reads the model card once, before the query starts, and refuses a model whose feature
list differs from the one the stream computes. The model itself travels as a broadcast of the
joblib bytes and is loaded once per Python worker (cached by version), never per batch or row.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

from config.exceptions import ScorerUnavailableError
from ml_model.artifacts import MODEL_FILE, ModelCard, read_artifact, read_card
from ml_model.features import FEATURE_NAMES
from ml_model.scorer import LocalScorer, check_features

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.broadcast import Broadcast
    from pyspark.sql import DataFrame, SparkSession

    from config.settings import Settings

logger = logging.getLogger(__name__)

SCORE_FIELDS = [
    StructField("fraud_score", DoubleType(), True),
    StructField("model_version", StringType(), True),
    StructField("decision", StringType(), True),
    StructField("reason_codes", ArrayType(StringType()), True),
]
_WORKER_SCORERS: dict[str, LocalScorer] = {}  # per Python worker: version -> scorer

FrameScorer = Callable[["pd.DataFrame"], "pd.DataFrame"]


def load_card(settings: Settings) -> ModelCard:
    """The deployed model's card, checked against the features this pipeline computes."""
    card = read_card(settings.model.path, settings.aws)
    check_features(card, FEATURE_NAMES)
    return card


def _local_scorer(
    blob: Broadcast[bytes], card: ModelCard, threshold: float | None, band: float
) -> LocalScorer:
    scorer = _WORKER_SCORERS.get(card.version)
    if scorer is None:
        import joblib

        scorer = LocalScorer(joblib.load(io.BytesIO(blob.value)), card, threshold, band)
        _WORKER_SCORERS.clear()
        _WORKER_SCORERS[card.version] = scorer
    return scorer


def frame_scorer(spark: SparkSession, settings: Settings) -> FrameScorer:
    """A picklable pandas -> pandas scoring function for the configured scorer."""
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
    blob = spark.sparkContext.broadcast(read_artifact(model.path, MODEL_FILE, settings.aws))
    threshold, band = model.threshold, model.review_band
    logger.info("scoring with model %s from %s", card.version, model.path)

    def score(frame: pd.DataFrame) -> pd.DataFrame:
        return _local_scorer(blob, card, threshold, band).score(frame)

    return score


def scored_schema(schema: StructType) -> StructType:
    return StructType([*schema.fields, *SCORE_FIELDS])


def score_on_batches(score: FrameScorer) -> Callable[[DataFrame], DataFrame]:
    """transactions -> the same rows plus SCORE_FIELDS, scored one Arrow batch at a time."""

    def apply(transactions: DataFrame) -> DataFrame:
        schema = scored_schema(transactions.schema)
        names = schema.fieldNames()

        def batches(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
            for frame in frames:
                if len(frame):
                    yield score(frame)[names]

        return transactions.mapInPandas(batches, schema)

    return apply
