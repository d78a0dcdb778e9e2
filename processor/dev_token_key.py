"""The card tokenisation key of a run: from the environment, or on `local` a development key.

Every profile but `local` needs the key in the variable `processor.tokenization_key_env`
(CARD_TOKEN_KEY, from a secret). On `local`, a missing variable gets a random key generated once
into `data/dev-card-token.key` (mode 0600) and reused on later runs, so tokens stay stable across
runs of the same checkout. The key is put into this process's environment before Spark starts,
so the Python workers, which inherit it, tokenise with it too.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

from config.exceptions import ConfigError
from processor.card_tokens import MIN_KEY_BYTES, load_key

if TYPE_CHECKING:
    from config.settings import Settings

logger = logging.getLogger(__name__)

DEV_KEY_PROFILE = "local"
DEV_KEY_FILE = Path("data") / "dev-card-token.key"


def read_or_create_dev_key(path: Path) -> str:
    """The key in `path`, created (random, mode 0600) when missing; safe against a race."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".dev-key-", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
            try:
                os.link(temp, path)  # atomic; fails if another run created it first
            except FileExistsError:
                pass
            else:
                logger.info("generated a development card tokenisation key in %s", path)
        finally:
            os.unlink(temp)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        os.chmod(path, 0o600)
    key = path.read_text().strip()
    if len(key.encode("utf-8")) < MIN_KEY_BYTES:
        raise ConfigError(
            f"the development key in {path} is shorter than {MIN_KEY_BYTES} bytes; delete the file "
            "to generate a new one"
        )
    return key


def ensure_token_key(
    settings: Settings,
    environ: MutableMapping[str, str] | None = None,
    path: Path = DEV_KEY_FILE,
) -> Path | None:
    """Make sure the key variable is set; returns the dev key file when one was used.

    Raises the ConfigError of `load_key` (naming the variable) on any other profile without it.
    """
    env = os.environ if environ is None else environ
    var = settings.processor.tokenization_key_env
    if env.get(var) or settings.profile != DEV_KEY_PROFILE:
        load_key(var, env)  # a missing or short key: the ConfigError naming the variable
        return None
    env[var] = read_or_create_dev_key(path)
    logger.warning(
        "%s is not set: using the development key in %s (profile %r only; never for real card "
        "numbers)",
        var,
        path,
        DEV_KEY_PROFILE,
    )
    return path
