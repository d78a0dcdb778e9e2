"""Where records go: a Kinesis stream, standard output, or a JSONL file.

A sink only moves bytes; the file and stdout sinks write one payload per line, so their output
can be replayed with `--replay`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from config.aws import make_client
from config.exceptions import AwsSetupError
from producer.kinesis_writer import KinesisWriter
from producer.stats import SendStats

if TYPE_CHECKING:
    import boto3

    from config.settings import Settings
    from producer.records import OutgoingRecord


class Sink(Protocol):
    stats: SendStats

    def send(self, records: Iterable[OutgoingRecord]) -> None: ...

    def close(self) -> None: ...


class LineSink:
    """Writes each payload as one line (stdout or a JSONL file)."""

    def __init__(self, stream: IO[bytes], owned: bool) -> None:
        self.stats = SendStats()
        self._stream = stream
        self._owned = owned

    def send(self, records: Iterable[OutgoingRecord]) -> None:
        for record in records:
            self._stream.write(record.data + b"\n")
            self.stats.record_sent(record)

    def close(self) -> None:
        self._stream.flush()
        if self._owned:
            self._stream.close()


def stdout_sink() -> LineSink:
    return LineSink(sys.stdout.buffer, owned=False)


def file_sink(path: str | Path) -> LineSink:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return LineSink(target.open("wb"), owned=True)


class KinesisSink:
    """PutRecords to the profile's stream through `KinesisWriter`."""

    def __init__(self, writer: KinesisWriter) -> None:
        self._writer = writer
        self.stats = writer.stats

    def send(self, records: Iterable[OutgoingRecord]) -> None:
        self._writer.put(records)

    def close(self) -> None:
        self._writer.flush()


def check_stream(client: Any, stream_name: str) -> dict[str, Any]:
    """Describe the stream; a missing one is an error naming --stream-name."""
    try:
        summary = client.describe_stream_summary(StreamName=stream_name)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "ResourceNotFoundException":
            raise AwsSetupError(
                f"Kinesis stream {stream_name!r} does not exist (option --stream-name); "
                "create it with `python -m scripts.setup_aws`"
            ) from exc
        raise AwsSetupError(f"cannot describe Kinesis stream {stream_name!r}: {exc}") from exc
    return dict(summary["StreamDescriptionSummary"])


def kinesis_sink(
    settings: Settings, session: boto3.Session | None = None, batch_size: int | None = None
) -> KinesisSink:
    """A sink for the profile's stream, after checking that the stream exists."""
    client = make_client("kinesis", settings.aws, session)
    check_stream(client, settings.kinesis.stream_name)
    writer = KinesisWriter(
        client,
        settings.kinesis.stream_name,
        SendStats(),
        settings.producer.failed_records_path,
        batch_size=batch_size or settings.producer.batch_size,
        seed=settings.producer.seed,
    )
    return KinesisSink(writer)
