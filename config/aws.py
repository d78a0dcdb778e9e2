"""boto3 clients for Kinesis, DynamoDB, S3 and SageMaker runtime, built one way.

Every client shares one botocore `Config` (adaptive retries, timeouts) and takes its endpoint
and credentials from the profile, so moto, LocalStack and AWS differ only in configuration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config as BotoConfig

if TYPE_CHECKING:
    from config.settings import AwsSettings

# Kinesis error codes that mean "try again later", for a whole call or one PutRecords entry.
RETRYABLE_KINESIS_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "InternalFailure",
        "ServiceUnavailable",
        "KMSThrottlingException",
    }
)


def botocore_config(aws: AwsSettings) -> BotoConfig:
    """The one retry/timeout policy used by every client of the project."""
    return BotoConfig(
        region_name=aws.region,
        connect_timeout=aws.connect_timeout_s,
        read_timeout=aws.read_timeout_s,
        retries={"max_attempts": aws.max_attempts, "mode": "adaptive"},
        max_pool_connections=32,
    )


def make_session(aws: AwsSettings) -> boto3.Session:
    """A session with the profile's static credentials, or the default chain when it has none."""
    if aws.access_key_id and aws.secret_access_key:
        return boto3.Session(
            aws_access_key_id=aws.access_key_id,
            aws_secret_access_key=aws.secret_access_key,
            region_name=aws.region,
        )
    return boto3.Session(region_name=aws.region)


def make_client(service: str, aws: AwsSettings, session: boto3.Session | None = None) -> Any:
    """A boto3 client for `service` against the profile's endpoint (None means real AWS)."""
    session = session or make_session(aws)
    # `service` is a plain str here; the typed overloads of boto3-stubs want literals.
    return session.client(  # type: ignore[call-overload]
        service, endpoint_url=aws.endpoint_url, config=botocore_config(aws)
    )
