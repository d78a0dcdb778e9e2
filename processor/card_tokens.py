"""Card-number tokenisation: keyed HMAC-SHA256 token plus the last four digits.

The key comes from the environment variable named by `processor.tokenization_key_env` (on EKS
from a Kubernetes Secret), never from the repository. The same PAN always gives the same token
under one key, so tokens join across tables; without the key a token reveals nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final

from config.exceptions import ConfigError
from producer.contract import luhn_valid

MIN_KEY_BYTES: Final = 16
PAN_MIN_DIGITS: Final = 12
PAN_MAX_DIGITS: Final = 19

# A digit as it may stand in a raw payload: itself, or as a JSON escape (\u0034 is "4").
_DIGIT = rb"(?:[0-9]|\\u003[0-9])"
# What people and systems put between a PAN's digit groups: space, tab, dash, dot, no-break
# space, raw or JSON-escaped; up to three in a row ("4111 - 1111").
_SEPARATOR = rb"(?:[ \t.\-]|\xc2\xa0|\\u00(?:20|09|2[dDeE]|[aA]0))"
_DIGIT_RUN = re.compile(_DIGIT + rb"(?:" + _SEPARATOR + rb"{0,3}" + _DIGIT + rb")*")
_SEPARATOR_RUN = re.compile(_SEPARATOR + rb"+")
_ONE_DIGIT = re.compile(_DIGIT)


def load_key(env_var: str, environ: Mapping[str, str] | None = None) -> bytes:
    """The tokenisation key; a missing or short key is a ConfigError naming the variable."""
    value = (os.environ if environ is None else environ).get(env_var)
    if not value:
        raise ConfigError(
            f"environment variable {env_var} (processor.tokenization_key_env) must hold the "
            "card tokenisation key; set it from a secret"
        )
    key = value.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"the key in {env_var} must be at least {MIN_KEY_BYTES} bytes")
    return key


_SHA256_BLOCK: Final = 64


@lru_cache(maxsize=4)
def _keyed_sha256(key: bytes) -> tuple[Any, Any]:
    """HMAC-SHA256's inner and outer hashes with `key`'s pads already fed (RFC 2104)."""
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    padded = key.ljust(_SHA256_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in padded))
    outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in padded))
    return inner, outer


def card_token(pan: str, key: bytes) -> str:
    """Hex HMAC-SHA256 of the PAN under `key`: `hmac.new(key, pan, sha256).hexdigest()`.

    Built from copies of the two pad hashes rather than through `hmac`, which sets the key up
    again on every call: 2.1 µs a PAN against 5.0, on every event the stream parses (tested
    equal to `hmac` for short, block-sized and long keys).
    """
    inner, outer = _keyed_sha256(key)
    message = inner.copy()
    message.update(pan.encode("ascii"))
    token = outer.copy()
    token.update(message.digest())
    return token.hexdigest()


def _digits(chunk: bytes) -> str:
    """The digits a chunk of payload spells, escapes decoded."""
    return "".join(chr(m.group(0)[-1]) for m in _ONE_DIGIT.finditer(chunk))


def _pan_spans(run: bytes) -> list[tuple[int, int, str]]:
    """(start, end, digits) of each PAN in one digit run, left to right.

    A run is digit groups joined by separators. The whole run is a PAN when it has 12-19 digits
    and passes Luhn; otherwise the longest Luhn-valid span of whole groups from each group on
    is one ("card 4111 1111 1111 1111 42" holds a PAN followed by another number).
    """
    starts, ends, position = [], [], 0
    for gap in _SEPARATOR_RUN.finditer(run):
        starts.append(position)
        ends.append(gap.start())
        position = gap.end()
    starts.append(position)
    ends.append(len(run))
    groups = [_digits(run[a:b]) for a, b in zip(starts, ends, strict=True)]
    spans: list[tuple[int, int, str]] = []
    first = 0
    while first < len(groups):
        found = None
        digits = ""
        for last in range(first, len(groups)):
            digits += groups[last]
            if len(digits) > PAN_MAX_DIGITS:
                break
            if len(digits) >= PAN_MIN_DIGITS and luhn_valid(digits):
                found = (last, digits)
        if found is None:
            first += 1
            continue
        last, digits = found
        spans.append((starts[first], ends[last], digits))
        first = last + 1
    return spans


def mask_pans(payload: bytes, key: bytes) -> bytes:
    """Replace every Luhn-valid 12-19 digit card number by `tok_<16 hex>_<last4>`.

    Digits may be grouped by spaces, dashes or dots and written as JSON escapes; either way
    the number is masked. Used for whatever is kept of a rejected record (payload and detail).
    """
    out: list[bytes] = []
    position = 0
    for match in _DIGIT_RUN.finditer(payload):
        for start, end, digits in _pan_spans(match.group(0)):
            out.append(payload[position : match.start() + start])
            out.append(f"tok_{card_token(digits, key)[:16]}_{digits[-4:]}".encode("ascii"))
            position = match.start() + end
    out.append(payload[position:])
    return b"".join(out)


def mask_pans_in_text(text: str, key: bytes) -> str:
    """`mask_pans` for text (a rejection's detail)."""
    raw = text.encode("utf-8", "backslashreplace")
    return mask_pans(raw, key).decode("utf-8", "replace")
