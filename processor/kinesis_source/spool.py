"""The driver's spool: a batch's parsed records, handed from the source to the sink on the driver.

In `handoff` mode the source's planner (a Python process on the driver) has read and parsed a
batch's records before the batch runs. When the sink is a driver-side `foreachBatch` that
collects the batch anyway, sending those records through Spark (pickled into the partitions,
to the executors' Python workers, into the JVM's rows and back out as Arrow) only brings them
back to the machine they were on: ~0.8 s of a 40,000-record batch (ADR 0048). With the
`driverSpool` option the source also writes the batch's parsed record batches to one Arrow IPC
file in that directory, named after the batch's end offset, before it returns the offset. The
sink reads the end offset from Spark's offset log (written before the batch runs) and takes the
file instead of collecting the DataFrame; Spark then never computes the batch. Spark still
plans it (`foreachBatch` builds the batch's RDD), so `partitions()` plans a spooled batch's
ranges without their records, which it would otherwise pickle and send to the JVM for nothing.

The offset names the file because it names the records: one query's source decides each end
offset once, from the previous batch's end, so a file holds exactly the batch the offset log
says. A batch without a file (replayed after a restart, planned by a source that could not
parse it, or the option unset) is collected from Spark as before. The directory belongs to one
query: a new query gets a new one, so a file never outlives the stream or checkpoint it was
read from. Files are written whole under a temporary name and renamed, so the sink never reads
a half-written one, and the source deletes each once Spark has committed its batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

SUFFIX = ".arrow"
PREFIX = "kinesis-spool-"  # then the pid of the process that made it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def offset_key(offset: Mapping[str, Any]) -> str:
    """The file name of the batch that ends at `offset` (the source's offset dict, as returned
    by `latestOffset` and read back from the offset log)."""
    text = json.dumps(offset, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32] + SUFFIX


class BatchSpool:
    """One query's spool directory (see the module's docstring)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    @classmethod
    def create(cls, root: str | None = None) -> BatchSpool:
        """A new, empty directory under `root` (the system's temporary directory if None).

        The spools that processes now gone left there are deleted first: a job killed with
        SIGKILL never closes its own (it holds the batch in flight and the next, read ahead)."""
        parent = Path(root or tempfile.gettempdir())
        for stale in parent.glob(f"{PREFIX}*-*"):
            pid = stale.name[len(PREFIX) :].split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        return cls(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))

    def put(self, offset: Mapping[str, Any], batches: Iterable[pa.RecordBatch]) -> Path | None:
        """Write the batch that ends at `offset`; returns its file (None: no record batches)."""
        batches = list(batches)
        if not batches:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / offset_key(offset)
        partial = path.with_suffix(".partial")
        with pa.OSFile(str(partial), "wb") as sink:
            with pa.ipc.new_file(sink, batches[0].schema) as writer:
                for batch in batches:
                    writer.write_batch(batch)
        os.replace(partial, path)
        return path

    def take(self, offset: Mapping[str, Any]) -> list[pa.RecordBatch] | None:
        """The record batches of the batch that ends at `offset`; None if it has no file.

        The file is memory-mapped: the batches' buffers are its pages, read as they are used."""
        path = self.directory / offset_key(offset)
        try:
            source = pa.memory_map(str(path))
        except FileNotFoundError:
            return None
        with pa.ipc.open_file(source) as reader:
            return [reader.get_batch(index) for index in range(reader.num_record_batches)]

    def remove(self, offset: Mapping[str, Any]) -> None:
        """Delete the file of the batch that ends at `offset`, if any."""
        (self.directory / offset_key(offset)).unlink(missing_ok=True)

    def close(self) -> None:
        """Delete the directory and what is left in it."""
        shutil.rmtree(self.directory, ignore_errors=True)
