"""The driver's spool: a batch's parsed records handed from the source to the sink by file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from processor.kinesis_source.spool import PREFIX, BatchSpool, offset_key

OFFSET = {
    "position": {"type": "TRIM_HORIZON"},
    "shards": {"shardId-0": {"after": "49", "closed": False, "caughtUp": True}},
}


def record_batch(values: list[int]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"sequenceNumber": [str(v) for v in values], "n": values})


def test_a_batch_is_taken_back_by_its_end_offset_as_it_was_put(tmp_path: Path) -> None:
    spool = BatchSpool(tmp_path / "spool")
    batches = [record_batch([1, 2, 3]), record_batch([4])]
    spool.put(OFFSET, batches)
    # The offset as the sink reads it back from Spark's offset log: the same dict, keys in
    # another order.
    read_back = {"shards": OFFSET["shards"], "position": {"type": "TRIM_HORIZON"}}
    taken = spool.take(read_back)
    assert taken is not None
    assert [b.to_pydict() for b in taken] == [b.to_pydict() for b in batches]
    other = {**OFFSET, "shards": {"shardId-0": {"after": "50", "closed": False}}}
    assert spool.take(other) is None
    assert offset_key(other) != offset_key(OFFSET)


def test_a_put_leaves_only_the_whole_file_and_remove_and_close_clean_up(tmp_path: Path) -> None:
    spool = BatchSpool.create(str(tmp_path))
    assert spool.put(OFFSET, []) is None  # nothing to hand over: the sink collects
    path = spool.put(OFFSET, [record_batch([1])])
    assert path is not None and [p.name for p in spool.directory.iterdir()] == [path.name]
    spool.remove(OFFSET)
    assert spool.take(OFFSET) is None
    spool.remove(OFFSET)  # already gone: no error
    spool.put(OFFSET, [record_batch([1])])
    spool.close()
    assert not spool.directory.exists()


def test_a_new_spool_deletes_those_of_processes_now_gone(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f"{PREFIX}{int(gone.stdout)}-x1"
    stale.mkdir()
    (stale / "batch.arrow").write_bytes(b"left by a killed job")
    running = tmp_path / f"{PREFIX}{os.getpid()}-x2"  # this process's: still in use
    running.mkdir()
    unrelated = tmp_path / "kinesis-spool-notes"
    unrelated.mkdir()
    spool = BatchSpool.create(str(tmp_path))
    assert not stale.exists() and running.exists() and unrelated.exists()
    assert spool.directory.name.startswith(f"{PREFIX}{os.getpid()}-")
