"""Local model server that speaks the SageMaker runtime InvokeEndpoint protocol.

It serves ``POST /endpoints/<name>/invocations`` (the REST path that botocore's sagemaker-runtime client
calls) and ``GET /ping`` on 127.0.0.1, so that the unchanged invoke Lambda reaches it with boto3's
``endpoint_url`` override. Behind the protocol runs the container handler of a profile
(``model_artifacts/<profile>/model.py``) with a transformers model on the CPU, so requests are parsed,
validated and mapped to ``generate()`` as in the container.

Errors take the shapes that botocore parses from the real service:

- an unknown endpoint name: HTTP 400, ``ValidationError``, "Endpoint <name> of account <account> not found.";
- a container response other than 200: HTTP 424, ``ModelError`` with ``OriginalStatusCode``,
  ``OriginalMessage`` (the container's body) and ``LogStreamArn``;
- no container answer within the invocation timeout (SageMaker allows 60 s): HTTP 424, ``ModelError``
  with SageMaker's "Your invocation timed out" message.

Run it with ``python -m local_mode.model_server``, or start it in a background thread with
``start_model_server``.
"""

import argparse
import json
import logging
import re
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import unquote

from local_mode.engine import TINY_MODEL_SOURCE, load_transformers_engine
from local_mode.handler import DEFAULT_PROFILE, load_model_handler, read_serving_properties

LOGGER = logging.getLogger(__name__)

DEFAULT_ENDPOINT_NAME = "bloom-local-endpoint"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# SageMaker real-time endpoints give the container 60 s to respond to an invocation.
DEFAULT_INVOCATION_TIMEOUT_SECONDS = 60.0
# Account id in error messages and ARNs, because local mode has no AWS account.
LOCAL_ACCOUNT_ID = "000000000000"
LOCAL_REGION = "local"
VARIANT_NAME = "AllTraffic"
CONTAINER_NAME = "primary"

INVOCATIONS_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")

TIMEOUT_MESSAGE = (
    f"Your invocation timed out while waiting for a response from container {CONTAINER_NAME}. Review the latency "
    "metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
)


class ModelServer(ThreadingHTTPServer):
    """HTTP server with one model worker: requests are accepted concurrently and generated one at a time."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        service: Any,
        endpoint_name: str,
        invocation_timeout: float,
    ) -> None:
        super().__init__(address, InvokeEndpointHandler)
        self.service = service
        self.endpoint_name = endpoint_name
        self.invocation_timeout = invocation_timeout
        # One worker, as DJL Serving runs one worker for a model spread over all GPUs.
        self.model_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-worker")

    @property
    def log_group(self) -> str:
        return f"/aws/sagemaker/Endpoints/{self.endpoint_name}"

    def server_close(self) -> None:
        super().server_close()
        self.model_worker.shutdown(wait=False, cancel_futures=True)


class InvokeEndpointHandler(BaseHTTPRequestHandler):
    """Routes of the SageMaker runtime API that local mode needs: InvokeEndpoint and the container's /ping."""

    protocol_version = "HTTP/1.1"
    # Send each response at once: with Nagle's algorithm a keep-alive response waits about 40 ms for an ACK.
    disable_nagle_algorithm = True
    server: ModelServer

    def do_GET(self) -> None:
        if self.path == "/ping":
            self._send_json(200, {"status": "Healthy"})
        else:
            self._send_error(404, "UnknownOperationException", f"no route for GET {self.path}")

    def do_POST(self) -> None:
        body = self._read_body()
        match = INVOCATIONS_PATH.match(self.path.split("?", 1)[0])
        if match is None:
            self._send_error(404, "UnknownOperationException", f"no route for POST {self.path}")
            return

        endpoint_name = unquote(match.group("name"))
        if endpoint_name != self.server.endpoint_name:
            message = f"Endpoint {endpoint_name} of account {LOCAL_ACCOUNT_ID} not found."
            self._send_error(400, "ValidationError", message)
            return

        self._invoke(body)

    # NOTE: SageMaker's 6 MB payload limit is not enforced here, and the body of its timeout error is modelled
    # on the message that clients report, without OriginalStatusCode.
    def _invoke(self, body: bytes) -> None:
        started = time.monotonic()
        future = self.server.model_worker.submit(self.server.service.invoke, body)
        try:
            status, payload = future.result(timeout=self.server.invocation_timeout)
        except FutureTimeoutError:
            # A request still queued is dropped. One already generating runs to its end, as in a container.
            future.cancel()
            LOGGER.warning("Invocation timed out after %.1f s", time.monotonic() - started)
            message = f'Received server error (0) from {CONTAINER_NAME} with message "{TIMEOUT_MESSAGE}". '
            self._send_model_error({"Message": message + self._log_hint()})
            return

        LOGGER.info("Invocation returned %d in %.2f s", status, time.monotonic() - started)
        if status == 200:
            self._send_json(200, payload, {"x-Amzn-Invoked-Production-Variant": VARIANT_NAME})
            return

        original = json.dumps(payload)
        kind = "client" if 400 <= status < 500 else "server"
        message = f'Received {kind} error ({status}) from {CONTAINER_NAME} with message "{original}". '
        self._send_model_error(
            {
                "Message": message + self._log_hint(),
                "OriginalStatusCode": status,
                "OriginalMessage": original,
            }
        )

    def _log_hint(self) -> str:
        return f"See the log group {self.server.log_group} (here: the local model server's log) for more information."

    def _send_model_error(self, fields: dict[str, Any]) -> None:
        log_stream_arn = (
            f"arn:aws:logs:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:log-group:{self.server.log_group}"
        )
        self._send_json(424, {**fields, "LogStreamArn": log_stream_arn}, {"x-amzn-ErrorType": "ModelError"})

    def _send_error(self, status: int, error_type: str, message: str) -> None:
        self._send_json(status, {"Message": message}, {"x-amzn-ErrorType": error_type})

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_json(self, status: int, payload: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of BaseHTTPRequestHandler
        LOGGER.debug("%s %s", self.address_string(), format % args)


@dataclass(frozen=True)
class RunningModelServer:
    """A model server running in a background thread."""

    url: str
    endpoint_name: str
    service: Any
    stop: Callable[[], None]


def build_model_service(
    model_source: str = TINY_MODEL_SOURCE,
    *,
    profile: str = DEFAULT_PROFILE,
    property_overrides: Mapping[str, str] | None = None,
    cache_dir: Path | None = None,
):
    """Load a model into the profile's container handler, with the profile's serving.properties limits."""
    handler = load_model_handler()
    properties = {**read_serving_properties(profile), **(property_overrides or {})}
    return handler.ModelService.from_properties(
        properties, lambda _properties: load_transformers_engine(handler, model_source, cache_dir)
    )


def start_model_server(
    model_source: str = TINY_MODEL_SOURCE,
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    endpoint_name: str = DEFAULT_ENDPOINT_NAME,
    profile: str = DEFAULT_PROFILE,
    property_overrides: Mapping[str, str] | None = None,
    service: Any = None,
    invocation_timeout: float = DEFAULT_INVOCATION_TIMEOUT_SECONDS,
    cache_dir: Path | None = None,
) -> RunningModelServer:
    """Load the model, start the server in a daemon thread and return its URL and a stop function.

    ``port=0`` picks a free port. ``service`` replaces the model with any object that has
    ``invoke(body) -> (status, payload)``, which tests use for failures that a real model cannot show.
    """
    if service is None:
        service = build_model_service(
            model_source, profile=profile, property_overrides=property_overrides, cache_dir=cache_dir
        )

    server = ModelServer((host, port), service, endpoint_name, invocation_timeout)
    thread = threading.Thread(target=server.serve_forever, name="local-model-server", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    url = f"http://{bound_host}:{bound_port}"
    LOGGER.info("Model server for endpoint %s listening on %s", endpoint_name, url)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        LOGGER.info("Model server on %s stopped", url)

    return RunningModelServer(url=url, endpoint_name=endpoint_name, service=service, stop=stop)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m local_mode.model_server",
        description="Serve a causal LM on the CPU behind the SageMaker runtime InvokeEndpoint protocol.",
    )
    parser.add_argument(
        "--model",
        default=TINY_MODEL_SOURCE,
        help="'tiny' (a tiny BLOOM built offline), a local model folder, or a Hugging Face Hub id (needs network)",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on, 0 for any free port")
    parser.add_argument("--endpoint-name", default=DEFAULT_ENDPOINT_NAME, help="endpoint name that the server accepts")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="profile whose model.py and limits to use")
    parser.add_argument(
        "--invocation-timeout",
        type=float,
        default=DEFAULT_INVOCATION_TIMEOUT_SECONDS,
        help="seconds before an invocation fails as timed out, as SageMaker does after 60 s",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    running = start_model_server(
        args.model,
        host=args.host,
        port=args.port,
        endpoint_name=args.endpoint_name,
        profile=args.profile,
        invocation_timeout=args.invocation_timeout,
    )
    # The handler is in place before the URL is printed: a caller that reads the URL may send SIGTERM at once.
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signal_number, _frame: stop_requested.set())
    print(f"Endpoint {running.endpoint_name} at {running.url} (boto3 endpoint_url). Press Ctrl-C to stop.", flush=True)
    try:
        stop_requested.wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()


if __name__ == "__main__":
    main()
