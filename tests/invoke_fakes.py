"""Test doubles for the invoke function: API Gateway proxy events, a Lambda context, environments built from
the real profiles, and a stand-in for the sagemaker-runtime HTTP API on 127.0.0.1."""

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from invoke_api import handler
from stacks.api_config import profile_bounds
from stacks.profiles import PROFILES

ENDPOINT_NAME = "bloom-endpoint"

EXAMPLE_PROMPT = "The BLOOM large language model is a"


@dataclass
class LambdaContext:
    function_name: str = "bloom-invoke-api"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:bloom-invoke-api"
    aws_request_id: str = "lambda-request-1"


def proxy_event(method: str, path: str, body: str | bytes | None = None, *, base64_encoded: bool = False) -> dict:
    """Build an API Gateway REST proxy event as the deployed stage sends it."""
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode("ascii")
        base64_encoded = True
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", "x-api-key": "not-logged"},
        "multiValueHeaders": {},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "requestId": "gateway-request-1",
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/v1{path}",
            "stage": "v1",
            "identity": {"apiKeyId": "key-id-1", "sourceIp": "127.0.0.1"},
        },
        "body": body,
        "isBase64Encoded": base64_encoded,
    }


def invoke(method: str, path: str, body=None, **kwargs) -> tuple[int, dict, dict]:
    """Run the handler on a proxy event; return the status, the JSON body and the headers."""
    response = handler.lambda_handler(proxy_event(method, path, body, **kwargs), LambdaContext())
    headers = {name: values[-1] for name, values in response.get("multiValueHeaders", {}).items()}
    headers.update(response.get("headers") or {})
    return response["statusCode"], json.loads(response["body"]), headers


def profile_environment(profile_name: str = "bloom-176b-int8", **overrides: str) -> dict[str, str]:
    """Return the function's environment for a real profile, as the stack builds it."""
    bounds = profile_bounds(PROFILES[profile_name])
    return {
        "ENDPOINT_NAME": ENDPOINT_NAME,
        "POWERTOOLS_SERVICE_NAME": "invoke-api",
        "POWERTOOLS_METRICS_NAMESPACE": "BloomOnAws",
        **bounds.to_environment(),
        **overrides,
    }


def use_environment(monkeypatch, environment: dict[str, str]) -> handler.Dependencies:
    """Point the handler at a fresh environment and return its dependencies."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    handler.dependencies.cache_clear()
    return handler.dependencies()


@pytest.fixture
def invoke_environment(monkeypatch):
    """The handler configured for the default profile; the clients are real boto3 clients for Stubber."""
    dependencies = use_environment(monkeypatch, profile_environment())
    yield dependencies
    handler.dependencies.cache_clear()


@dataclass
class FakeReply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    # Seconds to wait before replying, to outlast the client's read timeout.
    delay: float = 0.0


class FakeSageMakerRuntime:
    """A sagemaker-runtime stand-in on 127.0.0.1 that records each InvokeEndpoint call and replays a reply."""

    def __init__(self, reply: FakeReply) -> None:
        self.reply = reply
        self.requests: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with fake._lock:
                    fake.requests.append((self.path, body))
                reply = fake.reply
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format, *args) -> None:  # noqa: A002 - signature fixed by the base class
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "FakeSageMakerRuntime":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()


def error_reply(status: int, code: str, message: str, **fields) -> FakeReply:
    """A sagemaker-runtime error response in the service's REST-JSON form."""
    body = json.dumps({"message": message, **fields}).encode()
    return FakeReply(status=status, body=body, headers={"Content-Type": "application/json", "x-amzn-ErrorType": code})
