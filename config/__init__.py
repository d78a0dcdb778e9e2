"""Shared configuration, errors and AWS clients for the producer, processor and model."""

from config.exceptions import ConfigError, FraudPipelineError
from config.settings import Settings, load_config

__all__ = ["ConfigError", "FraudPipelineError", "Settings", "load_config"]
