"""The source option `recordParser`: records parsed where the source reads them (ADR 0023).

`recordParser` names a factory as `module:function`; it is called with `recordParserArgument`
(or None) and returns a `RecordParser`. The source then yields the parser's batches instead of
raw records, and parses a backlogged shard's next batch in its read ahead (ADR 0020), while the
current batch is still in the sink, instead of in the batch's own Spark tasks.

A parser must be a pure function of each record and its Kinesis metadata, so a replayed batch
parses as its first attempt did wherever it runs, and must hold no secret in its pickled form:
it is shipped to the executors with the reader.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import pyarrow as pa
from pyspark.sql.types import StructType

from config.exceptions import SourceOptionError


class RecordParser(Protocol):
    """Source batches (`reader.ARROW_SCHEMA`) -> batches of `schema()`, row for row or not."""

    def schema(self) -> StructType: ...

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch: ...


def load_parser(spec: str, argument: str | None) -> RecordParser:
    """The parser `spec` names; SourceOptionError naming the option if it cannot be built."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise SourceOptionError(f"option 'recordParser' must be module:function, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise SourceOptionError(f"option 'recordParser': cannot load {spec!r} ({exc})") from exc
    try:
        parser: RecordParser = factory(argument)
    except (TypeError, ValueError) as exc:
        raise SourceOptionError(f"option 'recordParserArgument': {exc}") from exc
    if not callable(parser) or not isinstance(parser.schema(), StructType):
        raise SourceOptionError(f"option 'recordParser': {spec!r} did not build a record parser")
    return parser
