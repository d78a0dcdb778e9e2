"""Collect a micro-batch as Arrow and convert each of its record batches as it arrives.

`DataFrame.toArrow()` returns only once Spark has sent the last partition, although the
partitions reach the driver one by one: in a 40,000-event batch the first quarter arrived after
~500 ms of a ~800 ms collect (ADR 0043). The sink then turned the whole table into rows and
feature events, with Spark idle. Here a thread reads the partitions off Spark's socket as they
come, and the caller's `convert` runs on each while the later ones are still computed.

It reads the stream Spark's own `toArrow()` reads (`collectAsArrowToPython`), through the same
PySpark helpers, so errors and ordering are Spark's: the record batches arrive in the order the
tasks end, then the order they belong in. The table and the converted parts come back in that
order, exactly as `toArrow()` returns it. A session without a JVM (Spark Connect) has no such
socket; its batches are converted after a plain `toArrow()`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
from pyspark.errors.exceptions.captured import unwrap_spark_exception
from pyspark.sql.pandas.serializers import ArrowCollectSerializer
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.traceback_utils import SCCallSiteSync
from pyspark.util import _load_from_socket

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

T = TypeVar("T")

_END = object()


def _arrow_schema(frame: DataFrame) -> pa.Schema:
    """The Arrow schema `toArrow()` gives `frame` (UTC timestamps; large types if configured)."""
    large = frame.sparkSession.conf.get("spark.sql.execution.arrow.useLargeVarTypes", "false")
    return to_arrow_schema(
        frame.schema,
        error_on_duplicated_field_names_in_struct=True,
        timezone="UTC",
        prefers_large_types=str(large).lower() == "true",
    )


def collect_converted(
    frame: DataFrame, convert: Callable[[pa.RecordBatch], T]
) -> tuple[pa.Table, list[T]]:
    """`frame.toArrow()`, and `convert` of each of its record batches, in the table's order.

    `convert` runs on the calling thread, on each batch as soon as it has arrived (cast to the
    table's schema), while Spark still computes and sends the rest.
    """
    jdf = getattr(frame, "_jdf", None)
    if jdf is None:
        table = frame.toArrow()
        return table, [convert(batch) for batch in table.to_batches()]
    schema = _arrow_schema(frame)
    with SCCallSiteSync(frame.sparkSession.sparkContext):
        port, secret, server = jdf.collectAsArrowToPython()
    arrived: queue.Queue[Any] = queue.Queue()
    # The thread keeps the socket drained whatever the caller does: Spark writes each
    # partition's batches from its scheduler's thread, which a full socket would hold up.
    reader = threading.Thread(
        target=_read_stream, args=((port, secret), arrived), name="arrow-collect", daemon=True
    )
    reader.start()
    batches: list[pa.RecordBatch] = []
    parts: list[T] = []
    order: list[int] | None = None
    try:
        while (item := arrived.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, list):  # the last item: the batches' order in the table
                order = item
                continue
            batch = item if item.schema == schema else item.cast(schema)
            batches.append(batch)
            parts.append(convert(batch))
    finally:
        reader.join()
        with unwrap_spark_exception():
            server.getResult()  # raises the job's error, if it failed
    assert order is not None, "the collect's stream ended without the batches' order"
    ordered = [batches[i] for i in order]
    table = pa.Table.from_batches(ordered, schema) if ordered else schema.empty_table()
    return table, [parts[i] for i in order]


def spooled_converted(
    frame: DataFrame, batches: list[pa.RecordBatch], convert: Callable[[pa.RecordBatch], T]
) -> tuple[pa.Table, list[T]]:
    """What `collect_converted(frame, convert)` gives, from `frame`'s record batches as the
    source spooled them on the driver (processor/kinesis_source/spool.py) instead of Spark:
    each is cast to the schema `toArrow()` would give, so the table and rows are the same."""
    schema = _arrow_schema(frame)
    cast = [batch if batch.schema == schema else batch.cast(schema) for batch in batches]
    table = pa.Table.from_batches(cast, schema) if cast else schema.empty_table()
    return table, [convert(batch) for batch in cast]


def _read_stream(socket_info: tuple[int, str], arrived: queue.Queue[Any]) -> None:
    try:
        with _load_from_socket(socket_info, ArrowCollectSerializer()) as stream:
            for item in stream:
                arrived.put(item)
    except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
        arrived.put(error)
    finally:
        arrived.put(_END)
