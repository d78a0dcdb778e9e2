"""Model artifacts: `model.joblib` plus `model_card.json`, in a local folder or under s3://.

The card is the contract between training and scoring: the feature list and its order, the
threshold and the policy it came from, the reference values reason codes compare against, the
training window, metrics and a hash of the training data.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib

from config.exceptions import ModelError

if TYPE_CHECKING:
    from config.settings import AwsSettings

logger = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
CARD_FILE = "model_card.json"


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> ModelCard:
        try:
            data = json.loads(text)
            return cls(**data)
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


def read_model(path: str, aws: AwsSettings | None = None) -> tuple[Any, ModelCard]:
    card = read_card(path, aws)
    model = joblib.load(io.BytesIO(read_artifact(path, MODEL_FILE, aws)))
    return model, card
