"""InvokeEndpoint without retries, and the mapping of its failures to typed API errors.

The client makes exactly one attempt with the timeouts of ``invoke_api.timeouts``. A retry would run the
whole generation again on a busy endpoint while the caller's clock keeps running.
"""

import time
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as BotocoreConnectionError, ReadTimeoutError

from invoke_api import container, status
from invoke_api.bounds import GenerationBounds
from invoke_api.errors import (
    ApiError,
    EndpointNotRunning,
    GenerationTimedOut,
    InvalidRequest,
    ModelFailed,
    ServiceUnavailable,
    Throttled,
    retry_after,
)
from invoke_api.timeouts import CONNECT_TIMEOUT_SECONDS

THROTTLED_RETRY_AFTER_SECONDS = 5

# Container statuses that mean the model rejected the request itself (for example a prompt longer than its
# context) rather than failed.
REJECTED_BY_MODEL_STATUSES = (400, 413, 422)


def runtime_client_config(read_timeout_seconds: float) -> Config:
    return Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=read_timeout_seconds,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )


def build_runtime_client(region: str | None, endpoint_url: str | None, read_timeout_seconds: float):
    """Create the sagemaker-runtime client, pointed at a local stand-in when ``endpoint_url`` is set."""
    return boto3.client(
        "sagemaker-runtime",
        region_name=region,
        endpoint_url=endpoint_url,
        config=runtime_client_config(read_timeout_seconds),
    )


def build_sagemaker_client(region: str | None, endpoint_url: str | None):
    """Create the SageMaker client for DescribeEndpoint, with short timeouts and the default retries."""
    return boto3.client(
        "sagemaker",
        region_name=region,
        endpoint_url=endpoint_url,
        config=Config(connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=5, retries={"total_max_attempts": 2}),
    )


@dataclass(frozen=True)
class Invocation:
    body: bytes
    model_latency_ms: int


@dataclass(frozen=True)
class FailureContext:
    """Facts about a failed invocation that the error messages report."""

    endpoint_name: str
    bounds: GenerationBounds
    max_new_tokens: int
    read_timeout_seconds: float


def invoke_endpoint(runtime_client, sagemaker_client, payload: bytes, context: FailureContext) -> Invocation:
    """Call InvokeEndpoint once; raise an ``ApiError`` subclass for every failure."""
    started = time.monotonic()
    try:
        response = runtime_client.invoke_endpoint(
            EndpointName=context.endpoint_name,
            ContentType=container.CONTENT_TYPE,
            Accept=container.ACCEPT,
            Body=payload,
        )
        body = response["Body"].read()
    except ReadTimeoutError:
        raise generation_timed_out(context) from None
    except BotocoreConnectionError as error:
        raise ServiceUnavailable(
            "SageMaker could not be reached. Retry in a few seconds.", headers=retry_after(THROTTLED_RETRY_AFTER_SECONDS)
        ) from error
    except ClientError as error:
        api_error = map_client_error(error, sagemaker_client, context)
        raise api_error.with_log_fields(
            sagemaker_error=error.response.get("Error", {}).get("Code"),
            container_status=error.response.get("OriginalStatusCode"),
            log_stream_arn=error.response.get("LogStreamArn"),
        ) from None
    except BotoCoreError as error:
        raise ModelFailed(
            f"The connection to SageMaker failed ({type(error).__name__}), so the model returned no generation."
        ).with_log_fields(sagemaker_error=type(error).__name__) from error

    return Invocation(body=body, model_latency_ms=round((time.monotonic() - started) * 1000))


def generation_timed_out(context: FailureContext) -> GenerationTimedOut:
    bounds = context.bounds
    affordable = int(context.read_timeout_seconds / bounds.seconds_per_token)
    return GenerationTimedOut(
        f"The model did not finish within {context.read_timeout_seconds:g} s for max_new_tokens="
        f"{context.max_new_tokens}. Ask for fewer tokens (about {min(affordable, bounds.max_new_tokens)} fit at "
        f"{bounds.seconds_per_token:g} s per token), or retry when the endpoint is less busy."
    )


def map_client_error(error: ClientError, sagemaker_client, context: FailureContext) -> ApiError:
    """Map an InvokeEndpoint ClientError to the API error that the client gets."""
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")

    if code == "ModelError":
        return _model_error(error, message, context)
    if code in ("ThrottlingException", "TooManyRequestsException"):
        return Throttled(
            "SageMaker throttled the request. Retry after a few seconds.",
            headers=retry_after(THROTTLED_RETRY_AFTER_SECONDS),
        )
    if code == "ModelNotReadyException":
        return _not_running(status.state_from_endpoint_status(context.endpoint_name, "Creating"))
    if code in ("ValidationError", "ValidationException"):
        return _validation_error(error, sagemaker_client, context)
    if code in ("ServiceUnavailable", "InternalFailure", "InternalDependencyException"):
        return ServiceUnavailable(
            f"SageMaker is unavailable ({code}). Retry in a few seconds.",
            headers=retry_after(THROTTLED_RETRY_AFTER_SECONDS),
        )
    return ModelFailed(f"InvokeEndpoint failed with {code or 'an unknown error'}, so the model returned no generation.")


def _model_error(error: ClientError, message: str, context: FailureContext) -> ApiError:
    original_status = error.response.get("OriginalStatusCode")
    if "timed out" in message.lower():
        return generation_timed_out(context)
    if original_status in REJECTED_BY_MODEL_STATUSES:
        reason = container.rejection_message(error.response.get("OriginalMessage", ""))
        if reason is None:
            reason = (
                f"the prompt plus max_new_tokens may exceed the {context.bounds.max_total_tokens} tokens that profile "
                f"{context.bounds.profile} holds: shorten the prompt or ask for fewer tokens"
            )
        return InvalidRequest(f"The model rejected the request (container status {original_status}): {reason}")
    status_text = f" (container status {original_status})" if original_status is not None else ""
    return ModelFailed(
        f"The model failed to generate{status_text}. Its log on the endpoint has the details. Retry later or "
        "with other parameters."
    )


def _validation_error(error: ClientError, sagemaker_client, context: FailureContext) -> ApiError:
    """Map a ValidationError, which usually means that the endpoint does not exist or is not in service."""
    if status.is_endpoint_not_found(error):
        return _not_running(status.state_from_endpoint_status(context.endpoint_name, None))

    try:
        state = status.describe_endpoint_state(sagemaker_client, context.endpoint_name)
    except (ClientError, ReadTimeoutError, BotocoreConnectionError):
        state = None
    if state is not None and not state.ready:
        return _not_running(state)
    return ModelFailed("SageMaker rejected the invocation (ValidationError), so the model returned no generation.")


def _not_running(state: status.EndpointState) -> EndpointNotRunning:
    wait = state.retry_after_seconds or 60
    return EndpointNotRunning(
        state.message,
        headers=retry_after(wait),
        state=state.state,
        retry_after_seconds=wait,
    )
