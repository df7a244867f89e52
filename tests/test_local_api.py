"""Tests of the local stack through real HTTP clients: Python requests and curl against 127.0.0.1.

One stack serves the whole module: the tiny BLOOM (built offline), the local endpoint, the unchanged invoke
function and the API front, configured with usage plans small enough to run out in a test.
"""

import http.client
import json
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests

from local_mode.api_front import ApiGatewayHandler
from local_mode.stack import start_local_stack
from stacks.api_config import GATEWAY_RESPONSES, STATUS_BURST_LIMIT, STATUS_RATE_LIMIT
from tests.local_api_clients import EXAMPLE_REQUEST, curl

pytestmark = pytest.mark.slow

TIMEOUT_SECONDS = 60

# Plans of the test stage: "team" for ordinary calls, "trial" with a quota of 2 requests a day, and "slow"
# that allows one request every 10 seconds.
USAGE_PLANS = [
    {"name": "team", "rateLimit": 100, "burstLimit": 100, "quota": {"limit": 10000, "period": "DAY"}, "keys": ["team"]},
    {"name": "trial", "rateLimit": 100, "burstLimit": 100, "quota": {"limit": 2, "period": "DAY"}, "keys": ["trial"]},
    {"name": "slow", "rateLimit": 0.1, "burstLimit": 1, "keys": ["slow"]},
]


@pytest.fixture(scope="module")
def stack():
    # invokeConcurrency raises the stage throttle (about 21 requests/s for bloom-1b7) above the pace of the
    # tests, so that only the usage plans and the GET /status throttle can reject their requests.
    running = start_local_stack("tiny", context_overrides={"usagePlans": USAGE_PLANS, "invokeConcurrency": 20})
    yield running
    running.close()


def key_value(stack, name: str) -> str:
    return next(key.value for key in stack.api_keys if key.name == name)


def post_generate(stack, body, key_name: str | None = "team", **kwargs) -> requests.Response:
    headers = {"x-api-key": key_value(stack, key_name)} if key_name else {}
    data = json.dumps(body) if isinstance(body, dict) else body
    return requests.post(stack.url + "generate", data=data, headers=headers, timeout=TIMEOUT_SECONDS, **kwargs)


def test_example_request_returns_text_with_requests(stack):
    response = post_generate(stack, EXAMPLE_REQUEST)

    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["generated_text"], str)
    assert body["generated_text"].strip()
    assert 1 <= body["usage"]["generated_tokens"] <= 100
    assert body["usage"]["prompt_tokens"] >= 1
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["x-amzn-RequestId"]


def test_example_request_returns_text_with_curl(stack):
    result = curl(
        stack.url + "generate",
        method="POST",
        key=key_value(stack, "team"),
        body=json.dumps(EXAMPLE_REQUEST).encode(),
    )

    assert result.status == 200, result.body
    body = json.loads(result.body)
    assert body["generated_text"].strip()
    assert 1 <= body["usage"]["generated_tokens"] <= 100


def test_status_reports_running_model_and_profile_limits(stack):
    response = requests.get(stack.url + "status", headers={"x-api-key": key_value(stack, "team")}, timeout=TIMEOUT_SECONDS)

    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "running"
    assert body["endpoint_status"] == "InService"
    assert body["endpoint_name"] == stack.config.deployment.endpoint_name
    assert body["profile"] == "bloom-1b7"
    assert body["limits"]["max_request_bytes"] == stack.config.api.bounds.max_request_bytes


@pytest.mark.parametrize("headers", [{}, {"x-api-key": ""}, {"x-api-key": "not-a-key-of-this-stage"}])
def test_missing_or_wrong_key_gets_403_with_requests(stack, headers):
    response = requests.post(stack.url + "generate", json=EXAMPLE_REQUEST, headers=headers, timeout=TIMEOUT_SECONDS)

    assert response.status_code == 403
    assert response.json() == {"error": "forbidden", "message": GATEWAY_RESPONSES["INVALID_API_KEY"][2]}
    assert "x-api-key" in response.json()["message"]


def test_missing_key_gets_403_with_curl(stack):
    result = curl(stack.url + "generate", method="POST", body=json.dumps(EXAMPLE_REQUEST).encode())

    assert result.status == 403
    assert json.loads(result.body)["error"] == "forbidden"


@pytest.mark.parametrize(
    "method, path",
    [("GET", "v1/generate"), ("POST", "v1/status"), ("POST", "generate"), ("POST", "v1/admin/start"), ("GET", "v1")],
)
def test_unknown_route_gets_403_even_with_key(stack, method, path):
    base = stack.url.removesuffix("v1/")
    response = requests.request(
        method, base + path, headers={"x-api-key": key_value(stack, "team")}, timeout=TIMEOUT_SECONDS
    )

    assert response.status_code == 403
    assert response.json() == {"error": "forbidden", "message": GATEWAY_RESPONSES["MISSING_AUTHENTICATION_TOKEN"][2]}


def test_over_quota_gets_429(stack):
    key = key_value(stack, "trial")
    url = stack.url + "status"

    first = requests.get(url, headers={"x-api-key": key}, timeout=TIMEOUT_SECONDS)
    second = curl(url, key=key)
    over_requests = requests.get(url, headers={"x-api-key": key}, timeout=TIMEOUT_SECONDS)
    over_curl = curl(stack.url + "generate", method="POST", key=key, body=json.dumps(EXAMPLE_REQUEST).encode())

    assert first.status_code == 200
    assert second.status == 200
    assert over_requests.status_code == 429
    assert over_requests.json() == {"error": "quota_exceeded", "message": "Limit Exceeded"}
    assert over_requests.headers["Retry-After"] == "3600"
    assert over_curl.status == 429
    assert json.loads(over_curl.body)["error"] == "quota_exceeded"


def test_quota_is_per_key(stack):
    response = requests.get(stack.url + "status", headers={"x-api-key": key_value(stack, "team")}, timeout=TIMEOUT_SECONDS)

    assert response.status_code == 200


def test_usage_plan_throttle_gets_429(stack):
    key = key_value(stack, "slow")

    first = requests.get(stack.url + "status", headers={"x-api-key": key}, timeout=TIMEOUT_SECONDS)
    second = curl(stack.url + "status", key=key)

    assert first.status_code == 200
    assert second.status == 429
    assert json.loads(second.body) == {"error": "throttled", "message": "Too Many Requests"}
    assert second.headers["retry-after"] == "5"


def test_status_method_throttle_gets_429_after_burst(stack):
    headers = {"x-api-key": key_value(stack, "team")}
    refill_seconds = STATUS_BURST_LIMIT / STATUS_RATE_LIMIT
    # Start with a full GET /status bucket, and leave it full for the later tests.
    time.sleep(refill_seconds)
    try:
        with requests.Session() as session:
            statuses = [
                session.get(stack.url + "status", headers=headers, timeout=TIMEOUT_SECONDS).status_code
                for _ in range(3 * STATUS_BURST_LIMIT)
            ]
    finally:
        time.sleep(refill_seconds)

    assert statuses[:STATUS_BURST_LIMIT] == [200] * STATUS_BURST_LIMIT
    assert 429 in statuses


@pytest.mark.parametrize(
    "body, field",
    [
        (b'{"input": "The BLOOM", "gen_kwargs": {', None),
        ({"input": "The BLOOM", "gen_kwargs": {"max_new_tokens": 100, "beam_width": 5}}, "gen_kwargs.beam_width"),
        ({"input": "The BLOOM", "gen_kwargs": {"num_beams": 6}}, "gen_kwargs.num_beams"),
        ({"input": "The BLOOM", "gen_kwargs": {"max_new_tokens": 513}}, "gen_kwargs.max_new_tokens"),
        ({"prompt": "The BLOOM"}, "input"),
        (b"", None),
    ],
)
def test_bad_body_gets_400_with_requests(stack, body, field):
    response = post_generate(stack, body)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.json().get("field") == field


def test_bad_body_gets_400_with_curl(stack):
    result = curl(stack.url + "generate", method="POST", key=key_value(stack, "team"), body=b'{"input": 42}')

    assert result.status == 400
    body = json.loads(result.body)
    assert body["error"] == "invalid_request"
    assert body["field"] == "input"


def test_body_above_function_limit_gets_413(stack):
    limit = stack.config.api.bounds.max_request_bytes
    body = json.dumps({"input": "x" * limit}).encode()

    response = post_generate(stack, body)

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert str(limit) in response.json()["message"]


def test_body_above_gateway_limit_gets_413(stack):
    address = urlsplit(stack.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=TIMEOUT_SECONDS)
    try:
        connection.putrequest("POST", "/v1/generate")
        connection.putheader("x-api-key", key_value(stack, "team"))
        connection.putheader("Content-Length", str(10 * 1024 * 1024 + 1))
        connection.endheaders()
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()

    assert response.status == 413
    assert body == {"error": "payload_too_large", "message": "Request Too Long"}


def test_chunked_body_reaches_function(stack):
    chunks = iter([b'{"input": "The BLOOM", ', b'"gen_kwargs": {"max_new_tokens": 3}}'])

    response = post_generate(stack, chunks)

    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 200, response.text
    assert 1 <= response.json()["usage"]["generated_tokens"] <= 3


def test_stopped_model_gets_503_with_retry_after(stack):
    stack.stop_model()
    try:
        response = post_generate(stack, EXAMPLE_REQUEST)
        curl_result = curl(
            stack.url + "generate", method="POST", key=key_value(stack, "team"), body=json.dumps(EXAMPLE_REQUEST).encode()
        )
        status = requests.get(stack.url + "status", headers={"x-api-key": key_value(stack, "team")}, timeout=TIMEOUT_SECONDS)
    finally:
        stack.start_model()
    after_start = post_generate(stack, {"input": "The BLOOM", "gen_kwargs": {"max_new_tokens": 2}})

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "300"
    assert response.json()["error"] == "endpoint_not_running"
    assert response.json()["state"] == "stopped"
    assert curl_result.status == 503
    assert curl_result.headers["retry-after"] == "300"
    assert json.loads(curl_result.body)["error"] == "endpoint_not_running"
    assert status.status_code == 200
    assert status.json()["state"] == "stopped"
    assert after_start.status_code == 200


def test_function_gets_rest_proxy_event(stack, monkeypatch):
    events = []
    handler = stack.function.handler

    def recording_handler(event, context):
        events.append(event)
        return handler(event, context)

    monkeypatch.setattr(stack.function, "handler", recording_handler)

    response = requests.get(
        stack.url + "status?verbose=1", headers={"x-api-key": key_value(stack, "team"), "X-Trace": "a"}, timeout=TIMEOUT_SECONDS
    )

    assert response.status_code == 200
    (event,) = events
    assert event["resource"] == "/status"
    assert event["path"] == "/status"
    assert event["httpMethod"] == "GET"
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    assert event["headers"]["X-Trace"] == "a"
    assert event["multiValueHeaders"]["X-Trace"] == ["a"]
    assert event["queryStringParameters"] == {"verbose": "1"}
    assert event["requestContext"]["stage"] == "v1"
    assert event["requestContext"]["requestId"] == response.headers["x-amzn-RequestId"]
    assert event["requestContext"]["identity"]["apiKeyId"] == "local-team"


def test_function_error_gets_502(stack, monkeypatch):
    def failing_handler(event, context):
        raise RuntimeError("boom")

    monkeypatch.setattr(stack.function, "handler", failing_handler)

    response = requests.get(stack.url + "status", headers={"x-api-key": key_value(stack, "team")}, timeout=TIMEOUT_SECONDS)

    assert response.status_code == 502
    assert response.json() == {"error": "internal_error", "message": "Internal server error"}


def test_slow_function_gets_504_after_integration_timeout(stack, monkeypatch):
    handler = stack.function.handler

    def slow_handler(event, context):
        time.sleep(1.0)
        return handler(event, context)

    monkeypatch.setattr(stack.function, "handler", slow_handler)
    monkeypatch.setattr(stack.front, "integration_timeout", 0.2)

    response = requests.get(stack.url + "status", headers={"x-api-key": key_value(stack, "team")}, timeout=TIMEOUT_SECONDS)
    # Wait for the slow call to end, so that the next request does not queue behind it.
    time.sleep(1.0)

    assert response.status_code == 504
    assert response.json() == {"error": "generation_timeout", "message": GATEWAY_RESPONSES["INTEGRATION_TIMEOUT"][2]}


def raw_exchange(stack, payload: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes to the front and return everything it sends back before it closes the connection."""
    parts = urlsplit(stack.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as connection:
        connection.sendall(payload)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


def test_malformed_request_line_gets_json_error(stack):
    response = raw_exchange(stack, b"NOT A VALID REQUEST LINE AT ALL\r\n\r\n")

    assert json.loads(response)["error"] == "bad_request"


def test_oversized_header_gets_json_431(stack):
    response = raw_exchange(stack, b"GET /v1/status HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n")
    head, _, body = response.partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 431")
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["error"] == "bad_request"


def test_short_body_closes_connection_after_timeout(stack, monkeypatch):
    """A client that sends less than its Content-Length does not hold a server thread forever."""
    monkeypatch.setattr(ApiGatewayHandler, "timeout", 1)
    request = (
        f"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {key_value(stack, 'team')}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"in"
    ).encode()

    started = time.monotonic()
    response = raw_exchange(stack, request, timeout=10)

    assert response == b""
    assert time.monotonic() - started < 9
