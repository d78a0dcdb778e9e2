"""How code outside Spark reaches the lake: delta-rs URIs and storage options from a profile.

The processor's lake path is a folder or an `s3a://` URI (Hadoop's scheme); delta-rs
(`deltalake`) speaks `s3://` and takes the endpoint, region and credentials as storage options,
so the training history, the alert console and model comparison read the same tables the job
writes, for whichever profile they were started with, without a JVM.
"""

from __future__ import annotations

from config.settings import AwsSettings


def delta_uri(lake_path: str, table: str) -> str:
    """The table's URI for delta-rs: `s3a://` and `s3n://` become `s3://`."""
    path = f"{lake_path.rstrip('/')}/{table}"
    for scheme in ("s3a://", "s3n://"):
        if path.startswith(scheme):
            return "s3://" + path[len(scheme) :]
    return path


def storage_options(aws: AwsSettings) -> dict[str, str]:
    """delta-rs (object_store) options for the profile's S3: endpoint, region, credentials."""
    options = {"AWS_REGION": aws.region}
    if aws.endpoint_url:
        options["AWS_ENDPOINT_URL"] = aws.endpoint_url
        if aws.endpoint_url.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if aws.access_key_id and aws.secret_access_key:
        options["AWS_ACCESS_KEY_ID"] = aws.access_key_id
        options["AWS_SECRET_ACCESS_KEY"] = aws.secret_access_key
    return options


def options_for(uri: str, aws: AwsSettings) -> dict[str, str] | None:
    """Storage options when `uri` is on S3, None for a local folder."""
    return storage_options(aws) if uri.startswith("s3://") else None
