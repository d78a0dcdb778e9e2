"""Card-number tokenisation: keyed HMAC-SHA256 token plus the last four digits.

The key comes from the environment variable named by `processor.tokenization_key_env` (on EKS
from a Kubernetes Secret), never from the repository. The same PAN always gives the same token
under one key, so tokens join across tables; without the key a token reveals nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Final

from config.exceptions import ConfigError
from producer.contract import luhn_valid

MIN_KEY_BYTES: Final = 16
_PAN_RUN = re.compile(rb"(?<!\d)\d{12,19}(?!\d)")


def load_key(env_var: str) -> bytes:
    """The tokenisation key; a missing or short key is a ConfigError naming the variable."""
    value = os.environ.get(env_var)
    if not value:
        raise ConfigError(
            f"environment variable {env_var} (processor.tokenization_key_env) must hold the "
            "card tokenisation key; set it from a secret"
        )
    key = value.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"the key in {env_var} must be at least {MIN_KEY_BYTES} bytes")
    return key


def card_token(pan: str, key: bytes) -> str:
    """Hex HMAC-SHA256 of the PAN under `key`."""
    return hmac.new(key, pan.encode("ascii"), hashlib.sha256).hexdigest()


def mask_pans(payload: bytes, key: bytes) -> bytes:
    """Replace every Luhn-valid 12-19 digit run by `tok_<16 hex>_<last4>` (for dead letters)."""

    def replace(match: re.Match[bytes]) -> bytes:
        digits = match.group(0).decode("ascii")
        if not luhn_valid(digits):
            return match.group(0)
        return f"tok_{card_token(digits, key)[:16]}_{digits[-4:]}".encode("ascii")

    return _PAN_RUN.sub(replace, payload)
