"""KPL de-aggregation: one Kinesis record may pack many user records.

Format: 4 magic bytes, a protobuf `AggregatedRecord`, and the MD5 of the protobuf bytes. A record
without the magic or with a wrong digest is a plain user record. The protobuf is decoded here
with a small wire-format reader (fields 1: partition-key table, 3: records; a record's field 1 is
the key index and 3 the data), because the `aws-kinesis-agg` package's generated module cannot be
imported as a package module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Final

MAGIC: Final = b"\xf3\x89\x9a\xc2"
DIGEST_SIZE: Final = 16


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs of one protobuf message; skips unknown wire types."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            yield number, buf[pos : pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def user_records(data: bytes, partition_key: str) -> Iterator[tuple[bytes, str, int]]:
    """(data, partition key, sub-sequence number) of every user record in one Kinesis record."""
    if len(data) > len(MAGIC) + DIGEST_SIZE and data.startswith(MAGIC):
        body = data[len(MAGIC) : -DIGEST_SIZE]
        if hashlib.md5(body).digest() == data[-DIGEST_SIZE:]:  # noqa: S324 - format checksum
            keys: list[str] = []
            records: list[bytes] = []
            for number, value in _fields(body):
                if number == 1 and isinstance(value, bytes):
                    keys.append(value.decode("utf-8"))
                elif number == 3 and isinstance(value, bytes):
                    records.append(value)
            for index, record in enumerate(records):
                key_index, payload = 0, b""
                for number, value in _fields(record):
                    if number == 1 and isinstance(value, int):
                        key_index = value
                    elif number == 3 and isinstance(value, bytes):
                        payload = value
                yield payload, keys[key_index], index
            return
    yield data, partition_key, 0
