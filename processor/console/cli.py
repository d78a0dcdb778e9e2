"""The alert console's server.

    python -m processor.console --profile local              http://127.0.0.1:8088/
    FRAUD_CONSOLE_TOKEN=... python -m processor.console --host 0.0.0.0

It binds loopback by default. Any other address needs a token (FRAUD_CONSOLE_TOKEN, or
--token, which other users of the machine can see in the process list); every request must
then carry it: open http://HOST:PORT/?token=TOKEN once (it sets a cookie), or send
`Authorization: Bearer TOKEN`.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys

from config.cli import configure_logging, load_settings, new_parser, probe_endpoint, run_cli
from config.exceptions import ConfigError
from processor.console.auth import LOOPBACK_HOSTS, TOKEN_ENV, RedactToken, check_token
from processor.console.verdicts import valid_analyst

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8088
ANALYST_ENV = "FRAUD_CONSOLE_ANALYST"


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("processor.console", __doc__)
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to bind; anything but loopback needs a token",
    )
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port; 0 picks a free one")
    parser.add_argument(
        "--token",
        default=None,
        help=f"shared token every request must carry (default: ${TOKEN_ENV}; required off "
        "loopback; at least 16 characters)",
    )
    parser.add_argument(
        "--analyst",
        default=None,
        help=f"name recorded with a verdict whose form leaves it blank (default: ${ANALYST_ENV}, "
        "else the login name)",
    )
    return parser


def _default_analyst(given: str | None) -> str | None:
    if given is not None:
        if not valid_analyst(given):
            raise ConfigError(
                "--analyst must be 1-40 letters, digits, spaces or ._@- (starting with a letter "
                "or digit)"
            )
        return given
    for candidate in (os.environ.get(ANALYST_ENV), _login_name()):
        if candidate and valid_analyst(candidate):
            return candidate
    return None


def _login_name() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    logging.getLogger("uvicorn.access").addFilter(RedactToken())
    token = check_token(args.host, args.token or os.environ.get(TOKEN_ENV) or None)
    analyst = _default_analyst(args.analyst)
    settings = load_settings(args.profile)
    probe_endpoint(settings.aws)

    import uvicorn

    from processor.console.app import ConsoleConfig, create_app

    config = ConsoleConfig(
        token=token,
        default_analyst=analyst,
        allowed_hosts=LOOPBACK_HOSTS | {args.host},
    )
    logger.info(
        "alert console on http://%s:%d/ (alerts table %s, lake %s)%s",
        args.host,
        args.port,
        settings.dynamodb.alerts_table,
        settings.processor.lake_path,
        "; requests must carry the token" if token else "",
    )
    uvicorn.run(
        create_app(settings, config),
        host=args.host,
        port=args.port,
        log_config=None,  # uvicorn's records go through our handler (--log-format)
        log_level=args.log_level.lower(),
    )
    return 0


def cli() -> int:
    """Console script `fraud-console`; `python -m processor.console` runs the same."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
