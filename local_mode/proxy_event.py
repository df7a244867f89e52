"""API Gateway REST proxy integration: the event that the function gets and the response that it returns.

The event has the REST API's payload format 1.0 fields (``resource``, ``path``, ``httpMethod``, ``headers``,
``multiValueHeaders``, query strings, ``body``, ``isBase64Encoded`` and ``requestContext`` with the request id,
the stage and the caller's identity including ``apiKeyId``).
"""

import base64
import binascii
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qsl

from local_mode.model_server import LOCAL_ACCOUNT_ID
from local_mode.usage_plan import ApiKey

LOCAL_API_ID = "local"


class InvalidProxyResponse(ValueError):
    """The function returned something other than a proxy response, which API Gateway turns into a 502."""


@dataclass(frozen=True)
class IncomingRequest:
    """An HTTP request as the front received it, split into the parts that the event needs."""

    http_method: str
    stage: str
    resource: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    host: str


def build_proxy_event(request: IncomingRequest, key: ApiKey, request_id: str | None = None) -> dict:
    """Build the proxy event of a request that passed the key check, as the deployed stage sends it."""
    request_id = request_id or str(uuid.uuid4())
    now = datetime.now(timezone.utc)
    headers, multi_value_headers = _event_headers(request)
    query, multi_value_query = _event_query(request.query)
    body, is_base64_encoded = _event_body(request.body)
    user_agent = headers.get("User-Agent") or headers.get("user-agent")
    return {
        "resource": request.resource,
        "path": request.resource,
        "httpMethod": request.http_method,
        "headers": headers,
        "multiValueHeaders": multi_value_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_value_query,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT_ID,
            "apiId": LOCAL_API_ID,
            "resourceId": request.resource.strip("/") or "root",
            "resourcePath": request.resource,
            "httpMethod": request.http_method,
            "path": f"/{request.stage}{request.resource}",
            "stage": request.stage,
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "domainName": request.host,
            "domainPrefix": request.host.split(".", 1)[0],
            "identity": {
                "apiKey": key.value,
                "apiKeyId": key.key_id,
                "sourceIp": request.source_ip,
                "userAgent": user_agent,
                "accountId": None,
                "caller": None,
                "user": None,
                "userArn": None,
                "accessKey": None,
                "cognitoIdentityPoolId": None,
                "cognitoIdentityId": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "principalOrgId": None,
            },
        },
        "body": body,
        "isBase64Encoded": is_base64_encoded,
    }


def _event_headers(request: IncomingRequest) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Return the single-value headers (the last value of each name) and all values by name.

    API Gateway adds the forwarding headers and a trace id, as it does in front of every integration.
    """
    pairs = list(request.headers)
    pairs += [
        ("X-Forwarded-For", request.source_ip),
        ("X-Forwarded-Proto", "http"),
        ("X-Amzn-Trace-Id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"),
    ]
    multi_value: dict[str, list[str]] = {}
    for name, value in pairs:
        multi_value.setdefault(name, []).append(value)
    return {name: values[-1] for name, values in multi_value.items()}, multi_value


def _event_query(query: str) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    if not query:
        return None, None
    multi_value: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        multi_value.setdefault(name, []).append(value)
    return {name: values[-1] for name, values in multi_value.items()}, multi_value


def _event_body(body: bytes) -> tuple[str | None, bool]:
    """Return the body as text, or as base64 when it is not UTF-8.

    NOTE: the deployed API has no binary media types, and how API Gateway passes a body that is not UTF-8
    is not documented. Local mode sends it base64-encoded, so the function reports the invalid byte.
    """
    if not body:
        return None, False
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


@dataclass(frozen=True)
class ProxyResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def parse_proxy_response(response: dict) -> ProxyResponse:
    """Turn the function's proxy response into the HTTP response, or raise ``InvalidProxyResponse``.

    Headers of ``headers`` and ``multiValueHeaders`` are merged, and a name-value pair that is in both appears
    once, as API Gateway documents for the proxy integration.
    """
    status = response.get("statusCode")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise InvalidProxyResponse(f"statusCode {status!r} is not an HTTP status")

    merged: dict[str, list[str]] = {}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        if not isinstance(values, list):
            raise InvalidProxyResponse(f"multiValueHeaders[{name!r}] is not a list")
        merged[name] = [str(value) for value in values]
    for name, value in (response.get("headers") or {}).items():
        values = merged.setdefault(name, [])
        if str(value) not in values:
            values.append(str(value))

    body = response.get("body")
    if body is None:
        data = b""
    elif not isinstance(body, str):
        raise InvalidProxyResponse(f"body is a {type(body).__name__}, not a string")
    elif response.get("isBase64Encoded"):
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidProxyResponse("body is marked as base64 but is not valid base64") from None
    else:
        data = body.encode("utf-8")

    headers = [(name, value) for name, values in merged.items() for value in values]
    return ProxyResponse(status=status, headers=headers, body=data)
