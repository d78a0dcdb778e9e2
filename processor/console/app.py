"""The alert console: a small server-rendered web app over the alerts table and the lake.

    GET  /                          the queue (filters as query parameters)
    GET  /alerts/{transaction_id}   one alert, its card's recent transactions, verdict buttons
    POST /alerts/{transaction_id}/verdict   confirmed_fraud | genuine (an HTML form post)
    GET  /health

Inputs are bounded like the producer's control API (producer/api.py): a body over
`MAX_BODY_BYTES` is a 413, bad or non-finite values are a 422 that quotes at most a short
excerpt of the input. Pages are Jinja2 templates with inline CSS: no build step, no CDN.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from processor.console.alerts_view import AlertView, QueueQuery, get_alert, list_alerts
from processor.console.auth import LOOPBACK_HOSTS, token_guard
from processor.console.lake_view import card_transactions
from processor.console.verdicts import (
    LABELS,
    AlertNotFound,
    LabelNotSent,
    VerdictConflict,
    VerdictForm,
    record_verdict,
)
from producer.api import BodySizeLimit, _short_errors
from producer.contract import FRAUD_SCENARIOS

if TYPE_CHECKING:
    import boto3

    from config.settings import Settings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 * 1024  # a verdict form is under a hundred bytes
TEMPLATES = Path(__file__).with_name("templates")
TransactionId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{6,64}$")]
_SECURITY_HEADERS = {
    # Inline CSS only: no scripts, no third-party anything.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it a browser sends `Origin: null` with same-origin form posts.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class ConsoleConfig:
    """How the console runs: its token (None: loopback, open) and who a verdict is from."""

    token: str | None = None
    default_analyst: str | None = None
    # Host names answered without a token (DNS-rebinding guard); the CLI adds the bound host.
    allowed_hosts: frozenset[str] = field(default=LOOPBACK_HOSTS)


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def create_app(
    settings: Settings, config: ConsoleConfig | None = None, session: boto3.Session | None = None
) -> FastAPI:
    config = config or ConsoleConfig()
    app = FastAPI(
        title="Fraud alert console", version="1.0", docs_url=None, redoc_url=None, openapi_url=None
    )
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.globals.update(labels=LABELS, scenarios=FRAUD_SCENARIOS)
    # The last added runs first: security headers on every answer, then the size limit, then
    # the token, then the routes.
    guard = token_guard(config.token, None if config.token else config.allowed_hosts)
    app.middleware("http")(guard)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.update(_SECURITY_HEADERS)
        return response

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context, status_code=status)

    def problem(request: Request, status: int, message: str, details: Any = None) -> Response:
        if _wants_html(request):
            return page(request, "error.html", status, message=message, details=details or [])
        body: dict[str, Any] = {"detail": details if details is not None else message}
        return JSONResponse(body, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def validation_failed(request: Request, exc: RequestValidationError) -> Response:
        return problem(request, 422, "invalid request", _short_errors(exc.errors()))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def queue(request: Request, query: Annotated[QueueQuery, Query()]) -> HTMLResponse:
        """The alerts that pass the filters, newest event first, one page."""
        result = list_alerts(settings, query, session)
        keep = query.filters()

        def link(page_number: int) -> str:
            return "/?" + urlencode({**keep, "page": str(page_number)})

        return page(
            request,
            "queue.html",
            query=query,
            result=result,
            previous=link(query.page - 1) if query.page > 1 else None,
            next=link(query.page + 1) if query.page < result.pages else None,
            table=settings.dynamodb.alerts_table,
        )

    @app.get("/alerts/{transaction_id}", response_class=HTMLResponse)
    def alert(
        request: Request,
        transaction_id: TransactionId,
        verdict: Annotated[Literal["recorded", "repeated"] | None, Query()] = None,
    ) -> Response:
        """One alert, and its card's recent transactions from the lake."""
        item = get_alert(settings, transaction_id, session)
        if item is None:
            return problem(request, 404, f"no alert with transaction id {transaction_id}")
        view = AlertView.from_item(item)
        history = card_transactions(settings, view.card_token)
        return page(
            request,
            "alert.html",
            alert=view,
            history=history,
            default_analyst=config.default_analyst or "",
            lake=settings.processor.lake_path,
            flash=verdict,
        )

    @app.post("/alerts/{transaction_id}/verdict")
    async def verdict(request: Request, transaction_id: TransactionId) -> Response:
        """Record the verdict (first one wins), send its label; 303 back to the alert."""
        form = await _form(request)
        try:
            decision = VerdictForm.model_validate(form)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            raise RequestValidationError(errors) from exc
        analyst = decision.analyst or config.default_analyst
        if not analyst:
            return problem(request, 422, "give the analyst's name (field 'analyst')")
        try:
            outcome = await run_in_threadpool(
                record_verdict, settings, transaction_id, decision.verdict, analyst, session
            )
        except AlertNotFound as exc:
            return problem(request, 404, str(exc))
        except VerdictConflict as exc:
            return problem(request, 409, str(exc))
        except LabelNotSent as exc:
            logger.warning("%s", exc)
            return problem(request, 503, str(exc))
        state = "repeated" if outcome.repeated else "recorded"
        return RedirectResponse(f"/alerts/{transaction_id}?verdict={state}", status_code=303)

    return app


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body as a dict (a repeated field is an error, not a silent pick)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise RequestValidationError(
            [
                {
                    "type": "content_type",
                    "loc": ("body",),
                    "msg": "send the form as application/x-www-form-urlencoded",
                }
            ]
        )
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        pairs = parse_qsl(body, keep_blank_values=True, max_num_fields=10)
    except ValueError as exc:
        raise RequestValidationError(
            [{"type": "too_many_fields", "loc": ("body",), "msg": "too many form fields"}]
        ) from exc
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise RequestValidationError(
                [{"type": "repeated", "loc": ("body", key), "msg": "field given twice"}]
            )
        form[key] = value
    return form
