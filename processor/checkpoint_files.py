"""Small files beside Spark's checkpoint, named by batch id, on a local folder or S3.

What the job keeps besides Spark's own logs (feature state, watermarks) is written once per
batch under the batch's id, and read back "as of" a batch: the newest file whose id is at most
that batch. Batch N only ever reads as of N-1, so a replay of N after a crash never sees what its
own first attempt wrote, and decides exactly as that attempt did.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.lake import s3_client

if TYPE_CHECKING:
    from config.settings import Settings

_BATCH_NAME = re.compile(r"^(\d+)(?:\.[a-z]+)?$")


@dataclass(frozen=True)
class CheckpointFiles:
    """One folder of per-batch files under a checkpoint (local path, s3:// or s3a://)."""

    checkpoint_location: str
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> CheckpointFiles:
        """The files under the profile's checkpoint location, with its AWS settings."""
        aws = settings.aws
        return cls(
            settings.processor.checkpoint_location,
            aws.endpoint_url,
            aws.region,
            aws.access_key_id,
            aws.secret_access_key,
        )

    def _s3(self) -> tuple[Any, str, str] | None:
        if not self.checkpoint_location.startswith(("s3a://", "s3://")):
            return None
        bucket, _, prefix = self.checkpoint_location.split("://", 1)[1].partition("/")
        return s3_client(self), bucket, prefix.strip("/")

    def batch_ids(self, folder: str, suffix: str = "") -> list[int]:
        """Ids of the files `<folder>/<id><suffix>`, ascending (Spark's `commits` too)."""
        s3 = self._s3()
        if s3 is not None:
            client, bucket, prefix = s3
            names = [
                item["Key"].rsplit("/", 1)[-1]
                for page in client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=f"{prefix}/{folder}/".lstrip("/")
                )
                for item in page.get("Contents", [])
            ]
        else:
            path = Path(self.checkpoint_location) / folder
            names = [p.name for p in path.iterdir()] if path.is_dir() else []
        ids = []
        for name in names:
            match = _BATCH_NAME.match(name)
            if match and name.endswith(suffix):
                ids.append(int(match.group(1)))
        return sorted(ids)

    def last_committed_batch(self) -> int | None:
        """The newest batch id in Spark's commit log, or None before the first commit."""
        ids = self.batch_ids("commits")
        return ids[-1] if ids else None

    def get(self, name: str) -> bytes:
        s3 = self._s3()
        if s3 is not None:
            client, bucket, prefix = s3
            response = client.get_object(Bucket=bucket, Key=f"{prefix}/{name}".lstrip("/"))
            body: bytes = response["Body"].read()
            return body
        return (Path(self.checkpoint_location) / name).read_bytes()

    def exists(self, name: str) -> bool:
        s3 = self._s3()
        if s3 is not None:
            client, bucket, prefix = s3
            key = f"{prefix}/{name}".lstrip("/")
            listing = client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
            return any(item["Key"] == key for item in listing.get("Contents", []))
        return (Path(self.checkpoint_location) / name).is_file()

    def put(self, name: str, body: bytes) -> None:
        s3 = self._s3()
        if s3 is not None:
            client, bucket, prefix = s3
            client.put_object(Bucket=bucket, Key=f"{prefix}/{name}".lstrip("/"), Body=body)
            return
        target = Path(self.checkpoint_location) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: a reader never sees half a file.
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            tmp.write(body)
        os.replace(tmp.name, target)

    def delete(self, name: str) -> None:
        s3 = self._s3()
        if s3 is not None:
            client, bucket, prefix = s3
            client.delete_object(Bucket=bucket, Key=f"{prefix}/{name}".lstrip("/"))
            return
        (Path(self.checkpoint_location) / name).unlink(missing_ok=True)
