"""The control API's guards, over real HTTP (uvicorn in a thread, as in test_producer_kinesis):
non-finite numbers are a 422 naming the field, a large body is a 413, a 422 quotes only an
excerpt of the input, and a stream runs without end only when asked.

The Kinesis sink is replaced by a JSONL file: these guards stand in front of the controller,
so no AWS emulator is needed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from config.settings import load_config
from producer import api
from producer.api import EXCERPT_CHARS, MAX_BODY_BYTES, MAX_ERRORS_SHOWN, create_app
from producer.sinks import file_sink
from scripts.local_aws import free_port

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A client of the API served by uvicorn on a free loopback port, sending to a file."""
    folder = tmp_path_factory.mktemp("api")
    settings = load_config("local").with_overrides(
        producer={"rate": 2000, "failed_records_path": str(folder / "failed.jsonl")}
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api, "kinesis_sink", lambda _settings: file_sink(folder / "sent.jsonl"))
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                for _ in range(100):
                    try:
                        if client.get("/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.05)
                yield client
                client.post("/stream/stop")
        finally:
            server.should_exit = True
            thread.join(timeout=10)


@pytest.fixture
def stopped(http: httpx.Client) -> Iterator[httpx.Client]:
    """The client, with no stream running before or after the test."""
    http.post("/stream/stop")
    yield http
    http.post("/stream/stop")


def strict_json(response: httpx.Response) -> Any:
    """The body parsed as standard JSON: NaN or Infinity in it fails the test."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"response holds {constant}: {response.text[:200]}")

    return json.loads(response.text, parse_constant=refuse)


def locations(response: httpx.Response) -> list[list[Any]]:
    return [error["loc"] for error in strict_json(response)["detail"]]


def wait_until_stopped(http: httpx.Client) -> dict[str, Any]:
    for _ in range(300):
        status: dict[str, Any] = http.get("/status").json()
        if not status["streaming"]:
            return status
        time.sleep(0.05)
    raise AssertionError("the stream did not end")


# --- non-finite numbers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ('{"rate": NaN}', ["body", "rate"]),
        ('{"rate": Infinity}', ["body", "rate"]),
        ('{"rate": -Infinity}', ["body", "rate"]),
        ('{"rate": 1e400}', ["body", "rate"]),  # overflows to infinity when parsed
        ('{"fraud_rate": NaN}', ["body", "fraud_rate"]),
        ('{"scenario_mix": {"card_testing": Infinity}}', ["body", "scenario_mix", "card_testing"]),
        ('{"rate": 1, "unknown": NaN}', ["body", "unknown"]),
    ],
)
def test_non_finite_config_is_a_422_naming_the_field(
    http: httpx.Client, body: str, loc: list[Any]
) -> None:
    before = http.get("/config").json()
    response = http.put("/config", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert loc in locations(response)
    after = strict_json(http.get("/config"))
    assert after == before
    assert isinstance(after["rate"], float | int)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"duration_s": Infinity}', "duration_s"),
        ('{"duration_s": NaN}', "duration_s"),
        ('{"num_transactions": NaN}', "num_transactions"),
        ('{"num_transactions": -Infinity}', "num_transactions"),
    ],
)
def test_non_finite_start_is_a_422_naming_the_field(
    stopped: httpx.Client, body: str, field: str
) -> None:
    response = stopped.post("/stream/start", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert ["body", field] in locations(response)
    assert stopped.get("/status").json()["streaming"] is False


# --- body size and excerpts -----------------------------------------------------------------


def test_a_large_body_is_a_413_without_an_echo(http: httpx.Client) -> None:
    big = '{"rate": "' + "x" * 20_000_000 + '"}'
    response = http.put("/config", content=big, headers=JSON)
    assert response.status_code == 413
    assert len(response.content) < 200
    assert str(MAX_BODY_BYTES) in strict_json(response)["detail"]


def test_a_large_chunked_body_is_a_413(http: httpx.Client) -> None:
    """No Content-Length: the body is counted as it arrives."""

    def chunks() -> Iterator[bytes]:
        yield b'{"rate": "'
        for _ in range(2 * MAX_BODY_BYTES // 4096):
            yield b"x" * 4096
        yield b'"}'

    response = http.put("/config", content=chunks(), headers=JSON)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413
    assert len(response.content) < 200


def test_a_body_within_the_limit_is_read(http: httpx.Client) -> None:
    padded = json.dumps({"rate": 2000}).replace("{", "{" + " " * (MAX_BODY_BYTES - 100), 1)
    assert len(padded) <= MAX_BODY_BYTES
    assert http.put("/config", content=padded, headers=JSON).status_code == 200


def _assert_short(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text[:200]
    for error in strict_json(response)["detail"]:
        for text in [error.get("input", ""), *[p for p in error["loc"] if isinstance(p, str)]]:
            assert len(text) <= EXCERPT_CHARS + len("... (99999 chars)"), text


def test_a_422_quotes_only_an_excerpt_of_a_long_value(http: httpx.Client) -> None:
    value = "x" * (MAX_BODY_BYTES - 100)
    response = http.put("/config", json={"rate": value})
    _assert_short(response)
    assert len(response.content) < 1000
    (error,) = strict_json(response)["detail"]
    assert error["loc"] == ["body", "rate"]
    assert error["input"] == f"{value[:EXCERPT_CHARS]}... ({len(value)} chars)"


def test_a_422_quotes_only_an_excerpt_of_a_long_key(http: httpx.Client) -> None:
    name = "phishing" * 5000
    response = http.put("/config", json={"scenario_mix": {name: 1}})
    _assert_short(response)
    assert len(response.content) < 1000
    assert "scenario_mix" in response.text and "card_testing" in response.text


def test_a_422_lists_a_bounded_number_of_errors(http: httpx.Client) -> None:
    mix = {f"unknown-{i}": 1 for i in range(3000)}
    response = http.put("/config", json={"scenario_mix": mix})
    _assert_short(response)
    detail = strict_json(response)["detail"]
    assert len(detail) == MAX_ERRORS_SHOWN + 1
    assert detail[-1]["msg"] == f"{3000 - MAX_ERRORS_SHOWN} more errors not shown"
    assert len(response.content) < 5000


def test_a_422_on_a_query_parameter_quotes_an_excerpt(http: httpx.Client) -> None:
    response = http.post("/transactions/generate", params={"count": "9" * 2000})
    _assert_short(response)
    assert locations(response) == [["query", "count"]]


# --- how a stream ends ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"", b"null", b"{}", b'{"unbounded": false}'],
    ids=["empty", "null", "empty-object", "unbounded-false"],
)
def test_start_without_a_limit_is_a_422_naming_the_fields(
    stopped: httpx.Client, body: bytes
) -> None:
    response = stopped.post("/stream/start", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    (error,) = strict_json(response)["detail"]
    assert error["loc"] == ["body", "unbounded"]
    for name in ("num_transactions", "duration_s", "unbounded: true"):
        assert name in error["msg"]
    assert stopped.get("/status").json()["streaming"] is False


@pytest.mark.parametrize("limit", [{"num_transactions": 10}, {"duration_s": 60}])
def test_unbounded_with_a_limit_is_a_422(stopped: httpx.Client, limit: dict[str, Any]) -> None:
    response = stopped.post("/stream/start", json={"unbounded": True, **limit})
    assert response.status_code == 422, response.text
    assert locations(response) == [["body", "unbounded"]]
    assert stopped.get("/status").json()["streaming"] is False


def test_start_with_a_count_ends_by_itself(stopped: httpx.Client) -> None:
    response = stopped.post("/stream/start", json={"num_transactions": 50})
    assert response.status_code == 202, response.text
    status = wait_until_stopped(stopped)
    assert status["error"] is None
    assert status["generated"]["transactions"] == 50


def test_start_with_a_duration_ends_by_itself(stopped: httpx.Client) -> None:
    response = stopped.post("/stream/start", json={"duration_s": 0.3})
    assert response.status_code == 202, response.text
    status = wait_until_stopped(stopped)
    assert status["error"] is None
    assert status["counters"]["sent"] > 0


def test_unbounded_start_streams_until_stopped(stopped: httpx.Client) -> None:
    response = stopped.post("/stream/start", json={"unbounded": True})
    assert response.status_code == 202, response.text
    sent = 0
    for _ in range(200):
        status = stopped.get("/status").json()
        sent = status["counters"]["sent"]
        if sent >= 200:
            break
        time.sleep(0.05)
    assert status["streaming"] is True and sent >= 200
    assert stopped.post("/stream/start", json={"unbounded": True}).status_code == 409
    stopped_status = stopped.post("/stream/stop").json()
    assert stopped_status["streaming"] is False
    assert stopped_status["error"] is None
