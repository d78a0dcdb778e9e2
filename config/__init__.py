"""Shared configuration, errors and AWS clients for the producer, processor and model.

The names below are loaded on first use: importing `config.exceptions` or `config.aws` alone
(as the Python processes Spark starts for the source and its tasks do) does not import
pydantic and the settings models, ~0.2 s in each such process.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.exceptions import ConfigError, FraudPipelineError
    from config.settings import Settings, load_config

__all__ = ["ConfigError", "FraudPipelineError", "Settings", "load_config"]

_HOME = {
    "ConfigError": "config.exceptions",
    "FraudPipelineError": "config.exceptions",
    "Settings": "config.settings",
    "load_config": "config.settings",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'config' has no attribute {name!r}")
    return getattr(import_module(_HOME[name]), name)
