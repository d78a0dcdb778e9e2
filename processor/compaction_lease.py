"""One compaction of a Delta table at a time, whoever runs it: a lease per table.

delta-rs 1.6.6 commits two OPTIMIZE runs that read the same version: each removes the same
files and adds its own rewrite of them, and the table then holds those rows twice (its conflict
checker lets removes with `dataChange: false` through; ADR 0028, "Found later"). The job
compacts each table every 200 versions and `processor.lake_maintenance` compacts closed days
once a day, so both take the table's compaction lease first and compact only while they hold it.

The lease is a small file in the table's folder, `_compaction.lease` (Delta's readers and
VACUUM leave names starting with `_` alone):
- On S3, a JSON object taken with conditional puts: `If-None-Match: *` when there is none, and
  `If-Match: <its ETag>` to take over one that has expired, was given back, or was left by the
  same holder (a job restarted after a crash); of two takers only one put succeeds. It is given
  back with a conditional put that marks it released, so no conditional delete is needed. A
  holder that dies keeps it until it expires (`ttl_seconds`, which must outlast any compaction
  it runs). Expiry is judged by the taker's clock.
- On a local folder, an exclusive `flock` on the file, which the kernel drops when its process
  dies. (A lake on NFS or another network file system is not covered: use S3.)
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from config.lake import s3_client

if TYPE_CHECKING:
    from collections.abc import Iterator

    from config.lake import S3Access

logger = logging.getLogger(__name__)

__all__ = ["LEASE_NAME", "LeaseAttempt", "compaction_lease"]

LEASE_NAME = "_compaction.lease"
# S3's answers when a conditional put loses: the condition failed (412), or another
# conditional write to the key was in flight (409).
_LOST_RACE = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})


@dataclass(frozen=True)
class LeaseAttempt:
    """The outcome of asking for a table's compaction lease."""

    taken: bool
    # Who holds the lease: the caller when taken; else the other holder, "" when unknown.
    holder: str


@contextmanager
def compaction_lease(
    uri: str, holder: str, aws: S3Access | None, ttl_seconds: float
) -> Iterator[LeaseAttempt]:
    """Ask for the compaction lease of the table at `uri` (a folder or `s3://`) as `holder`.

    Compact inside the block only when the attempt says `taken`; the lease is given back when
    the block ends. Holder names must differ between processes that may compact the same
    table at once; one holder may take back a lease it left (S3), so the job names itself by
    its query, of which one runs per checkpoint.
    """
    if uri.startswith("s3://"):
        if aws is None:
            raise ValueError(f"{uri}: a lease on S3 needs the profile's AWS settings")
        lease = _S3Lease(s3_client(aws), *_bucket_and_key(uri))
        etag, current = lease.take(holder, ttl_seconds)
        if etag is None:
            yield LeaseAttempt(False, current)
            return
        try:
            yield LeaseAttempt(True, holder)
        finally:
            lease.give_back(holder, etag)
        return
    with _local_lease(Path(uri) / LEASE_NAME, holder) as attempt:
        yield attempt


def _bucket_and_key(uri: str) -> tuple[str, str]:
    bucket, _, table = uri.removeprefix("s3://").partition("/")
    return bucket, f"{table.strip('/')}/{LEASE_NAME}".lstrip("/")


def _lease_body(holder: str, expires_at_ms: int) -> bytes:
    # The token makes every body, and so every ETag, unique: two puts of the same holder and
    # expiry must not match each other's If-Match.
    expires = datetime.fromtimestamp(expires_at_ms / 1000, UTC).isoformat() if expires_at_ms else ""
    return json.dumps(
        {
            "holder": holder,
            "expires_at_ms": expires_at_ms,
            "expires_at": expires or "released",
            "token": uuid.uuid4().hex,
        }
    ).encode()


@dataclass(frozen=True)
class _S3Lease:
    client: Any
    bucket: str
    key: str

    def take(self, holder: str, ttl_seconds: float) -> tuple[str | None, str]:
        """(the ETag of the lease this call put, None when not taken; who holds it)."""
        now_ms = int(time.time() * 1000)
        condition: dict[str, str]
        try:
            current = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as error:
            if _error_code(error) not in ("NoSuchKey", "404"):
                raise
            condition = {"IfNoneMatch": "*"}
        else:
            other, expires_at_ms = _read_lease(current["Body"].read(), self.key)
            if other != holder and expires_at_ms > now_ms:
                return None, other
            condition = {"IfMatch": current["ETag"]}
        body = _lease_body(holder, now_ms + int(ttl_seconds * 1000))
        try:
            put = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, **condition)
        except ClientError as error:
            if _error_code(error) in _LOST_RACE:
                return None, ""  # another taker's put landed between this read and put
            raise
        return str(put["ETag"]), holder

    def give_back(self, holder: str, etag: str) -> None:
        """Mark the lease released, unless someone took it over (then it is theirs now)."""
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=_lease_body(holder, 0), IfMatch=etag
            )
        except ClientError as error:
            if _error_code(error) not in _LOST_RACE:
                # Not given back: it expires on its own; the compaction itself is done.
                logger.warning("s3://%s/%s: the lease was not given back: %s", self.bucket,
                               self.key, error)  # fmt: skip
                return
            logger.warning(
                "s3://%s/%s: the compaction lease was taken over while %s held it "
                "(the compaction outlived the lease's time to live)",
                self.bucket, self.key, holder,
            )  # fmt: skip


def _read_lease(body: bytes, key: str) -> tuple[str, int]:
    """(holder, expiry in epoch ms) of a lease object; an unreadable one counts as expired."""
    try:
        lease = json.loads(body)
        return str(lease["holder"]), int(lease["expires_at_ms"])
    except (ValueError, KeyError, TypeError):
        logger.warning("%s: unreadable compaction lease, taken over: %r", key, body[:200])
        return "", 0


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextmanager
def _local_lease(path: Path, holder: str) -> Iterator[LeaseAttempt]:
    # No folder, no table: the caller's compaction would fail anyway, so this fails first.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield LeaseAttempt(False, os.pread(fd, 1024, 0).decode(errors="replace").strip())
            return
        # Who holds it, for the one who is refused (the lock itself is the kernel's).
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        try:
            yield LeaseAttempt(True, holder)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
