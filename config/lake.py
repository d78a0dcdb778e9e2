"""How code outside Spark reaches the lake: delta-rs URIs and storage options from a profile.

The processor's lake path is a folder or an `s3a://` URI (Hadoop's scheme); delta-rs
(`deltalake`) speaks `s3://` and takes the endpoint, region and credentials as storage options,
so the job's lake commits (processor/lake_commit.py), the training history, the alert console
and model comparison reach the same tables for whichever profile they were started with,
without a JVM.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Protocol

# A commit file is put with `If-None-Match: *` (object_store's conditional put, which AWS S3
# honours since 2024-08, and moto too): two writers of one version cannot overwrite each other,
# the second gets a conflict and retries on the next version, or fails on the same writer id.
# delta-rs 1.x has no DynamoDB lock any more and always commits this way; the options pin it
# (`etag` is object_store's default) and the unsafe-rename flag off, and options win over the
# environment, so an AWS_* variable cannot change either. ADR 0016.
COMMIT_OPTIONS = {"conditional_put": "etag", "AWS_S3_ALLOW_UNSAFE_RENAME": "false"}


class S3Access(Protocol):
    """Where S3 is and who calls it: `AwsSettings`, or the same fields held by another object."""

    @property
    def region(self) -> str | None: ...
    @property
    def endpoint_url(self) -> str | None: ...
    @property
    def access_key_id(self) -> str | None: ...
    @property
    def secret_access_key(self) -> str | None: ...


def delta_uri(lake_path: str, table: str) -> str:
    """The table's URI for delta-rs: `s3a://` and `s3n://` become `s3://`."""
    path = f"{lake_path.rstrip('/')}/{table}"
    for scheme in ("s3a://", "s3n://"):
        if path.startswith(scheme):
            return "s3://" + path[len(scheme) :]
    return path


def storage_options(aws: S3Access) -> dict[str, str]:
    """delta-rs (object_store) options for the profile's S3: endpoint, region, credentials."""
    options = {"AWS_REGION": aws.region} if aws.region else {}
    if aws.endpoint_url:
        options["AWS_ENDPOINT_URL"] = aws.endpoint_url
        if aws.endpoint_url.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if aws.access_key_id and aws.secret_access_key:
        options["AWS_ACCESS_KEY_ID"] = aws.access_key_id
        options["AWS_SECRET_ACCESS_KEY"] = aws.secret_access_key
    return options


def options_for(uri: str, aws: S3Access) -> dict[str, str] | None:
    """Storage options when `uri` is on S3, None for a local folder."""
    return storage_options(aws) if uri.startswith("s3://") else None


def commit_options_for(uri: str, aws: S3Access) -> dict[str, str] | None:
    """Storage options for committing to a table at `uri`: put-if-absent commits on S3."""
    return {**storage_options(aws), **COMMIT_OPTIONS} if uri.startswith("s3://") else None


def s3_client(aws: S3Access) -> Any:
    """A boto3 S3 client for `aws`, one per settings and process, kept: a batch makes several
    calls, and a new client for each paid ~10 ms (a new connection; on AWS a TLS handshake
    too). The pid is part of the key, so a forked snapshot child makes its own and never
    shares the parent's connections."""
    return _s3_client(
        aws.endpoint_url, aws.region, aws.access_key_id, aws.secret_access_key, os.getpid()
    )


@lru_cache(maxsize=16)
def _s3_client(
    endpoint_url: str | None,
    region: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
    pid: int,
) -> Any:
    import boto3

    del pid  # only a cache key
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
    )
