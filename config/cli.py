"""One command-line layer for every entry point: common options, logging, errors, exit codes.

Each entry point builds its parser with `new_parser` (or adds `common_options` as a parent),
calls `configure_logging(args.log_level, args.log_format)` and runs as
`sys.exit(run_cli(main))`. The rule `run_cli` enforces: an error the user can fix (a
`FraudPipelineError`, a bad option, an unreachable endpoint, missing AWS credentials, a missing
file) ends in one line on stderr and exit status 2; Ctrl+C exits 130 without a traceback; only
an unexpected exception (a bug) prints one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from config.exceptions import AwsSetupError, FraudPipelineError
from config.settings import DEFAULT_PROFILE, PROFILE_ENV, load_config

if TYPE_CHECKING:
    from config.settings import AwsSettings, Settings

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

LOG_LEVEL_ENV = "FRAUD_LOG_LEVEL"
LOG_FORMAT_ENV = "FRAUD_LOG_FORMAT"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What to try when the endpoint of a profile does not answer.
_CONNECTION_HINTS = {
    "local": "is the emulator up? `python -m scripts.local_aws start`",
    "localstack": "is LocalStack up? `docker compose up -d localstack`",
    "aws": "check the network route to AWS and the region",
}
_CREDENTIALS_HINT = "set AWS credentials (AWS_PROFILE, `aws sso login`, or IRSA on EKS)"

# The profile the running command loaded (see `load_settings`), for the hints above.
_active_profile: str | None = None
_json_logging = False


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps docstring layout and appends "(default: X)" to every option with a real default.

    An option whose default is None or False says in its own help where its value comes from
    (usually the profile), so nothing is appended to it.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "%(default)" in text or "(default" in text:
            return text
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS:
            return text
        if isinstance(default, list | tuple | dict) and not default:
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"
        return text


def prog_name(module: str) -> str:
    """How the user started us: `fraud-producer` (a console script) or `python -m module`."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return invoked if invoked.startswith("fraud-") else f"python -m {module}"


def _upper(text: str) -> str:
    return text.upper()


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    """`--log-level` and `--log-format`, defaulting to FRAUD_LOG_LEVEL / FRAUD_LOG_FORMAT."""
    group = parser.add_argument_group("logging")
    group.add_argument(
        "--log-level",
        type=_upper,
        choices=LOG_LEVELS,
        default=_env_choice(LOG_LEVEL_ENV, LOG_LEVELS, "INFO", upper=True),
        help=f"least severe level logged (env {LOG_LEVEL_ENV})",
    )
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=_env_choice(LOG_FORMAT_ENV, LOG_FORMATS, "text"),
        help="text, or json: one JSON object per line with time, level, logger, message and "
        f"exception, for log collectors (env {LOG_FORMAT_ENV})",
    )


def add_profile_option(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument(
        "--profile",
        default=default,
        help="config profile of config/config.yaml: local, localstack or aws"
        + ("" if default else f" (default: ${PROFILE_ENV}, else {DEFAULT_PROFILE})"),
    )


def common_options(profile: bool = True) -> argparse.ArgumentParser:
    """A parent parser (`parents=[common_options()]`) with --profile and the logging options."""
    parent = argparse.ArgumentParser(add_help=False)
    if profile:
        add_profile_option(parent)
    add_logging_options(parent)
    return parent


def new_parser(
    module: str,
    description: str | None,
    *,
    profile: bool = True,
    prog_suffix: str = "",
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """The parser of one entry point (`prog_suffix`: a subcommand's name), defaults shown."""
    return argparse.ArgumentParser(
        prog=f"{prog_name(module)} {prog_suffix}".rstrip(),
        description=description,
        formatter_class=HelpFormatter,
        parents=[common_options(profile)],
        **kwargs,
    )


def utc_day(text: str) -> date:
    """A date option for argparse: an ISO date (a UTC day); anything else names the option."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {text!r}") from exc


def at_least(least: int) -> Callable[[str], int]:
    """An integer option for argparse that must be >= `least`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return parse


def _env_choice(var: str, choices: Sequence[str], fallback: str, upper: bool = False) -> str:
    value = os.environ.get(var, "").strip()
    value = value.upper() if upper else value.lower()
    return value if value in choices else fallback


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _not_a_retried_py4j_send(record: logging.LogRecord) -> bool:
    """False for py4j's note that it re-sent a command on a fresh connection.

    py4j logs that recovery at INFO with a full traceback on the *root* logger (so the "py4j"
    logger's level does not reach it). The streaming job's driver met it about once per
    micro-batch, on py4j's finalizer thread finding its connection reset: a dozen lines of
    traceback a batch for a send that then succeeded. A send that fails for good is logged at
    ERROR and still shown.
    """
    return not (
        record.levelno < logging.WARNING
        and record.name == "root"
        and f"{os.sep}py4j{os.sep}" in record.pathname
    )


def configure_logging(
    level: str | int = "INFO", fmt: str = "text", stream: Any = None
) -> logging.Handler:
    """The root logger's one handler (on stderr), replacing any earlier configuration."""
    global _json_logging
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {fmt!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(_not_a_retried_py4j_send)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    _json_logging = fmt == "json"
    return handler


def load_settings(profile: str | None) -> Settings:
    """`load_config(profile)`, remembering the profile for the hints of `run_cli`."""
    global _active_profile
    settings = load_config(profile)
    _active_profile = settings.profile
    return settings


def _profile() -> str:
    return _active_profile or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE


def probe_endpoint(aws: AwsSettings, timeout_s: float = 2.0) -> None:
    """Fail in milliseconds, not after botocore's retries, when the profile's endpoint is closed.

    Only an explicit endpoint (emulator, LocalStack) is probed; real AWS (None) is not.
    """
    url = aws.endpoint_url
    if not url:
        return
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=min(timeout_s, aws.connect_timeout_s)):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise AwsSetupError(f"cannot reach the AWS endpoint {url}: {reason}") from exc


def _connection_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError
    from urllib3.exceptions import HTTPError as Urllib3Error

    return (BotoConnectionError, HTTPClientError, Urllib3Error, ConnectionError, TimeoutError)


def _credential_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import (
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        TokenRetrievalError,
    )

    return (NoCredentialsError, PartialCredentialsError, NoRegionError, TokenRetrievalError)


def _caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """True when `exc` or an exception it was raised from (or while handling) is of `kinds`."""
    visited: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in visited:
        if isinstance(current, kinds):
            return True
        visited.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def describe_error(exc: BaseException) -> str | None:
    """The one line `run_cli` prints for an error the user can act on; None for a bug."""
    from botocore.exceptions import BotoCoreError, ClientError

    connection, credentials = _connection_errors(), _credential_errors()
    if isinstance(exc, FraudPipelineError):
        message = str(exc)
    elif isinstance(exc, connection):
        message = f"cannot reach AWS: {exc}"
    elif isinstance(exc, credentials):
        message = f"AWS credentials: {exc}"
    elif isinstance(exc, ClientError | BotoCoreError):
        message = f"AWS: {exc}"
    elif isinstance(exc, OSError):
        message = str(exc)
    else:
        return None
    if _caused_by(exc, credentials):
        message = f"{message} (hint: {_CREDENTIALS_HINT})"
    elif _caused_by(exc, connection) and _profile() in _CONNECTION_HINTS:
        message = f"{message} (hint: {_CONNECTION_HINTS[_profile()]})"
    return " ".join(message.split()) or type(exc).__name__


def report_error(message: str) -> None:
    """One line on stderr: plain text, or one JSON log record under --log-format json."""
    if _json_logging:
        logging.getLogger("cli").error(message)
    else:
        print(f"error: {message}", file=sys.stderr, flush=True)


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run an entry point's `main` and turn its failures into exit codes (module docstring)."""
    try:
        code = main(argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our stdout went away (`... | head`): nothing left to say to it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE
    except Exception as exc:
        message = describe_error(exc)
        if message is None:
            raise
        logger.debug("details of the error below", exc_info=True)
        report_error(message)
        return EXIT_USAGE
    return EXIT_OK if code is None else int(code)
