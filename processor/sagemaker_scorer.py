"""Scoring through a SageMaker endpoint, with retries and a circuit breaker.

`SageMakerScorer.score(frame)` adds the same columns as `LocalScorer.score` (fraud_score,
model_version, decision, reason_codes) with one `invoke_endpoint` call per frame (one Arrow
batch), split only when the payload would pass SageMaker's 6 MB limit. The endpoint returns
scores and reason codes (ml_model/sagemaker/inference.py); decisions come from the threshold
here, so a config override needs no redeploy.

When the endpoint fails (after retries with backoff on throttling, 5xx, timeouts and refused
connections) or the breaker is open, rows are kept: decision REVIEW, reason_codes
["scorer_unavailable"], fraud_score NaN. The breaker opens after `breaker_failures`
consecutive failed calls, lets one trial call through after `breaker_cooldown_s` and closes
on its success.

The scorer holds only plain values, so it pickles into Spark's Python workers. The boto3
client and the breaker live in per-process registries keyed by the endpoint: PySpark
unpickles the function for every task, and the breaker must remember failures across tasks.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from config.aws import botocore_config, make_session
from config.exceptions import ModelError, ScorerUnavailableError
from config.settings import AwsSettings
from ml_model.artifacts import ModelCard
from ml_model.scorer import OK, REVIEW, decide, thresholds

if TYPE_CHECKING:
    from config.settings import Settings

logger = logging.getLogger(__name__)

UNAVAILABLE = "scorer_unavailable"
# InvokeEndpoint's request limit is 6 MB; keep a margin for the JSON framing.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024 - 64 * 1024
MAX_BACKOFF_S = 2.0
_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ModelNotReadyException",
        "InternalFailure",
        "ServiceUnavailable",
        "InternalDependencyException",
    }
)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """closed -> open after N consecutive failures -> half-open after the cooldown.

    Half-open lets one trial call through: success closes the breaker, failure reopens it.
    Each state change is logged once, as a warning.
    """

    def __init__(
        self,
        name: str,
        failures: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state = CLOSED
        self.consecutive_failures = 0
        self.opened_at = 0.0
        self._trial_in_flight = False
        self._lock = threading.Lock()

    def _move(self, state: str, why: str) -> None:
        logger.warning("scorer breaker for %s: %s -> %s (%s)", self.name, self.state, state, why)
        self.state = state

    def allow(self) -> bool:
        """May a call go out now? (Half-open: only the one trial call.)"""
        with self._lock:
            if self.state == OPEN and self.clock() - self.opened_at >= self.cooldown_s:
                self._move(HALF_OPEN, f"cooldown of {self.cooldown_s:g}s over, trying one call")
                self._trial_in_flight = False
            if self.state == HALF_OPEN:
                if self._trial_in_flight:
                    return False
                self._trial_in_flight = True
                return True
            return self.state == CLOSED

    def success(self) -> None:
        with self._lock:
            self.consecutive_failures = 0
            self._trial_in_flight = False
            if self.state != CLOSED:
                self._move(CLOSED, "call succeeded")

    def failure(self, error: str) -> None:
        with self._lock:
            self.consecutive_failures += 1
            self._trial_in_flight = False
            if self.state == HALF_OPEN or (
                self.state == CLOSED and self.consecutive_failures >= self.failures
            ):
                self.opened_at = self.clock()
                self._move(
                    OPEN,
                    f"{self.consecutive_failures} consecutive failed calls, last: {error}; "
                    f"rows get {REVIEW}/{UNAVAILABLE} for {self.cooldown_s:g}s",
                )


_registry_lock = threading.Lock()
_breakers: dict[tuple[Any, ...], CircuitBreaker] = {}
_clients: dict[tuple[Any, ...], Any] = {}
_retries: dict[str, int] = {}  # endpoint name -> calls retried, for the job's metrics

BREAKER_STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


def endpoint_health() -> dict[str, tuple[str, int]]:
    """Each endpoint this process scored with: its breaker state and the calls retried."""
    with _registry_lock:
        states = {breaker.name: breaker.state for breaker in _breakers.values()}
        return {name: (state, _retries.get(name, 0)) for name, state in states.items()}


class _CallFailed(Exception):
    """One chunk could not be scored; `retryable` says whether trying again may help."""

    def __init__(self, message: str, retryable: bool, client_error: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.client_error = client_error


def _classify(exc: Exception) -> _CallFailed:
    if isinstance(exc, ClientError):
        response: dict[str, Any] = dict(exc.response)
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        original = response.get("OriginalStatusCode")
        message = str(response.get("OriginalMessage") or error.get("Message") or exc)
        if code == "ModelError" and original is not None:
            status = int(original)  # the container's own status, behind the runtime's 424
        retryable = code in _RETRYABLE_CODES or status >= 500 or status == 429
        return _CallFailed(f"{code or status}: {message}", retryable, 400 <= status < 500)
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return _CallFailed(f"{type(exc).__name__}: {exc}", retryable=True)
    return _CallFailed(f"{type(exc).__name__}: {exc}", retryable=False)


class SageMakerScorer:
    """Scores pandas frames through `invoke_endpoint`; thresholds as in LocalScorer."""

    def __init__(
        self,
        endpoint_name: str,
        aws: AwsSettings | Mapping[str, Any],
        card: ModelCard,
        threshold: float | None = None,
        review_band: float | None = None,
        timeout_s: float = 2.0,
        max_attempts: int = 3,
        breaker_failures: int = 3,
        breaker_cooldown_s: float = 30.0,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        backoff_s: float = 0.1,
    ) -> None:
        if not endpoint_name:
            raise ModelError("option 'sagemaker_endpoint' (--endpoint-name) is required")
        if timeout_s <= 0 or max_attempts < 1 or breaker_failures < 1 or breaker_cooldown_s <= 0:
            raise ModelError(
                "options 'sagemaker_timeout_s' and 'breaker_cooldown_s' must be > 0, "
                "'sagemaker_max_attempts' and 'breaker_failures' >= 1"
            )
        self.endpoint_name = endpoint_name
        settings = aws if isinstance(aws, AwsSettings) else AwsSettings.model_validate(aws)
        self.aws: dict[str, Any] = settings.model_dump()
        self.card = card
        self.threshold, self.review_threshold = thresholds(card, threshold, review_band)
        self.names = list(card.feature_names)
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.breaker_failures = breaker_failures
        self.breaker_cooldown_s = breaker_cooldown_s
        self.max_payload_bytes = max_payload_bytes
        self.backoff_s = backoff_s

    @classmethod
    def from_settings(cls, settings: Settings, card: ModelCard) -> SageMakerScorer:
        """The scorer `--scorer sagemaker --endpoint-name NAME` configures."""
        model = settings.model
        if not model.sagemaker_endpoint:
            raise ModelError("option 'sagemaker_endpoint' (--endpoint-name) is required")
        return cls(
            model.sagemaker_endpoint,
            settings.aws,
            card,
            threshold=model.threshold,
            review_band=model.review_band,
            timeout_s=model.sagemaker_timeout_s,
            max_attempts=model.sagemaker_max_attempts,
            breaker_failures=model.breaker_failures,
            breaker_cooldown_s=model.breaker_cooldown_s,
        )

    # -- per-process state -------------------------------------------------------------

    @property
    def breaker(self) -> CircuitBreaker:
        """This process's breaker for the endpoint (shared by every copy of the scorer)."""
        key = (
            self.aws.get("endpoint_url"),
            self.aws["region"],
            self.endpoint_name,
            self.breaker_failures,
            self.breaker_cooldown_s,
        )
        with _registry_lock:
            if key not in _breakers:
                _breakers[key] = CircuitBreaker(
                    self.endpoint_name, self.breaker_failures, self.breaker_cooldown_s
                )
            return _breakers[key]

    def _client(self) -> Any:
        key = (json.dumps(self.aws, sort_keys=True), self.timeout_s)
        with _registry_lock:
            if key not in _clients:
                aws = AwsSettings.model_validate(self.aws)
                # The scorer retries itself (the breaker counts whole calls): botocore doesn't.
                config = botocore_config(aws).merge(
                    BotoConfig(
                        connect_timeout=min(aws.connect_timeout_s, self.timeout_s),
                        read_timeout=self.timeout_s,
                        retries={"total_max_attempts": 1, "mode": "standard"},
                    )
                )
                # Same session and endpoint as config.aws.make_client, with this config.
                _clients[key] = make_session(aws).client(
                    "sagemaker-runtime", endpoint_url=aws.endpoint_url, config=config
                )
            return _clients[key]

    # -- calls -------------------------------------------------------------------------

    def _payloads(self, features: np.ndarray, start: int = 0) -> Iterator[tuple[int, int, bytes]]:
        """(first row, end row, body) chunks, halved until each fits the payload limit."""
        rows = [[None if math.isnan(v) else v for v in row] for row in features.tolist()]
        body = self._body(rows)
        if len(body) <= self.max_payload_bytes or len(rows) <= 1:
            yield start, start + len(rows), body
            return
        half = len(rows) // 2
        yield from self._payloads(features[:half], start)
        yield from self._payloads(features[half:], start + half)

    def _body(self, rows: list[list[float | None]]) -> bytes:
        payload = {
            "features": self.names,
            "instances": rows,
            "reason_threshold": self.review_threshold,
        }
        return json.dumps(payload, allow_nan=False).encode()

    def _invoke_once(self, body: bytes, rows: int) -> tuple[str, list[float], list[list[str]]]:
        try:
            response = self._client().invoke_endpoint(
                EndpointName=self.endpoint_name,
                Body=body,
                ContentType="application/json",
                Accept="application/json",
            )
            answer = json.loads(response["Body"].read())
        except (ClientError, BotoCoreError) as exc:
            raise _classify(exc) from exc
        except ValueError as exc:
            raise _CallFailed(f"endpoint answered invalid JSON: {exc}", retryable=False) from exc
        try:
            version = str(answer["model_version"])
            scores = [float(score) for score in answer["scores"]]
            reasons = [[str(code) for code in codes] for codes in answer["reason_codes"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise _CallFailed(f"endpoint answer lacks {exc}", retryable=False) from exc
        if len(scores) != rows or len(reasons) != rows:
            raise _CallFailed(
                f"endpoint answered {len(scores)} scores for {rows} rows", retryable=False
            )
        return version, scores, reasons

    def _invoke(
        self, body: bytes, rows: int, attempts: int
    ) -> tuple[str, list[float], list[list[str]]]:
        """One call with retries: exponential backoff with full jitter between attempts."""
        for attempt in range(1, attempts + 1):
            try:
                return self._invoke_once(body, rows)
            except _CallFailed as failure:
                if not failure.retryable or attempt == attempts:
                    raise
                with _registry_lock:
                    _retries[self.endpoint_name] = _retries.get(self.endpoint_name, 0) + 1
                pause = min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1))
                logger.debug("attempt %d on %s failed (%s)", attempt, self.endpoint_name, failure)
                time.sleep(random.uniform(0, pause))
        raise AssertionError("unreachable")

    # -- public ------------------------------------------------------------------------

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [name for name in self.names if name not in frame.columns]
        if missing:
            raise ModelError(f"feature columns missing from the batch: {missing}")
        return frame[self.names].to_numpy(dtype=float, na_value=np.nan)

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame's rows, none dropped, with fraud_score, model_version, decision and
        reason_codes added."""
        features = self.matrix(frame)
        n = len(features)
        scores = np.full(n, np.nan)
        versions = np.full(n, self.card.version, dtype=object)
        reasons: list[list[str]] = [[UNAVAILABLE] for _ in range(n)]
        scored = np.zeros(n, dtype=bool)
        breaker = self.breaker
        for first, end, body in self._payloads(features) if n else ():
            if not breaker.allow():
                continue
            attempts = 1 if breaker.state == HALF_OPEN else self.max_attempts
            try:
                version, chunk_scores, chunk_reasons = self._invoke(body, end - first, attempts)
            except _CallFailed as failure:
                breaker.failure(str(failure))
                logger.debug("scoring %d rows on %s failed: %s", end - first, self.name, failure)
                continue
            breaker.success()
            if version != self.card.version:
                _warn_version_once(self.endpoint_name, version, self.card.version)
            scores[first:end] = chunk_scores
            versions[first:end] = version
            reasons[first:end] = chunk_reasons
            scored[first:end] = True
        decisions = np.full(n, REVIEW, dtype=object)
        decisions[scored] = decide(scores[scored], self.threshold, self.review_threshold)
        for index in np.flatnonzero(decisions == OK):
            reasons[index] = []
        out = frame.copy()
        out["fraud_score"] = scores
        out["model_version"] = versions
        out["decision"] = decisions
        out["reason_codes"] = reasons
        return out

    @property
    def name(self) -> str:
        return f"SageMaker endpoint {self.endpoint_name!r}"

    def check_endpoint(self) -> str:
        """Ask the endpoint to score zero rows; return its model version.

        Raises ModelError when the endpoint rejects the request (e.g. its model expects other
        features), ScorerUnavailableError when it cannot be reached. The breaker is untouched.
        """
        try:
            version, _, _ = self._invoke(self._body([]), 0, self.max_attempts)
        except _CallFailed as failure:
            if failure.client_error:
                message = f"{self.name} rejects this pipeline's requests: {failure}"
                raise ModelError(message) from failure
            raise ScorerUnavailableError(
                f"{self.name} is unavailable after {self.max_attempts} attempts "
                f"(option 'sagemaker_max_attempts'): {failure}"
            ) from failure
        if version != self.card.version:
            _warn_version_once(self.endpoint_name, version, self.card.version)
        return version


_warned_versions: set[tuple[str, str, str]] = set()


def _warn_version_once(endpoint: str, served: str, card: str) -> None:
    key = (endpoint, served, card)
    if key not in _warned_versions:
        _warned_versions.add(key)
        logger.warning(
            "endpoint %s serves model %s but thresholds come from card %s", endpoint, served, card
        )
