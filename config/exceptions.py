"""The project's exception hierarchy: one base class, small documented subclasses.

Messages name the offending field or option so that a user can fix the input without
reading the code.
"""

from __future__ import annotations


class FraudPipelineError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(FraudPipelineError):
    """The configuration (YAML, environment or command line) is missing or invalid."""


class ContractError(FraudPipelineError):
    """An event does not satisfy the event contract (producer/contract.py)."""


class AwsSetupError(FraudPipelineError):
    """An AWS resource (stream, table, bucket) or the local emulator is not usable."""


class SourceOptionError(FraudPipelineError):
    """A Kinesis data-source option is missing or invalid; the message names the option."""


class DeliveryError(FraudPipelineError):
    """Records could not be delivered to a sink within the retry budget."""


class ModelError(FraudPipelineError):
    """A model artifact is missing, unreadable or does not match the computed features."""


class ModelVersionError(ModelError):
    """A model was saved by a scikit-learn (or numpy) release whose pickles this one can't trust."""


class ScorerUnavailableError(FraudPipelineError):
    """The remote scorer (SageMaker endpoint) cannot be reached or keeps failing."""


class StateFormatError(FraudPipelineError):
    """The engine state under a checkpoint was written in a format this version cannot read."""
