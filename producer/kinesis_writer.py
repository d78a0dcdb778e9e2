"""PutRecords batching with per-entry retry that keeps each card's order.

Limits of the service: at most 500 records and 5 MiB per call, 1 MiB per record (data plus
partition key). A call holds at most one record per partition key, so when an entry fails and is
retried, no later record of the same card can already have been written: per-card order holds
under partial failures and throttling. A record that waits for its card's turn is passed only by
records sent at most MAX_REORDER_MS after it (their send time, the generator's clock), so a
stream replayed far faster than real time is not shuffled by hours inside a shard: the
processor's lateness rule would see that as late. Records that still fail after the retry budget
are appended to a JSONL file with their error, and counted; nothing is dropped silently.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from config.aws import RETRYABLE_KINESIS_ERRORS
from producer.records import OutgoingRecord
from producer.stats import SendStats

logger = logging.getLogger(__name__)

MAX_RECORDS_PER_CALL: Final = 500
MAX_BYTES_PER_CALL: Final = 5 * 1024 * 1024
MAX_BYTES_PER_RECORD: Final = 1024 * 1024
# Well inside the processor's 10-minute watermark delay.
MAX_REORDER_MS: Final = 60_000


class KinesisWriter:
    """Buffers records and writes them with PutRecords; call `flush()` at the end."""

    def __init__(
        self,
        client: Any,
        stream_name: str,
        stats: SendStats,
        failed_records_path: str | Path,
        batch_size: int = MAX_RECORDS_PER_CALL,
        max_attempts: int = 8,
        base_backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
        seed: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= batch_size <= MAX_RECORDS_PER_CALL:
            raise ValueError(f"batch_size must be in 1..{MAX_RECORDS_PER_CALL}")
        self._client = client
        self._stream = stream_name
        self.stats = stats
        self._failed_path = Path(failed_records_path)
        self._batch_size = batch_size
        self._max_attempts = max_attempts
        self._base = base_backoff_s
        self._cap = max_backoff_s
        self._jitter = random.Random(seed)
        self._sleep = sleep
        self._pending: deque[tuple[OutgoingRecord, int]] = deque()  # (record, attempts so far)

    def put(self, records: Iterable[OutgoingRecord]) -> None:
        """Queue records; full batches are sent as soon as they fill."""
        for record in records:
            if len(record.data) + len(record.partition_key.encode()) > MAX_BYTES_PER_RECORD:
                self._give_up(record, "RecordTooLarge", "record is larger than 1 MiB")
                continue
            self._pending.append((record, 0))
            if len(self._pending) >= self._batch_size * 2:
                self._send_one_batch()

    def flush(self) -> None:
        """Send everything queued, retrying until it is written or out of attempts."""
        while self._pending:
            self._send_one_batch()

    # ------------------------------------------------------------------ internals
    def _take_batch(self) -> list[tuple[OutgoingRecord, int]]:
        """First records of distinct partition keys, in queue order, within the call limits;
        the call ends where it would pass a waiting record by more than MAX_REORDER_MS."""
        batch: list[tuple[OutgoingRecord, int]] = []
        keep: deque[tuple[OutgoingRecord, int]] = deque()
        keys: set[str] = set()
        size = 0
        first_waiting_ms: int | None = None
        while self._pending and len(batch) < self._batch_size:
            item = self._pending.popleft()
            record = item[0]
            if (
                first_waiting_ms is not None
                and record.send_time_ms - first_waiting_ms > MAX_REORDER_MS
            ):
                keep.append(item)
                break
            record_size = len(record.data) + len(record.partition_key.encode())
            if record.partition_key in keys or size + record_size > MAX_BYTES_PER_CALL:
                if first_waiting_ms is None:
                    first_waiting_ms = record.send_time_ms
                keys.add(record.partition_key)  # later records of this key wait their turn
                keep.append(item)
                if size + record_size > MAX_BYTES_PER_CALL:
                    break
                continue
            keys.add(record.partition_key)
            batch.append(item)
            size += record_size
        keep.extend(self._pending)
        self._pending = keep
        return batch

    def _backoff(self, attempt: int) -> None:
        self._sleep(self._jitter.uniform(0, min(self._cap, self._base * 2**attempt)))

    def _send_one_batch(self) -> None:
        batch = self._take_batch()
        if not batch:
            return
        entries = [{"Data": r.data, "PartitionKey": r.partition_key} for r, _ in batch]
        try:
            response = self._client.put_records(StreamName=self._stream, Records=entries)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in RETRYABLE_KINESIS_ERRORS:
                raise
            self._retry([(r, a, code, str(exc)) for r, a in batch])
            return
        except BotoCoreError as exc:  # connection reset, read timeout: retry the whole call
            self._retry([(r, a, type(exc).__name__, str(exc)) for r, a in batch])
            return
        failed = []
        for (record, attempts), result in zip(batch, response["Records"], strict=True):
            if "ErrorCode" in result:
                failed.append(
                    (record, attempts, result["ErrorCode"], result.get("ErrorMessage", ""))
                )
            else:
                self.stats.record_sent(record, result["ShardId"])
        if failed:
            self._retry(failed)

    def _retry(self, failed: list[tuple[OutgoingRecord, int, str, str]]) -> None:
        """Put failed entries back at the front, in order; give up after the budget."""
        retry: list[tuple[OutgoingRecord, int]] = []
        highest = 0
        for record, attempts, code, message in failed:
            attempts += 1
            if attempts >= self._max_attempts:
                self._give_up(record, code, message)
            else:
                self.stats.retried += 1
                retry.append((record, attempts))
                highest = max(highest, attempts)
        self._pending.extendleft(reversed(retry))
        if retry:
            self._backoff(highest)

    def _give_up(self, record: OutgoingRecord, code: str, message: str) -> None:
        self.stats.failed += 1
        self._failed_path.parent.mkdir(parents=True, exist_ok=True)
        # The payload carries the PAN as the issuer sent it: owner-only permissions.
        fd = os.open(self._failed_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as out:
            out.write(
                json.dumps(
                    {
                        "partition_key": record.partition_key,
                        "data_base64": base64.b64encode(record.data).decode(),
                        "error_code": code,
                        "error_message": message,
                    }
                )
                + "\n"
            )
        logger.error("gave up on a record after retries: %s %s", code, message)
