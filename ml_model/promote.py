"""Promote the challenger to champion, keep the old champion, and record the promotion.

    python -m ml_model.promote --champion data/models/current --challenger data/models/next
    python -m ml_model.compare promote --champion ... --challenger ... --metrics compare.json

The challenger must pass the checks the job makes when it loads a model: the features this
pipeline computes, in the same order, and the library versions its pickle was written with.

A local champion folder is swapped atomically: the challenger is copied to a staging folder
beside the champion (same file system), which is then exchanged with the champion in one
rename (Linux `renameat2(RENAME_EXCHANGE)`), so the champion path always holds a complete
model; the old one is kept as `<champion>.previous-<version>`. Where the exchange is not
available, two renames leave the path empty for an instant (a job starting then refuses to
start, it never loads half a model).

On S3 there is no rename: the champion's objects are copied to `<champion>/previous/<version>/`,
then the champion's card is deleted, the challenger's model copied over the champion's, and
its card copied last. That is not atomic, but it is safe: the job reads the model once, at
start, and reads the card again after the model (processor/scoring.py), so a job starting
mid-swap either fails on the missing card or sees the card change and reads both again; a
running job keeps the model it loaded until it is restarted.

Each promotion appends one JSON line (time, user, paths, old and new version, backup, metrics
if given) to `promotions.jsonl` beside the champion, and prints it.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import getpass
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.aws import make_client
from config.cli import configure_logging, load_settings, new_parser, run_cli
from config.exceptions import ModelError
from ml_model.artifacts import (
    CARD_FILE,
    MODEL_FILE,
    ModelCard,
    artifacts_exist,
    load_model,
    read_artifact,
    read_card,
)
from ml_model.features import FEATURE_NAMES
from ml_model.scorer import check_features

if TYPE_CHECKING:
    import boto3

    from config.settings import AwsSettings, Settings

logger = logging.getLogger(__name__)

LOG_FILE = "promotions.jsonl"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@dataclass(frozen=True)
class Promotion:
    """One line of promotions.jsonl."""

    time: str
    user: str
    champion: str
    challenger: str
    old_version: str | None
    new_version: str
    backup: str | None
    metrics: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _is_s3(path: str) -> bool:
    return path.startswith(("s3://", "s3a://"))


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").removeprefix("s3a://").partition("/")
    return bucket, prefix.strip("/")


def _key(prefix: str, name: str) -> str:
    return f"{prefix}/{name}".lstrip("/")


def check_promotable(challenger: str, aws: AwsSettings) -> tuple[ModelCard, dict[str, bytes]]:
    """(card, artifact files) of the challenger, after the job's own checks: features, library
    versions, and that it unpickles. These checked bytes are what gets installed."""
    card = read_card(challenger, aws)
    check_features(card, FEATURE_NAMES)
    blobs = {
        MODEL_FILE: read_artifact(challenger, MODEL_FILE, aws),
        CARD_FILE: read_artifact(challenger, CARD_FILE, aws),
    }
    if ModelCard.from_json(blobs[CARD_FILE].decode(), challenger) != card:
        raise ModelError(f"challenger {challenger} changed while it was read: promote again")
    load_model(blobs[MODEL_FILE], card, challenger)
    return card, blobs


def _exchange(first: Path, second: Path) -> None:
    """Swap two paths in one atomic rename (Linux); else two renames and a warning."""
    rename2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if rename2 is not None:
        rename2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
        rename2.argtypes += [ctypes.c_uint]
        paths = os.fsencode(first), os.fsencode(second)
        if rename2(_AT_FDCWD, paths[0], _AT_FDCWD, paths[1], _RENAME_EXCHANGE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, f"cannot exchange {first} and {second}: {os.strerror(code)}")
    logger.warning("no atomic exchange here: %s is missing for an instant", second)
    aside = second.with_name(f"{second.name}.aside-{os.getpid()}")
    os.rename(second, aside)
    os.rename(first, second)
    os.rename(aside, first)


def _free_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _sync(folder: Path) -> None:
    for file in folder.rglob("*"):
        if file.is_file():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())


def promote_local(
    champion: Path, challenger: Path, blobs: dict[str, bytes]
) -> tuple[str | None, str | None]:
    """(old version, backup folder): the swap of the module docstring.

    The staging folder is a copy of the challenger's (its training report too), with the
    checked artifact bytes written over its model and card.
    """
    if champion.exists() and not artifacts_exist(str(champion)):
        raise ModelError(f"--champion {champion} exists but holds no {CARD_FILE}: not replaced")
    old = read_card(str(champion)) if champion.exists() else None
    champion.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{champion.name}.staging-", dir=champion.parent))
    try:
        shutil.copytree(challenger, staging, dirs_exist_ok=True)
        for name, blob in blobs.items():
            (staging / name).write_bytes(blob)
        _sync(staging)
        if old is None:
            staging.rename(champion)  # fails if a folder appeared there meanwhile
            return None, None
        _exchange(staging, champion)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    # The staging folder now holds the old champion: from here on it is kept, never removed.
    backup = _free_name(champion.with_name(f"{champion.name}.previous-{old.version}"))
    staging.rename(backup)
    return old.version, str(backup)


def promote_s3(
    champion: str,
    blobs: dict[str, bytes],
    aws: AwsSettings,
    session: boto3.Session | None = None,
) -> tuple[str | None, str | None]:
    """(old version, backup prefix): back up, drop the card, model, card last (docstring)."""
    from botocore.exceptions import ClientError

    client = make_client("s3", aws, session)
    bucket, prefix = _split_s3(champion)
    try:
        client.head_object(Bucket=bucket, Key=_key(prefix, CARD_FILE))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
        old: ModelCard | None = None  # the first model there
    else:
        old = read_card(champion, aws)
    backup = None
    if old is not None:
        backup_prefix = _key(prefix, f"previous/{old.version}")
        for name in (MODEL_FILE, CARD_FILE):
            client.copy_object(
                Bucket=bucket,
                Key=_key(backup_prefix, name),
                CopySource={"Bucket": bucket, "Key": _key(prefix, name)},
            )
        backup = f"s3://{bucket}/{backup_prefix}"
        client.delete_object(Bucket=bucket, Key=_key(prefix, CARD_FILE))
    for name in (MODEL_FILE, CARD_FILE):  # the card last: readers key off it
        client.put_object(Bucket=bucket, Key=_key(prefix, name), Body=blobs[name])
    return (old.version if old else None), backup


def record(
    promotion: Promotion, champion: str, aws: AwsSettings, session: boto3.Session | None = None
) -> str:
    """Append the promotion to promotions.jsonl beside the champion; returns where."""
    line = promotion.to_json() + "\n"
    if not _is_s3(champion):
        log = Path(champion).resolve().parent / LOG_FILE
        with log.open("a", encoding="utf-8") as handle:
            handle.write(line)
        return str(log)
    client = make_client("s3", aws, session)
    bucket, prefix = _split_s3(champion)
    key = _key(prefix.rpartition("/")[0], LOG_FILE)
    try:
        earlier = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        earlier = b""
    client.put_object(Bucket=bucket, Key=key, Body=earlier + line.encode())
    return f"s3://{bucket}/{key}"


def promote(
    champion: str,
    challenger: str,
    aws: AwsSettings,
    metrics: dict[str, Any] | None = None,
    user: str | None = None,
    session: boto3.Session | None = None,
) -> Promotion:
    """Check, swap and record one promotion (module docstring)."""
    if champion.rstrip("/") == challenger.rstrip("/"):
        raise ModelError(f"--challenger {challenger} is the champion itself")
    new, blobs = check_promotable(challenger, aws)
    if _is_s3(champion):
        old_version, backup = promote_s3(champion, blobs, aws, session)
    elif _is_s3(challenger):
        raise ModelError("a local champion is promoted from a local challenger folder")
    else:
        old_version, backup = promote_local(Path(champion), Path(challenger), blobs)
    promotion = Promotion(
        time=datetime.now(UTC).isoformat(timespec="seconds"),
        user=user or _user(),
        champion=champion,
        challenger=challenger,
        old_version=old_version,
        new_version=new.version,
        backup=backup,
        metrics=metrics,
    )
    where = record(promotion, champion, aws, session)
    logger.info(
        "promoted %s over %s at %s (recorded in %s)", new.version, old_version, champion, where
    )
    return promotion


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("ml_model.promote", __doc__)
    parser.add_argument(
        "--champion",
        default=None,
        help="the champion's folder or s3:// prefix (default: the profile's model.path)",
    )
    parser.add_argument(
        "--challenger",
        default=None,
        help="the model to promote (default: the profile's model.challenger_path)",
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        default=None,
        metavar="FILE.json",
        help="a `python -m ml_model.compare --json` report to record with the promotion",
    )
    return parser


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    settings = settings or load_settings(args.profile)
    champion = args.champion or settings.model.path
    challenger = args.challenger or settings.model.challenger_path
    if not challenger:
        raise ModelError("no challenger: pass --challenger PATH (or set model.challenger_path)")
    metrics = None
    if args.metrics is not None:
        try:
            metrics = json.loads(args.metrics.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ModelError(f"--metrics {args.metrics} is not JSON: {exc}") from exc
    print(promote(champion, challenger, settings.aws, metrics).to_json())
    return 0


def cli() -> int:
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
