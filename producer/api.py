"""HTTP control API of the producer (FastAPI; OpenAPI docs at /docs).

Generate events on demand, start / stop streaming to Kinesis in a background thread, read the
counters, and read or change the generator's rates while it runs.

Requests are bounded: a body over `MAX_BODY_BYTES` is a 413, non-finite numbers (NaN,
Infinity) are a 422 naming the field, a 422 quotes at most `EXCERPT_CHARS` of the input, and
a stream runs without end only when asked with `{"unbounded": true}`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError
from starlette.datastructures import Headers

from config.exceptions import FraudPipelineError
from producer.generator import SCENARIO_NAMES, GeneratorOptions, TransactionGenerator
from producer.generator.options import normalise_mix
from producer.runner import Pacing, run
from producer.sinks import kinesis_sink

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from config.settings import Settings
    from producer.sinks import Sink

MAX_BODY_BYTES = 64 * 1024  # the largest valid body is a few hundred bytes
EXCERPT_CHARS = 60  # of an offending input quoted back in a 422
MAX_ERRORS_SHOWN = 10  # per 422; the count of the others is given

Model = TypeVar("Model", bound=BaseModel)


def _known_scenario(name: str) -> str:
    if name not in SCENARIO_NAMES:
        raise ValueError(f"unknown scenario; known: {', '.join(SCENARIO_NAMES)}")
    return name


ScenarioMix = dict[Annotated[str, AfterValidator(_known_scenario)], Annotated[float, Field(ge=0)]]


class RuntimeConfig(BaseModel):
    """The knobs that may change while streaming."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    rate: float = Field(ge=0, description="events per second, 0 = as fast as possible")
    fraud_rate: float = Field(ge=0, le=0.5)
    anomaly_rate: float = Field(ge=0, le=0.5)
    scenario_mix: dict[str, float] = Field(description=f"weights of {', '.join(SCENARIO_NAMES)}")


class RuntimeConfigUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    rate: float | None = Field(default=None, ge=0)
    fraud_rate: float | None = Field(default=None, ge=0, le=0.5)
    anomaly_rate: float | None = Field(default=None, ge=0, le=0.5)
    scenario_mix: ScenarioMix | None = None


class StartRequest(BaseModel):
    """A limit (`num_transactions`, `duration_s` or both), or `unbounded: true`, never neither."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    num_transactions: int | None = Field(default=None, gt=0)
    duration_s: float | None = Field(default=None, gt=0)
    unbounded: bool = Field(
        default=False,
        validate_default=True,
        description="stream until POST /stream/stop; excludes num_transactions and duration_s",
    )

    @field_validator("unbounded")
    @classmethod
    def _one_kind_of_end(cls, unbounded: bool, info: ValidationInfo) -> bool:
        limits = ("num_transactions", "duration_s")
        if any(name not in info.data for name in limits):
            return unbounded  # a limit is invalid: that error is enough
        limited = any(info.data[name] is not None for name in limits)
        if unbounded and limited:
            raise PydanticCustomError(
                "stream_end_conflict",
                "unbounded: true streams until POST /stream/stop; "
                "drop num_transactions and duration_s, or unbounded",
            )
        if not unbounded and not limited:
            raise PydanticCustomError(
                "stream_end_missing",
                "give num_transactions or duration_s, or unbounded: true to stream "
                "until POST /stream/stop",
            )
        return unbounded


def _validated(model: type[Model], data: Any) -> Model:
    """`model` from `data`; a failure is FastAPI's 422 with the fields under `body`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc


def _excerpt(value: Any) -> str:
    """At most `EXCERPT_CHARS` of `value` as text (JSON for non-strings, NaN spelt out)."""
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    if len(text) <= EXCERPT_CHARS:
        return text
    return f"{text[:EXCERPT_CHARS]}... ({len(text)} chars)"


def _short_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors with each input, and each key in a location, cut to an excerpt."""
    shown: list[dict[str, Any]] = []
    for error in errors[:MAX_ERRORS_SHOWN]:
        item = {
            "type": error["type"],
            "loc": [_excerpt(p) if isinstance(p, str) else p for p in error["loc"]],
            "msg": error["msg"],
        }
        if "input" in error:
            item["input"] = _excerpt(error["input"])
        shown.append(item)
    if len(errors) > MAX_ERRORS_SHOWN:
        hidden = len(errors) - MAX_ERRORS_SHOWN
        shown.append({"type": "more_errors", "loc": [], "msg": f"{hidden} more errors not shown"})
    return shown


class BodySizeLimit:
    """ASGI middleware: a request body over `max_bytes` gets a 413 before the app sees it.

    A larger Content-Length is refused unread; a chunked body is refused as soon as it passes
    the limit. A body within it is read here and handed on whole.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body larger than {self.max_bytes} bytes"
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)


class Controller:
    """Owns the generator options and the one background streaming thread."""

    def __init__(self, settings: Settings) -> None:
        p = settings.producer
        self.settings = settings
        self.config = RuntimeConfig(
            rate=p.rate,
            fraud_rate=p.fraud_rate,
            anomaly_rate=p.anomaly_rate,
            scenario_mix=normalise_mix(None),
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._generator: TransactionGenerator | None = None
        self._sink: Sink | None = None
        self._error: str | None = None
        self._seed = p.seed

    def options(self, num_transactions: int | None) -> GeneratorOptions:
        self._seed += 1  # each run continues with fresh events, still reproducible
        return GeneratorOptions(
            seed=self._seed,
            num_transactions=num_transactions,
            fraud_rate=self.config.fraud_rate,
            anomaly_rate=self.config.anomaly_rate,
            scenario_mix=self.config.scenario_mix,
            network=self.settings.producer.network,
        )

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, request: StartRequest) -> None:
        with self._lock:
            if self.running():
                raise HTTPException(409, "already streaming; POST /stream/stop first")
            try:
                sink = kinesis_sink(self.settings)
            except FraudPipelineError as exc:
                raise HTTPException(503, str(exc)) from exc
            self._generator = TransactionGenerator(self.options(request.num_transactions))
            self._sink = sink
            self._stop = threading.Event()
            self._error = None
            pacing = Pacing(rate=self.config.rate, duration_s=request.duration_s)
            self._thread = threading.Thread(
                target=self._run, args=(self._generator, sink, pacing), daemon=True
            )
            self._thread.start()

    def _run(self, generator: TransactionGenerator, sink: Sink, pacing: Pacing) -> None:
        try:
            run(generator.records(), sink, pacing, stop=self._stop)
        except Exception as exc:  # noqa: BLE001 - reported through /status
            self._error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def update(self, update: RuntimeConfigUpdate) -> RuntimeConfig:
        changes = update.model_dump(exclude_none=True)
        if "scenario_mix" in changes:
            try:
                changes["scenario_mix"] = normalise_mix(changes["scenario_mix"])
            except FraudPipelineError as exc:
                raise HTTPException(422, str(exc)) from exc
        self.config = self.config.model_copy(update=changes)
        if self._generator is not None:
            self._generator.update(
                **{
                    k: v
                    for k, v in changes.items()
                    if k in ("fraud_rate", "anomaly_rate", "scenario_mix")
                }
            )
        return self.config

    def status(self) -> dict[str, Any]:
        return {
            "streaming": self.running(),
            "stream_name": self.settings.kinesis.stream_name,
            "counters": self._sink.stats.snapshot() if self._sink else None,
            "generated": dict(self._generator.stats) if self._generator else None,
            "error": self._error,
        }


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="Fraud pipeline producer", version="1.0")
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    controller = Controller(settings)
    app.state.controller = controller

    @app.exception_handler(RequestValidationError)
    async def validation_failed(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _short_errors(exc.errors())}, status_code=422)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/transactions/generate")
    def generate(count: int = Query(1, ge=1, le=10_000)) -> list[dict[str, Any]]:
        """Generate `count` transactions (plus the logins and reports around them) as JSON."""
        generator = TransactionGenerator(controller.options(count))
        return [json.loads(r.data) for r in generator.records() if r.anomaly is None]

    @app.post("/stream/start", status_code=202)
    def start(request: StartRequest | None = None) -> dict[str, Any]:
        """Stream until `num_transactions` are sent or `duration_s` passed, whichever comes
        first, or with `{"unbounded": true}` until POST /stream/stop. An empty body is a 422."""
        controller.start(request if request is not None else _validated(StartRequest, {}))
        return controller.status()

    @app.post("/stream/stop")
    def stop() -> dict[str, Any]:
        controller.stop()
        return controller.status()

    @app.get("/status")
    def status() -> dict[str, Any]:
        return controller.status()

    @app.get("/config", response_model=RuntimeConfig)
    def get_config() -> RuntimeConfig:
        return controller.config

    @app.put("/config", response_model=RuntimeConfig)
    def put_config(update: RuntimeConfigUpdate) -> RuntimeConfig:
        return controller.update(update)

    return app
