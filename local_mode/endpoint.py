"""The local SageMaker endpoint: in service, or deleted as the control plane leaves it when the model is stopped.

Two servers on 127.0.0.1 stand in for the two SageMaker APIs that the invoke function calls:

- the runtime API (InvokeEndpoint): the local model server of ``local_mode.model_server``. While the endpoint
  is deleted, it returns its "Endpoint <name> of account <account> not found." ValidationError, as SageMaker
  does for a stopped model, and the function maps that to its 503.
- the control API (DescribeEndpoint, for GET /status): a small JSON-protocol server that reports the endpoint
  as ``InService`` or returns SageMaker's "Could not find endpoint" ValidationException.

The model stays loaded while the endpoint is deleted, so a local start takes no time. A real start takes
minutes, which the function's Retry-After values reflect.
"""

import json
import logging
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from local_mode.model_server import (
    DEFAULT_HOST,
    DEFAULT_INVOCATION_TIMEOUT_SECONDS,
    LOCAL_ACCOUNT_ID,
    LOCAL_REGION,
    ModelServer,
)

LOGGER = logging.getLogger(__name__)

DESCRIBE_ENDPOINT_TARGET = "SageMaker.DescribeEndpoint"


class LocalEndpoint:
    """State of the one local endpoint, shared by the runtime and the control API servers."""

    def __init__(self, name: str, in_service: bool = True) -> None:
        self.name = name
        self._in_service = in_service
        self.creation_time = time.time()
        self.last_modified_time = self.creation_time
        self._lock = threading.Lock()

    @property
    def in_service(self) -> bool:
        with self._lock:
            return self._in_service

    @property
    def arn(self) -> str:
        return f"arn:aws:sagemaker:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:endpoint/{self.name}"

    def create(self) -> None:
        """Put the endpoint in service, as a start does."""
        self._set_in_service(True)

    def delete(self) -> None:
        """Delete the endpoint, as a stop does."""
        self._set_in_service(False)

    def _set_in_service(self, in_service: bool) -> None:
        with self._lock:
            if self._in_service == in_service:
                return
            self._in_service = in_service
            now = time.time()
            self.last_modified_time = now
            if in_service:
                self.creation_time = now
        LOGGER.info("Endpoint %s %s", self.name, "is in service" if in_service else "deleted (model stopped)")


class EndpointModelServer(ModelServer):
    """The model server, serving the endpoint's name only while the endpoint is in service."""

    def __init__(self, address: tuple[str, int], service: Any, endpoint: LocalEndpoint, invocation_timeout: float):
        self.endpoint = endpoint
        super().__init__(address, service, endpoint.name, invocation_timeout)

    @property
    def endpoint_name(self) -> str | None:
        # The request handler compares the requested name with this one, so None makes every name unknown.
        return self.endpoint.name if self.endpoint.in_service else None

    @endpoint_name.setter
    def endpoint_name(self, name: str) -> None:
        if name != self.endpoint.name:
            raise ValueError(f"endpoint name {name!r} differs from the local endpoint's name {self.endpoint.name!r}")


class ControlApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], endpoint: LocalEndpoint) -> None:
        super().__init__(address, ControlApiHandler)
        self.endpoint = endpoint


class ControlApiHandler(BaseHTTPRequestHandler):
    """SageMaker's control API in its JSON 1.1 protocol, limited to DescribeEndpoint."""

    protocol_version = "HTTP/1.1"
    # Send each response at once: with Nagle's algorithm a keep-alive response waits about 40 ms for an ACK.
    disable_nagle_algorithm = True
    server: ControlApiServer

    def do_POST(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        target = self.headers.get("X-Amz-Target", "")
        if target != DESCRIBE_ENDPOINT_TARGET:
            LOGGER.warning("Control API request for operation %s, which local mode does not serve", target or "(none)")
            self._send_error(400, "UnknownOperationException", f"operation {target or '(none)'} is not served locally")
            return

        try:
            requested = json.loads(body or b"{}").get("EndpointName", "")
        except (ValueError, AttributeError):
            LOGGER.warning("DescribeEndpoint request with a body that is not a JSON object (%d bytes)", len(body))
            self._send_error(400, "SerializationException", "the request body is not a JSON object")
            return

        endpoint = self.server.endpoint
        if requested != endpoint.name or not endpoint.in_service:
            LOGGER.info("DescribeEndpoint: endpoint %s not found", requested)
            arn = f"arn:aws:sagemaker:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:endpoint/{requested}"
            self._send_error(400, "ValidationException", f'Could not find endpoint "{arn}".')
            return

        self._send_json(
            200,
            {
                "EndpointName": endpoint.name,
                "EndpointArn": endpoint.arn,
                "EndpointConfigName": f"{endpoint.name}-local-config",
                "EndpointStatus": "InService",
                "CreationTime": endpoint.creation_time,
                "LastModifiedTime": endpoint.last_modified_time,
            },
        )

    def _send_error(self, status: int, error_type: str, message: str) -> None:
        self._send_json(status, {"__type": error_type, "message": message})

    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of BaseHTTPRequestHandler
        LOGGER.debug("%s %s", self.address_string(), format % args)


@dataclass(frozen=True)
class RunningEndpoint:
    """The local endpoint with its runtime and control API servers running in background threads."""

    endpoint: LocalEndpoint
    runtime_url: str
    control_url: str
    stop: Callable[[], None]


def start_local_endpoint(
    service: Any,
    endpoint_name: str,
    *,
    in_service: bool = True,
    host: str = DEFAULT_HOST,
    invocation_timeout: float = DEFAULT_INVOCATION_TIMEOUT_SECONDS,
) -> RunningEndpoint:
    """Serve a loaded model service as the endpoint ``endpoint_name``, on free ports of ``host``."""
    endpoint = LocalEndpoint(endpoint_name, in_service=in_service)
    servers = [
        EndpointModelServer((host, 0), service, endpoint, invocation_timeout),
        ControlApiServer((host, 0), endpoint),
    ]
    threads = [
        threading.Thread(target=server.serve_forever, name=f"local-{kind}", daemon=True)
        for server, kind in zip(servers, ("runtime", "control-api"))
    ]
    for thread in threads:
        thread.start()

    def stop() -> None:
        for server in servers:
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(timeout=10)

    runtime_url, control_url = (f"http://{host}:{server.server_address[1]}" for server in servers)
    LOGGER.info("Endpoint %s: runtime API on %s, control API on %s", endpoint_name, runtime_url, control_url)
    return RunningEndpoint(endpoint=endpoint, runtime_url=runtime_url, control_url=control_url, stop=stop)
