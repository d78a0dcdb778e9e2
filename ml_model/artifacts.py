"""Model artifacts: `model.joblib` plus `model_card.json`, in a local folder or under s3://.

The card is the contract between training and scoring: the feature list and its order, the
threshold and the policy it came from, the reference values reason codes compare against, the
training window, metrics and a hash of the training data.

A model is a pickle: it loads only into the library releases it was written with. Loading checks
the versions the card records against the installed ones first (`check_library_versions`).
"""

from __future__ import annotations

import io
import json
import logging
import re
import warnings
from dataclasses import asdict, dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib

from config.exceptions import ModelError, ModelVersionError

if TYPE_CHECKING:
    from config.settings import AwsSettings

logger = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
CARD_FILE = "model_card.json"

# How many leading release numbers must match for a pickle to be trusted: scikit-learn changes
# its estimators' internals between minor releases, numpy its array pickles between majors.
# (pandas is recorded too, but no pandas object is pickled in the model.)
PICKLE_COMPATIBLE_PARTS = {"scikit-learn": 2, "numpy": 1}


@dataclass(frozen=True)
class ModelCard:
    version: str
    created_at: str
    model_type: str
    feature_names: list[str]
    threshold: float
    threshold_policy: str
    review_threshold: float
    training_window: dict[str, str]
    test_window: dict[str, str]
    data_hash: str
    # Genuine transactions' median per feature: reason codes measure what moving a feature
    # back to its typical value does to the score.
    reference_values: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    baseline_metrics: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    # From the feature registry: what each input means, for whoever reads the card or an alert.
    feature_descriptions: dict[str, str] = field(default_factory=dict)
    # Quantile bins of each feature (training split) and of the score (under "fraud_score"),
    # as `ml_model.drift.Bins.as_dict()`: the stream's PSI is measured against them. Empty in
    # a card written before drift was monitored.
    drift_reference: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The fitted estimator's parameters (`ml_model.selection.Params.as_dict()`): the search's
    # winner, or the default without a search. Empty in a card written before selection.
    model_params: dict[str, Any] = field(default_factory=dict)
    # The model selection (`ml_model.selection.Selection.as_card()`): the rule, the folds' date
    # ranges, the search space, each candidate's mean and std of AP and card precision@100
    # across folds, the winner. Empty without a search (--no-search) or in an older card.
    selection: dict[str, Any] = field(default_factory=dict)
    # Where the labels came from and when they were known: "events" (the label field the
    # history carries) or "chargebacks" (those arrived by `as_of`), the label delay and the
    # split's gap between the last training day and the validation period, in days.
    labels: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> ModelCard:
        """The card in `text`; fields this version does not know (a newer card) are dropped
        with a warning, fields it lacks (an older card) take their defaults."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError(f"expected a JSON object, got {type(data).__name__}")
            unknown = sorted(set(data) - {f.name for f in fields(cls)})
            if unknown:
                logger.warning(
                    "model card %s has fields this version does not know, ignored: %s",
                    where,
                    ", ".join(unknown),
                )
            return cls(**{name: value for name, value in data.items() if name not in unknown})
        except (ValueError, TypeError) as exc:
            raise ModelError(f"model card {where} is not a valid model card: {exc}") from exc


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").removeprefix("s3a://").partition("/")
    if not bucket:
        raise ModelError(f"model path {uri!r} names no bucket")
    return bucket, prefix.strip("/")


def _is_s3(path: str) -> bool:
    return path.startswith(("s3://", "s3a://"))


def _s3_client(aws: AwsSettings | None) -> Any:
    from config.aws import make_client
    from config.settings import load_config

    return make_client("s3", aws or load_config().aws)


def write_artifacts(path: str, model: Any, card: ModelCard, aws: AwsSettings | None = None) -> None:
    """Write model + card to a folder or s3:// prefix (card last: readers key off it)."""
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    blobs = {MODEL_FILE: buffer.getvalue(), CARD_FILE: card.to_json().encode()}
    if _is_s3(path):
        client = _s3_client(aws)
        bucket, prefix = _split_s3(path)
        for name, blob in blobs.items():
            client.put_object(Bucket=bucket, Key=f"{prefix}/{name}".lstrip("/"), Body=blob)
        return
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in blobs.items():
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(blob)
        tmp.replace(folder / name)


def read_artifact(path: str, name: str, aws: AwsSettings | None = None) -> bytes:
    if _is_s3(path):
        bucket, prefix = _split_s3(path)
        key = f"{prefix}/{name}".lstrip("/")
        try:
            body: bytes = _s3_client(aws).get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:  # botocore's ClientError / endpoint errors
            raise ModelError(f"cannot read s3://{bucket}/{key}: {exc}") from exc
        return body
    file = Path(path) / name
    if not file.exists():
        raise ModelError(
            f"no {name} under model path {path!r}: train one with `python -m ml_model.train`"
        )
    return file.read_bytes()


def artifacts_exist(path: str, aws: AwsSettings | None = None) -> bool:
    try:
        read_artifact(path, CARD_FILE, aws)
    except ModelError:
        return False
    return True


def read_card(path: str, aws: AwsSettings | None = None) -> ModelCard:
    return ModelCard.from_json(read_artifact(path, CARD_FILE, aws).decode(), f"{path}/{CARD_FILE}")


def _release(text: str) -> tuple[int, ...]:
    match = re.match(r"\d+(?:\.\d+)*", text)
    return tuple(int(part) for part in match[0].split(".")) if match else ()


def check_library_versions(card: ModelCard, where: str) -> None:
    """Refuse a model written by another scikit-learn minor (or numpy major) release.

    A patch difference is fine and only logged. A card that records no versions (written
    before they were recorded) cannot be checked: that is logged too.
    """
    for lib, parts in PICKLE_COMPATIBLE_PARTS.items():
        recorded = card.library_versions.get(lib)
        if recorded is None:
            logger.warning(
                "model %s at %s records no %s version: not checked", card.version, where, lib
            )
            continue
        try:
            running = version(lib)
        except PackageNotFoundError:
            running = ""
        if recorded == running:
            continue
        wanted, have = _release(recorded)[:parts], _release(running)[:parts]
        if len(wanted) < parts or wanted != have:
            line = ".".join(str(n) for n in wanted) or recorded
            installed = f"{lib} {running} is installed" if running else f"{lib} is not installed"
            raise ModelVersionError(
                f"model {card.version} at {where} was saved with {lib} {recorded}, but "
                f"{installed}, and {lib} pickles only load within the release line they "
                f"were written by ({line}.x). Retrain the model with this {lib}: "
                f"`python -m ml_model.train`, or install the recorded version: "
                f"`pip install {lib}=={recorded}`."
            )
        logger.info(
            "model %s was saved with %s %s, running %s: same release line, loading",
            card.version,
            lib,
            recorded,
            running,
        )


def load_model(blob: bytes, card: ModelCard, where: str) -> Any:
    """Unpickle the model of `card`, after checking the library versions it was saved with."""
    check_library_versions(card, where)
    with warnings.catch_warnings():
        # scikit-learn warns on any version difference; the check above has already judged it.
        try:
            from sklearn.exceptions import InconsistentVersionWarning
        except ImportError:  # scikit-learn < 1.3 (a serving image, for a card without versions)
            pass
        else:
            warnings.simplefilter("ignore", InconsistentVersionWarning)
        return joblib.load(io.BytesIO(blob))


def read_model(path: str, aws: AwsSettings | None = None) -> tuple[Any, ModelCard]:
    card = read_card(path, aws)
    model = load_model(read_artifact(path, MODEL_FILE, aws), card, path)
    return model, card
