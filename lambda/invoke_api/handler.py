"""Lambda handler of the inference API: POST /generate and GET /status behind an API Gateway proxy integration.

Each request writes one JSON log line ("request completed") with the request ids, the route, the status, the
error code, latencies and token counts. The prompt and the completion are never logged. boto's loggers stay at
WARNING even when the root logger is at DEBUG, because botocore logs request bodies at DEBUG.

Metrics (CloudWatch embedded metric format, namespace ``BloomOnAws``, dimensions ``service`` and ``Route``):
``Requests``, ``Latency``, ``ModelLatency`` and ``GeneratedTokens``, and ``Errors`` with an ``ErrorCode`` dimension.
"""

import base64
import binascii
import json
import logging
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from botocore.exceptions import BotoCoreError, ClientError

from invoke_api import container
from invoke_api.errors import (
    ApiError,
    InvalidRequest,
    ModelFailed,
    RouteNotFound,
    ServiceUnavailable,
    Throttled,
    retry_after,
)
from invoke_api.schema import is_public_field
from invoke_api.runtime import (
    THROTTLED_RETRY_AFTER_SECONDS,
    FailureContext,
    build_runtime_client,
    build_sagemaker_client,
    invoke_endpoint,
)
from invoke_api.settings import Settings, SettingsError
from invoke_api.status import describe_endpoint_state
from invoke_api.validation import parse_generate_request

SERVICE = "invoke-api"
METRICS_NAMESPACE = "BloomOnAws"

for _name in ("boto3", "botocore", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
app = APIGatewayRestResolver()


@dataclass(frozen=True)
class Dependencies:
    settings: Settings
    runtime: Any
    sagemaker: Any


@cache
def dependencies() -> Dependencies:
    """Read the settings and create the clients once per execution environment."""
    settings = Settings.from_environment()
    return Dependencies(
        settings=settings,
        runtime=build_runtime_client(settings.region, settings.runtime_endpoint_url, settings.read_timeout_seconds),
        sagemaker=build_sagemaker_client(settings.region, settings.sagemaker_endpoint_url),
    )


@dataclass
class RequestRecord:
    """Fields of a request's log line and metrics: ids, sizes, counts and latencies, never text."""

    route: str
    started: float = field(default_factory=time.monotonic)
    fields: dict[str, Any] = field(default_factory=dict)

    def elapsed_ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)


ActionResult = tuple[int, dict, dict[str, str]]


@app.post("/generate")
def generate_route() -> Response:
    return _handle("generate", _generate)


@app.get("/status")
def status_route() -> Response:
    return _handle("status", _status)


@app.not_found
def not_found_route(_error: Exception) -> Response:
    return _handle("not_found", _not_found)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict, context: Any) -> dict:
    return app.resolve(event, context)


def _handle(route: str, action: Callable[[RequestRecord], ActionResult]) -> Response:
    """Run a route's action, turn any failure into a typed error response, and log and count the request."""
    record = RequestRecord(route=route)
    record.fields["api_key_id"] = app.current_event.request_context.identity.api_key_id
    try:
        status_code, body, headers = action(record)
    except ApiError as error:
        status_code, body, headers = error.status, error.body(), error.headers
        record.fields.update(error=error.code, field=_loggable_field(error.details.get("field")), **error.log_fields)
    except SettingsError as error:
        logger.error("invalid function configuration", extra={"reason": str(error)})
        failure = ApiError("The API is misconfigured. Its operators find the reason in the function's log.")
        status_code, body, headers = failure.status, failure.body(), {}
        record.fields["error"] = failure.code
    except Exception:
        logger.exception("unexpected error in route", extra={"route": route})
        failure = ApiError("The API failed unexpectedly. Retry, and report the request id if it persists.")
        status_code, body, headers = failure.status, failure.body(), {}
        record.fields["error"] = failure.code

    record.fields.update(status=status_code, latency_ms=record.elapsed_ms())
    _publish(record)
    return Response(
        status_code=status_code,
        content_type="application/json",
        body=json.dumps(body, ensure_ascii=False),
        headers=headers,
    )


def _generate(record: RequestRecord) -> ActionResult:
    deps = dependencies()
    settings = deps.settings
    raw_body = _request_body()
    record.fields["request_bytes"] = len(raw_body)

    request = parse_generate_request(raw_body, settings.bounds)
    record.fields.update(
        prompt_chars=len(request.prompt),
        max_new_tokens=request.parameters.max_new_tokens,
        parameters=sorted(request.parameters.as_dict()),
        parameters_key=request.parameters_key,
    )

    context = FailureContext(
        endpoint_name=settings.endpoint_name,
        bounds=settings.bounds,
        max_new_tokens=request.parameters.max_new_tokens,
        read_timeout_seconds=settings.read_timeout_seconds,
    )
    invocation = invoke_endpoint(deps.runtime, deps.sagemaker, container.to_container_request(request), context)
    record.fields["model_latency_ms"] = invocation.model_latency_ms

    try:
        generation = container.from_container_response(invocation.body)
    except container.ContainerResponseInvalid as error:
        raise ModelFailed(
            "The model returned a response that is not a generation. Retry, and check the endpoint's log if it "
            "persists."
        ).with_log_fields(container_response_problem=str(error)) from None

    record.fields.update(generation.usage())
    body = {
        "generated_text": generation.text,
        "usage": generation.usage(),
        "timing": {"model_latency_ms": invocation.model_latency_ms, "total_latency_ms": record.elapsed_ms()},
    }
    return 200, body, {}


def _status(record: RequestRecord) -> ActionResult:
    deps = dependencies()
    settings = deps.settings
    try:
        state = describe_endpoint_state(deps.sagemaker, settings.endpoint_name)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("ThrottlingException", "TooManyRequestsException"):
            raise Throttled(
                "SageMaker throttled DescribeEndpoint. Retry after a few seconds.",
                headers=retry_after(THROTTLED_RETRY_AFTER_SECONDS),
            ).with_log_fields(sagemaker_error=code) from None
        raise ServiceUnavailable(
            f"The endpoint's state could not be read ({code}). Retry in a few seconds.",
            headers=retry_after(THROTTLED_RETRY_AFTER_SECONDS),
        ).with_log_fields(sagemaker_error=code) from None
    except BotoCoreError as error:
        raise ServiceUnavailable(
            "SageMaker could not be reached. Retry in a few seconds.", headers=retry_after(THROTTLED_RETRY_AFTER_SECONDS)
        ).with_log_fields(sagemaker_error=type(error).__name__) from None

    record.fields["state"] = state.state
    bounds = settings.bounds
    body = {
        **state.to_body(),
        "profile": bounds.profile,
        "limits": {
            "max_new_tokens": bounds.max_new_tokens,
            "max_total_tokens": bounds.max_total_tokens,
            "max_request_bytes": bounds.max_request_bytes,
            "supported_parameters": list(bounds.supported_parameters),
        },
    }
    return 200, body, {}


def _not_found(_record: RequestRecord) -> ActionResult:
    event = app.current_event
    raise RouteNotFound(f"{event.http_method} {event.path} is not a route of this API: use POST /generate or GET /status.")


def _loggable_field(field_path: str | None) -> str | None:
    """Return the invalid field's path for the log, or a placeholder when the client made the name up."""
    if field_path is None or is_public_field(field_path):
        return field_path
    return "(unknown field)"


def _request_body() -> bytes:
    """Return the request body as bytes, decoding API Gateway's base64 form."""
    event = app.current_event
    body = event.body
    if body is None:
        return b""
    if event.is_base64_encoded:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("The request body is marked as base64 but is not valid base64.") from None
    return body.encode("utf-8", errors="surrogatepass")


def _publish(record: RequestRecord) -> None:
    """Write the request's log line and metrics."""
    fields = {key: value for key, value in record.fields.items() if value is not None}
    status_code = fields["status"]
    extra = {"route": record.route, **fields}
    # A stopped model is the normal state between uses, so its 503 is a warning, not an error.
    if status_code >= 500 and fields.get("error") != "endpoint_not_running":
        logger.error("request completed", extra=extra)
    elif status_code >= 400:
        logger.warning("request completed", extra=extra)
    else:
        logger.info("request completed", extra=extra)

    metrics.add_dimension("Route", record.route)
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=fields["latency_ms"])
    if "model_latency_ms" in fields:
        metrics.add_metric(name="ModelLatency", unit=MetricUnit.Milliseconds, value=fields["model_latency_ms"])
    if "generated_tokens" in fields:
        metrics.add_metric(name="GeneratedTokens", unit=MetricUnit.Count, value=fields["generated_tokens"])

    if "error" in fields:
        with single_metric(
            name="Errors",
            unit=MetricUnit.Count,
            value=1,
            namespace=METRICS_NAMESPACE,
            default_dimensions={"service": SERVICE, "Route": record.route},
        ) as metric:
            metric.add_dimension("ErrorCode", fields["error"])
