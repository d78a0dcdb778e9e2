"""Deploy a trained model to a SageMaker endpoint.

    python -m ml_model.sagemaker.deploy --model-path PATH --endpoint-name NAME \
        --role-arn ARN --image-uri URI [--instance-type ml.m5.large] [--profile aws] [--wait]

Packages model.tar.gz (model.joblib, model_card.json and `code/`: inference.py plus the few
project modules it imports), uploads it to s3://<s3.bucket>/models/sagemaker/<version>/, then
creates the model and the endpoint config named after endpoint and model version, and
creates the endpoint or points the existing one at the new config. Running it twice for the
same version changes nothing.

The image must be a scikit-learn serving image (SageMaker's, or one built from it) whose
scikit-learn version matches the card's `library_versions`: joblib files do not load across
scikit-learn versions.
"""

from __future__ import annotations

import argparse
import gzip
import io
import logging
import re
import sys
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
from botocore.exceptions import BotoCoreError, ClientError

from config.aws import make_client
from config.cli import configure_logging, load_settings, new_parser, probe_endpoint, run_cli
from config.exceptions import AwsSetupError, ConfigError
from config.settings import Settings
from ml_model.artifacts import CARD_FILE, MODEL_FILE, ModelCard, read_model

if TYPE_CHECKING:
    import boto3

logger = logging.getLogger(__name__)

ARCHIVE = "model.tar.gz"
VARIANT = "AllTraffic"
_ROOT = Path(__file__).resolve().parents[2]
# code/ in the archive: inference.py at its top (SAGEMAKER_PROGRAM) and what it imports.
# The packages' __init__.py are empty there: config's real one pulls in pydantic and YAML.
CODE_FILES: Mapping[str, Path | None] = {
    "code/inference.py": _ROOT / "ml_model" / "sagemaker" / "inference.py",
    "code/ml_model/__init__.py": None,
    "code/ml_model/artifacts.py": _ROOT / "ml_model" / "artifacts.py",
    "code/ml_model/scorer.py": _ROOT / "ml_model" / "scorer.py",
    "code/config/__init__.py": None,
    "code/config/exceptions.py": _ROOT / "config" / "exceptions.py",
}
CONTAINER_ENV = {
    "SAGEMAKER_PROGRAM": "inference.py",
    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
}
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_ROLE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_INSTANCE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")


@dataclass(frozen=True)
class Deployment:
    """What a deploy did; `action` is created, updated or unchanged (for the endpoint)."""

    model_data_url: str
    model_name: str
    endpoint_config_name: str
    endpoint_name: str
    action: str


def inference_code() -> dict[str, bytes]:
    """The `code/` files of the archive, read from this checkout."""
    return {
        name: b"" if source is None else source.read_bytes() for name, source in CODE_FILES.items()
    }


def package_model(model_blob: bytes, card: ModelCard, code: Mapping[str, bytes]) -> bytes:
    """model.tar.gz as bytes; the same inputs give the same bytes (fixed times and owners)."""
    files = {MODEL_FILE: model_blob, CARD_FILE: card.to_json().encode(), **code}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(files[name]))
    return gzip.compress(raw.getvalue(), mtime=0)


def resource_name(endpoint_name: str, version: str) -> str:
    """Model and endpoint-config name: `<endpoint>-<version>`, within SageMaker's 63 chars."""
    suffix = re.sub(r"[^a-zA-Z0-9]+", "-", version).strip("-")
    head = endpoint_name[: max(1, 63 - len(suffix) - 1)].rstrip("-")
    return f"{head}-{suffix}"[:63].rstrip("-")


def model_key(version: str) -> str:
    return f"models/sagemaker/{version}/{ARCHIVE}"


def check_options(endpoint_name: str, role_arn: str, image_uri: str, instance_type: str) -> None:
    """Refuse values SageMaker would reject, naming the option."""
    if not _NAME.match(endpoint_name):
        raise ConfigError(
            f"option --endpoint-name {endpoint_name!r}: use 1-63 letters, digits and hyphens"
        )
    if not _ROLE.match(role_arn):
        raise ConfigError(
            f"option --role-arn {role_arn!r} is not an IAM role ARN "
            "(arn:aws:iam::<account>:role/<name>)"
        )
    if not image_uri.strip():
        raise ConfigError("option --image-uri is required (a scikit-learn serving image)")
    if not _INSTANCE.match(instance_type):
        raise ConfigError(f"option --instance-type {instance_type!r}: expected e.g. ml.m5.large")


def _exists(call: Any, **kwargs: str) -> dict[str, Any] | None:
    """The describe_* answer, or None when SageMaker says there is no such resource."""
    try:
        answer: dict[str, Any] = call(**kwargs)
    except ClientError as exc:
        message = str(exc.response.get("Error", {}).get("Message", ""))
        if "Could not find" in message or "does not exist" in message:
            return None
        raise
    return answer


def deploy(
    model_path: str,
    endpoint_name: str,
    role_arn: str,
    image_uri: str,
    settings: Settings,
    instance_type: str = "ml.m5.large",
    instance_count: int = 1,
    wait: bool = False,
    session: boto3.Session | None = None,
) -> Deployment:
    """Package, upload and (create or update) the endpoint; idempotent per model version."""
    check_options(endpoint_name, role_arn, image_uri, instance_type)
    model, card = read_model(model_path, settings.aws)
    blob = io.BytesIO()
    joblib.dump(model, blob)
    archive = package_model(blob.getvalue(), card, inference_code())
    bucket, key = settings.s3.bucket, model_key(card.version)
    model_data_url = f"s3://{bucket}/{key}"
    name = resource_name(endpoint_name, card.version)
    try:
        make_client("s3", settings.aws, session).put_object(Bucket=bucket, Key=key, Body=archive)
        logger.info("uploaded %s (%d bytes)", model_data_url, len(archive))
        sagemaker = make_client("sagemaker", settings.aws, session)
        if _exists(sagemaker.describe_model, ModelName=name) is None:
            sagemaker.create_model(
                ModelName=name,
                ExecutionRoleArn=role_arn,
                PrimaryContainer={
                    "Image": image_uri,
                    "ModelDataUrl": model_data_url,
                    "Environment": CONTAINER_ENV,
                },
                Tags=[{"Key": "model_version", "Value": card.version}],
            )
        if _exists(sagemaker.describe_endpoint_config, EndpointConfigName=name) is None:
            sagemaker.create_endpoint_config(
                EndpointConfigName=name,
                ProductionVariants=[
                    {
                        "VariantName": VARIANT,
                        "ModelName": name,
                        "InitialInstanceCount": instance_count,
                        "InstanceType": instance_type,
                        "InitialVariantWeight": 1.0,
                    }
                ],
            )
        current = _exists(sagemaker.describe_endpoint, EndpointName=endpoint_name)
        if current is None:
            sagemaker.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=name)
            action = "created"
        elif current.get("EndpointConfigName") == name:
            action = "unchanged"
        else:
            sagemaker.update_endpoint(EndpointName=endpoint_name, EndpointConfigName=name)
            action = "updated"
        if wait:
            sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=endpoint_name)
    except (ClientError, BotoCoreError) as exc:
        raise AwsSetupError(f"deploying endpoint {endpoint_name!r} failed: {exc}") from exc
    logger.info("endpoint %s %s with model %s", endpoint_name, action, card.version)
    return Deployment(model_data_url, name, name, endpoint_name, action)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("ml_model.sagemaker.deploy", __doc__)
    parser.add_argument(
        "--model-path",
        default=None,
        help="model folder or s3:// prefix (default: the profile's model.path)",
    )
    parser.add_argument("--endpoint-name", required=True, help="SageMaker endpoint to deploy")
    parser.add_argument("--role-arn", required=True, help="SageMaker execution role")
    parser.add_argument("--image-uri", required=True, help="scikit-learn serving image")
    parser.add_argument("--instance-type", default="ml.m5.large", help="instance type")
    parser.add_argument("--instance-count", type=int, default=1, help="instances behind it")
    parser.add_argument("--wait", action="store_true", help="wait until InService")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    settings = settings or load_settings(args.profile)
    check_options(args.endpoint_name, args.role_arn, args.image_uri, args.instance_type)
    probe_endpoint(settings.aws)  # a closed emulator port fails at once, not after retries
    result = deploy(
        args.model_path or settings.model.path,
        args.endpoint_name,
        args.role_arn,
        args.image_uri,
        settings,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        wait=args.wait,
    )
    print(
        f"endpoint {result.endpoint_name} {result.action}: model {result.model_name} "
        f"from {result.model_data_url}"
    )
    return 0


def cli() -> int:
    """`python -m ml_model.sagemaker.deploy`."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
