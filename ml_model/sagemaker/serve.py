"""A local endpoint that speaks both SageMaker contracts, serving a model folder.

    python -m ml_model.sagemaker.serve --model-dir DIR [--host 127.0.0.1] [--port 8080]

Routes:
- `GET /ping`, `POST /invocations`: the contract SageMaker holds a model container to;
  input errors answer 400 with the message as text.
- `POST /endpoints/{EndpointName}/invocations`: the SageMaker runtime API that boto3's
  `sagemaker-runtime` client calls, so `invoke_endpoint` works against `http://HOST:PORT`.
  Like the real service, a container error comes back as 424 `ModelError` carrying the
  container's status and message (`OriginalStatusCode`, `OriginalMessage`).

In-process use (tests, demos): `LocalEndpoint(model_dir).start()` binds a free loopback port;
`fail_with(500)`, `delay(seconds)` and `heal()` inject faults; `stop()` closes the port, so
callers then see connection refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from config.cli import configure_logging, new_parser, run_cli
from config.exceptions import ModelError
from ml_model.sagemaker.inference import model_fn, transform
from ml_model.scorer import LocalScorer

logger = logging.getLogger(__name__)

_RUNTIME_ROUTE = re.compile(r"^/endpoints/([^/]+)/invocations$")
# The runtime API's error code for a status the server is told to fail with.
_RUNTIME_ERRORS = {
    400: "ValidationError",
    424: "ModelError",
    429: "ThrottlingException",
    500: "InternalFailure",
    503: "ServiceUnavailable",
    530: "InternalDependencyException",
}
VARIANT = "AllTraffic"


@dataclass
class Faults:
    """What the server does instead of (or before) answering; changed while it runs."""

    status: int | None = None
    delay_s: float = 0.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        scorer: LocalScorer,
        endpoint_name: str | None,
        faults: Faults,
    ) -> None:
        super().__init__(address, _Handler)
        self.scorer = scorer
        self.endpoint_name = endpoint_name
        self.faults = faults
        self.stopping = threading.Event()
        self.invocations = 0
        self.lock = threading.Lock()

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        """A client that gave up (timeout) closes its socket: not worth a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            logger.debug("client %s went away: %s", client_address, error)
            return
        logger.exception("error while answering %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 60

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _runtime_error(self, status: int, code: str, message: str, **extra: object) -> None:
        body = json.dumps({"ErrorCode": code, "Message": message, **extra}).encode()
        self._send(status, body, "application/json", **{"x-amzn-ErrorType": code})

    def _faulted(self, runtime: bool) -> bool:
        """Apply injected faults; True when the request has been answered (or abandoned)."""
        faults = self.server.faults
        if faults.delay_s and self.server.stopping.wait(faults.delay_s):
            return True  # stopping: drop the request without an answer
        if faults.status is None:
            return False
        message = f"injected failure (status {faults.status})"
        if runtime:
            code = _RUNTIME_ERRORS.get(faults.status, "InternalFailure")
            self._runtime_error(faults.status, code, message)
        else:
            self._send(faults.status, message.encode(), "text/plain")
        return True

    def do_GET(self) -> None:
        if self.path != "/ping":
            self._send(404, b"not found", "text/plain")
            return
        if not self._faulted(runtime=False):
            self._send(200, b"", "application/json")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        match = _RUNTIME_ROUTE.match(self.path)
        if self.path == "/invocations":
            runtime = False
        elif match is not None:
            runtime = True
            name = match.group(1)
            if self.server.endpoint_name is not None and name != self.server.endpoint_name:
                self._runtime_error(400, "ValidationError", f"Endpoint {name} not found.")
                return
        else:
            self._send(404, b"not found", "text/plain")
            return
        with self.server.lock:
            self.server.invocations += 1
        if self._faulted(runtime):
            return
        try:
            answer, content_type = transform(
                self.server.scorer,
                body,
                self.headers.get("Content-Type"),
                self.headers.get("Accept"),
            )
        except Exception as exc:  # the container answers every model failure with a status
            status = 400 if isinstance(exc, ModelError) else 500
            if not isinstance(exc, ModelError):
                logger.exception("inference failed")
            if runtime:
                self._runtime_error(
                    424,
                    "ModelError",
                    f"Received {'client' if status < 500 else 'server'} error ({status}) from "
                    f'primary with message "{exc}".',
                    OriginalStatusCode=status,
                    OriginalMessage=str(exc),
                )
            else:
                self._send(status, str(exc).encode(), "text/plain")
            return
        headers = {"x-Amzn-Invoked-Production-Variant": VARIANT} if runtime else {}
        self._send(HTTPStatus.OK, answer.encode(), content_type, **headers)


class LocalEndpoint:
    """The server on a background thread; `port=0` picks a free port."""

    def __init__(
        self,
        model_dir: str,
        host: str = "127.0.0.1",
        port: int = 0,
        endpoint_name: str | None = None,
    ) -> None:
        self.scorer = model_fn(model_dir)
        self.host = host
        self.port = port
        self.endpoint_name = endpoint_name
        self.faults = Faults()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def invocations(self) -> int:
        """POSTs received on either invocations route since start."""
        return 0 if self._server is None else self._server.invocations

    def start(self) -> LocalEndpoint:
        """Listen (again on the same port after a stop) and serve on a daemon thread."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), self.scorer, self.endpoint_name, self.faults)
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() returns within one interval
            name=f"sagemaker-local-{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("local SageMaker endpoint serving %s on %s", self.scorer.card.version, self.url)
        return self

    def stop(self) -> None:
        """Stop answering and close the port; requests held by `delay` are dropped."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def fail_with(self, status: int) -> None:
        """Answer every ping and invocation with this HTTP status until `heal()`."""
        self.faults.status = status

    def delay(self, seconds: float) -> None:
        """Hold every request this long before answering (to exceed a client's timeout)."""
        self.faults.delay_s = seconds

    def heal(self) -> None:
        self.faults.status = None
        self.faults.delay_s = 0.0

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("ml_model.sagemaker.serve", __doc__, profile=False)
    parser.add_argument("--model-dir", required=True, help="folder with model.joblib + card")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind; 0.0.0.0 to reach it from outside a container or pod",
    )
    parser.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one")
    parser.add_argument(
        "--endpoint-name",
        default=None,
        help="answer the runtime route for this endpoint name only (default: any name)",
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    endpoint = LocalEndpoint(args.model_dir, args.host, args.port, args.endpoint_name).start()
    print(f"serving model {endpoint.scorer.card.version} on {endpoint.url} (Ctrl-C stops)")
    try:
        threading.Event().wait()
    finally:
        endpoint.stop()
    return 0


def cli() -> int:
    """Console script `fraud-serve`; `python -m ml_model.sagemaker.serve` runs the same."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
