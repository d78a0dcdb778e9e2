"""Create the pipeline's AWS resources for a profile, idempotently.

    python -m scripts.setup_aws --profile local

Kinesis stream (N shards), DynamoDB alerts table (key `transaction_id`), S3 bucket. Existing
resources are left as they are, so the command is safe to run again. The same code works against
moto, LocalStack and AWS; only the profile's endpoint differs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from config.aws import make_client, make_session
from config.cli import configure_logging, load_settings, new_parser, probe_endpoint, run_cli
from config.exceptions import AwsSetupError

if TYPE_CHECKING:
    import boto3

    from config.settings import Settings

logger = logging.getLogger(__name__)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def ensure_stream(kinesis: Any, name: str, shards: int, wait_s: float = 60.0) -> str:
    """Create the stream if missing and wait until it is ACTIVE; returns its ARN."""
    try:
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        logger.info("created Kinesis stream %s with %d shards", name, shards)
    except ClientError as exc:
        if _error_code(exc) != "ResourceInUseException":
            raise AwsSetupError(f"cannot create Kinesis stream {name!r}: {exc}") from exc
        logger.info("Kinesis stream %s already exists", name)
    deadline = time.monotonic() + wait_s
    while True:
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            return str(summary["StreamARN"])
        if time.monotonic() > deadline:
            raise AwsSetupError(f"Kinesis stream {name!r} is not ACTIVE after {wait_s}s")
        time.sleep(0.5)


def ensure_alerts_table(dynamodb: Any, name: str) -> None:
    """On-demand table keyed by transaction_id, so a replayed alert overwrites its own item."""
    try:
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "transaction_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "transaction_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        logger.info("created DynamoDB table %s", name)
    except ClientError as exc:
        if _error_code(exc) != "ResourceInUseException":
            raise AwsSetupError(f"cannot create DynamoDB table {name!r}: {exc}") from exc
        logger.info("DynamoDB table %s already exists", name)
    dynamodb.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    # Old alerts expire by the `expires_at` epoch-seconds attribute the processor writes.
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )


def ensure_bucket(s3: Any, name: str, region: str) -> None:
    """Create the bucket unless this account already owns it."""
    try:
        s3.head_bucket(Bucket=name)
        logger.info("S3 bucket %s already exists", name)
        return
    except ClientError as exc:
        if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise AwsSetupError(f"cannot use S3 bucket {name!r}: {exc}") from exc
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        if _error_code(exc) != "BucketAlreadyOwnedByYou":
            raise AwsSetupError(f"cannot create S3 bucket {name!r}: {exc}") from exc
    logger.info("created S3 bucket %s", name)


def setup_resources(settings: Settings, session: boto3.Session | None = None) -> dict[str, str]:
    """Create stream, table and bucket of `settings`; returns what was set up."""
    session = session or make_session(settings.aws)
    arn = ensure_stream(
        make_client("kinesis", settings.aws, session),
        settings.kinesis.stream_name,
        settings.kinesis.shard_count,
    )
    ensure_alerts_table(
        make_client("dynamodb", settings.aws, session), settings.dynamodb.alerts_table
    )
    ensure_bucket(make_client("s3", settings.aws, session), settings.s3.bucket, settings.aws.region)
    return {
        "stream": arn,
        "alerts_table": settings.dynamodb.alerts_table,
        "bucket": settings.s3.bucket,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("scripts.setup_aws", __doc__)
    parser.add_argument(
        "--shards",
        type=int,
        default=None,
        help="shards of a new stream (default: the profile's kinesis.shard_count)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    settings = load_settings(args.profile)
    if args.shards is not None:
        settings = settings.with_overrides(kinesis={"shard_count": args.shards})
    probe_endpoint(settings.aws)  # a closed emulator port fails at once, not after retries
    created = setup_resources(settings)
    for kind, name in created.items():
        print(f"{kind}: {name}")
    return 0


def cli() -> int:
    """Console script `fraud-setup-aws`; `python -m scripts.setup_aws` runs the same."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
