"""Local HTTP front with the behaviour of the deployed API Gateway stage, in front of the local invoke function.

Each request goes through the steps of API Gateway, in this order:

1. the payload limit: a body of more than 10 MB gets 413 (``REQUEST_TOO_LARGE``);
2. the route: anything other than the API's routes under ``/<stage>/`` gets 403 (``MISSING_AUTHENTICATION_TOKEN``);
3. the API key in ``x-api-key``: a missing or unknown key gets 403 (``INVALID_API_KEY``);
4. the key's usage plan, its throttle and then its quota: 429 (``THROTTLED``, ``QUOTA_EXCEEDED``);
5. the stage's throttle, or the method's own one (GET /status): 429 (``THROTTLED``);
6. the invoke function with a proxy event. Its response goes back as it is. A function that raises or returns
   something other than a proxy response gets 502, and one that outlasts the 29 s integration timeout gets
   504 (``INTEGRATION_TIMEOUT``).

API Gateway builds the error responses of steps 1-6 itself. They take the deployed API's gateway responses
(``stacks.api_config.GATEWAY_RESPONSES``): ``{"error": <code>, "message": <text>}`` with the same statuses and
Retry-After headers.

The routes are the paths of the invoke function's OpenAPI document, as in the API stack. The control plane's
admin routes need IAM-signed requests, which local mode cannot check. An unsigned request to them gets
API Gateway's 403 for missing credentials in the cloud as well.
"""

import json
import logging
import sys
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable
from urllib.parse import urlsplit

from local_mode.invoke_function import FunctionError, IntegrationTimedOut, LocalInvokeFunction
from local_mode.proxy_event import IncomingRequest, InvalidProxyResponse, build_proxy_event, parse_proxy_response
from local_mode.usage_plan import ApiKey, Outcome, StageThrottle, UsagePlans
from stacks.api_config import GATEWAY_RESPONSES
from stacks.invoke_api_package import timeouts

LOGGER = logging.getLogger(__name__)

# API Gateway's maximum request payload for REST APIs: 10 MB.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024

API_KEY_HEADER = "x-api-key"

# API Gateway's own message for each response type, which a gateway response without its own message keeps
# ($context.error.messageString).
DEFAULT_MESSAGES = {
    "MISSING_AUTHENTICATION_TOKEN": "Missing Authentication Token",
    "INVALID_API_KEY": "Forbidden",
    "THROTTLED": "Too Many Requests",
    "QUOTA_EXCEEDED": "Limit Exceeded",
    # NOTE: the text that clients report for REST APIs. The API Gateway documentation does not list it.
    "REQUEST_TOO_LARGE": "Request Too Long",
    "INTEGRATION_TIMEOUT": "Endpoint request timed out",
    "BAD_REQUEST": "Bad Request",
    "FUNCTION_ERROR": "Internal server error",
}

# Statuses that API Gateway uses when a gateway response does not set one.
DEFAULT_STATUSES = {
    "MISSING_AUTHENTICATION_TOKEN": 403,
    "INVALID_API_KEY": 403,
    "THROTTLED": 429,
    "QUOTA_EXCEEDED": 429,
    "REQUEST_TOO_LARGE": 413,
    "INTEGRATION_TIMEOUT": 504,
    "BAD_REQUEST": 400,
    # A function error or an invalid proxy response: no response type of its own, so DEFAULT_5XX applies.
    "FUNCTION_ERROR": 502,
}


class GatewayError(Exception):
    """A response that API Gateway generates itself, named by its gateway response type."""

    def __init__(self, response_type: str, log_reason: str = "") -> None:
        super().__init__(response_type)
        self.response_type = response_type
        self.log_reason = log_reason


def gateway_response(response_type: str) -> tuple[int, list[tuple[str, str]], dict]:
    """Return the status, headers and body of a gateway response, with the deployed API's customization."""
    default_status = DEFAULT_STATUSES[response_type]
    fallback = "DEFAULT_4XX" if default_status < 500 else "DEFAULT_5XX"
    code, status, message, retry_after = GATEWAY_RESPONSES.get(response_type) or GATEWAY_RESPONSES[fallback]

    headers = [("Content-Type", "application/json")]
    if retry_after:
        headers.append(("Retry-After", str(retry_after)))
    body = {"error": code, "message": message or DEFAULT_MESSAGES[response_type]}
    return int(status) if status else default_status, headers, body


class ApiFront(ThreadingHTTPServer):
    """The local stage of the API: routes, keys, usage plans and throttles in front of the local function."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a client that hung up in one line; print other errors with their traceback as usual."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            LOGGER.info("client %s closed the connection early: %s", client_address[0], type(error).__name__)
            return
        super().handle_error(request, client_address)

    def __init__(
        self,
        address: tuple[str, int],
        *,
        function: LocalInvokeFunction,
        usage_plans: UsagePlans,
        stage_throttle: StageThrottle,
        stage_name: str,
        routes: Iterable[tuple[str, str]],
        integration_timeout: float = timeouts.INTEGRATION_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(address, ApiGatewayHandler)
        self.function = function
        self.usage_plans = usage_plans
        self.stage_throttle = stage_throttle
        self.stage_name = stage_name
        self.routes = frozenset(routes)
        self.integration_timeout = integration_timeout

    @property
    def url(self) -> str:
        """Base URL of the stage, with a trailing slash as the deployed API's ApiUrl output."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/{self.stage_name}/"


class ApiGatewayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Send each response at once: with Nagle's algorithm a keep-alive response waits about 40 ms for an ACK.
    disable_nagle_algorithm = True
    server_version = "bloom-local-api"
    server: ApiFront
    # Seconds a connection may stall while a request is read; http.server then closes it. Without a limit, a
    # client that sends fewer bytes than its Content-Length keeps a thread waiting forever.
    timeout = 30

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Send http.server's own rejections (malformed request line, oversized headers) as JSON, like the API."""
        self.log_error("code %d, message %s", code, message)
        data = _json_bytes({"error": "bad_request" if code < 500 else "internal_error", "message": message or _reason(code)})
        self.send_response(code, _reason(code))
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.close_connection = True
        if self.command != "HEAD" and code >= 200 and code not in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED):
            self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - names fixed by BaseHTTPRequestHandler
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def do_PUT(self) -> None:  # noqa: N802
        self._serve()

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve()

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve()

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._serve()

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        started = time.monotonic()
        request_id = str(uuid.uuid4())
        key: ApiKey | None = None
        try:
            body = self._read_body()
            resource, query = self._route()
            key = self._check_key()
            self._admit(key, resource)
            status, headers, data = self._call_function(resource, query, body, key, request_id)
        except GatewayError as error:
            status, headers, payload = gateway_response(error.response_type)
            data = _json_bytes(payload)
            if error.log_reason:
                LOGGER.warning("%s (request %s): %s", error.response_type, request_id, error.log_reason)

        self._send(status, headers, data, request_id)
        LOGGER.info(
            "%s %s -> %d, key %s, %.0f ms (request %s)",
            self.command,
            urlsplit(self.path).path,
            status,
            key.name if key else "-",
            (time.monotonic() - started) * 1000,
            request_id,
        )

    def _read_body(self) -> bytes:
        """Read the body, or raise the 413 before reading it when its declared length is above the limit."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked_body()

        length_text = self.headers.get("Content-Length") or "0"
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            raise GatewayError("BAD_REQUEST", f"Content-Length {length_text!r} is not a number") from None
        if length > MAX_PAYLOAD_BYTES:
            # The body stays unread, so the connection cannot carry another request.
            self.close_connection = True
            raise GatewayError("REQUEST_TOO_LARGE")
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked_body(self) -> bytes:
        chunks, total = [], 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                self.close_connection = True
                raise GatewayError("BAD_REQUEST", "invalid chunk size in a chunked body") from None
            if size == 0:
                # Skip optional trailer lines up to the empty line that ends the body.
                while self.rfile.readline(1024).strip():
                    pass
                return b"".join(chunks)

            total += size
            if total > MAX_PAYLOAD_BYTES:
                self.close_connection = True
                raise GatewayError("REQUEST_TOO_LARGE")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _route(self) -> tuple[str, str]:
        """Return the resource path and query of a request for one of the API's routes."""
        parts = urlsplit(self.path)
        prefix = f"/{self.server.stage_name}"
        resource = parts.path[len(prefix):] if parts.path.startswith(prefix + "/") else None
        if resource is None or (self.command, resource) not in self.server.routes:
            raise GatewayError("MISSING_AUTHENTICATION_TOKEN")
        return resource, parts.query

    def _check_key(self) -> ApiKey:
        key = self.server.usage_plans.find_key(self.headers.get(API_KEY_HEADER))
        if key is None:
            raise GatewayError("INVALID_API_KEY")
        return key

    def _admit(self, key: ApiKey, resource: str) -> None:
        outcome = self.server.usage_plans.admit(key)
        if outcome is Outcome.THROTTLED:
            raise GatewayError("THROTTLED", f"usage plan {key.plan} throttled key {key.name}")
        if outcome is Outcome.QUOTA_EXCEEDED:
            raise GatewayError("QUOTA_EXCEEDED", f"key {key.name} used up the quota of usage plan {key.plan}")
        if not self.server.stage_throttle.admit(resource, self.command):
            raise GatewayError("THROTTLED", f"the stage throttled {self.command} {resource}")

    def _call_function(
        self, resource: str, query: str, body: bytes, key: ApiKey, request_id: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        request = IncomingRequest(
            http_method=self.command,
            stage=self.server.stage_name,
            resource=resource,
            query=query,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            host=self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2]),
        )
        event = build_proxy_event(request, key, request_id)
        try:
            response = parse_proxy_response(self.server.function.invoke(event, self.server.integration_timeout))
        except IntegrationTimedOut as error:
            raise GatewayError("INTEGRATION_TIMEOUT", str(error)) from None
        except (FunctionError, InvalidProxyResponse) as error:
            raise GatewayError("FUNCTION_ERROR", str(error)) from None
        return response.status, response.headers, response.body

    def _send(self, status: int, headers: list[tuple[str, str]], data: bytes, request_id: str) -> None:
        self.send_response(status, _reason(status))
        skipped = {"content-length", "connection", "transfer-encoding"}
        for name, value in headers:
            if name.lower() not in skipped:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", request_id)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of BaseHTTPRequestHandler
        LOGGER.debug("%s %s", self.address_string(), format % args)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _json_bytes(payload: dict) -> bytes:
    return json.dumps(payload).encode("utf-8")
