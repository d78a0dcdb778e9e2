"""HTTP control API of the producer (FastAPI; OpenAPI docs at /docs).

Generate events on demand, start / stop streaming to Kinesis in a background thread, read the
counters, and read or change the generator's rates while it runs.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from config.exceptions import FraudPipelineError
from producer.generator import SCENARIO_NAMES, GeneratorOptions, TransactionGenerator
from producer.generator.options import normalise_mix
from producer.runner import Pacing, run
from producer.sinks import kinesis_sink

if TYPE_CHECKING:
    from config.settings import Settings
    from producer.sinks import Sink


class RuntimeConfig(BaseModel):
    """The knobs that may change while streaming."""

    model_config = ConfigDict(extra="forbid")
    rate: float = Field(ge=0, description="events per second, 0 = as fast as possible")
    fraud_rate: float = Field(ge=0, le=0.5)
    anomaly_rate: float = Field(ge=0, le=0.5)
    scenario_mix: dict[str, float] = Field(description=f"weights of {', '.join(SCENARIO_NAMES)}")


class RuntimeConfigUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rate: float | None = Field(default=None, ge=0)
    fraud_rate: float | None = Field(default=None, ge=0, le=0.5)
    anomaly_rate: float | None = Field(default=None, ge=0, le=0.5)
    scenario_mix: dict[str, float] | None = None


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_transactions: int | None = Field(default=None, gt=0)
    duration_s: float | None = Field(default=None, gt=0)


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
    controller = Controller(settings)
    app.state.controller = controller

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
        controller.start(request or StartRequest())
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
