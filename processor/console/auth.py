"""Who may use the console: loopback by default; anything wider only with a shared token.

Bound to loopback without a token, the console answers only requests whose Host is a loopback
name (a web page cannot reach it through DNS rebinding) and refuses form posts from another
origin. With a token, every request carries it: an `Authorization: Bearer` header, or the
cookie that a `?token=` link sets (the link then redirects to itself without the token, so it
does not stay in the address bar or the history). Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from typing import TYPE_CHECKING, Final
from urllib.parse import urlencode

from starlette.responses import PlainTextResponse, RedirectResponse, Response

from config.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

TOKEN_ENV: Final = "FRAUD_CONSOLE_TOKEN"
COOKIE: Final = "fraud_console_token"
MIN_TOKEN_CHARS: Final = 16
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RedactToken(logging.Filter):
    """Masks `token=...` in log records (uvicorn's access log prints query strings)."""

    _PATTERN = re.compile(r"(?i)(token=)[^&\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._PATTERN.sub(r"\1***", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = self._PATTERN.sub(r"\1***", record.msg)
        return True


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def check_token(host: str, token: str | None) -> str | None:
    """The token to require when binding `host`; a ConfigError when it is missing or short."""
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"the console token (--token or {TOKEN_ENV}) must be at least {MIN_TOKEN_CHARS} "
            "characters"
        )
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"binding the console to {host} (not loopback) needs a token: set {TOKEN_ENV} "
            "(or --token); every request must then carry it"
        )
    return token


def _same(presented: str, token: str) -> bool:
    return hmac.compare_digest(presented.encode("utf-8"), token.encode("utf-8"))


def _presented(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE)


def _foreign_origin(request: Request) -> bool:
    """A form post sent by a page of another origin (a browser always names the origin)."""
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return origin != f"{request.url.scheme}://{request.headers.get('host', '')}"


def token_guard(
    token: str | None, allowed_hosts: frozenset[str] | None
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """The console's HTTP middleware for `token` (None: open, loopback only)."""

    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if allowed_hosts is not None and request.url.hostname not in allowed_hosts:
            return PlainTextResponse("unknown host: open the console at 127.0.0.1", 400)
        if request.method in _UNSAFE_METHODS and _foreign_origin(request):
            return PlainTextResponse("form posted from another origin", 403)
        if token is None:
            return await call_next(request)
        offered = request.query_params.get("token")
        if offered is not None and request.method == "GET":
            if not _same(offered, token):
                return PlainTextResponse("wrong token", 403)
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            response: Response = RedirectResponse(target, status_code=303)
            response.set_cookie(
                COOKIE,
                token,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            return response
        presented = _presented(request)
        if presented is None:
            return PlainTextResponse(
                "token required: open the console's link with ?token=..., or send "
                "Authorization: Bearer <token>",
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not _same(presented, token):
            return PlainTextResponse("wrong token", 403)
        return await call_next(request)

    return guard
