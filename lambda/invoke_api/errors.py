"""Typed API errors: each carries its HTTP status, a stable ``error`` code and a message for people."""

from invoke_api.schema import ERROR_CODES


class ApiError(Exception):
    """An error that the API returns as ``{"error": code, "message": ...}`` with the code's HTTP status."""

    code = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, **details) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        # Extra body fields such as "field", "allowed", "state" or "retry_after_seconds".
        self.details = {key: value for key, value in details.items() if value is not None}
        # Diagnostic fields for the request's log line, never returned to the client.
        self.log_fields: dict[str, object] = {}

    def with_log_fields(self, **fields) -> "ApiError":
        self.log_fields.update({key: value for key, value in fields.items() if value is not None})
        return self

    @property
    def status(self) -> int:
        return ERROR_CODES[self.code]

    def body(self) -> dict:
        return {"error": self.code, "message": self.message, **self.details}


class InvalidRequest(ApiError):
    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None, allowed: list[str] | None = None) -> None:
        super().__init__(message, field=field, allowed=allowed)


class PayloadTooLarge(ApiError):
    code = "payload_too_large"


class Throttled(ApiError):
    code = "throttled"


class ModelFailed(ApiError):
    code = "model_error"


class EndpointNotRunning(ApiError):
    code = "endpoint_not_running"


class ServiceUnavailable(ApiError):
    code = "service_unavailable"


class GenerationTimedOut(ApiError):
    code = "generation_timeout"


class RouteNotFound(ApiError):
    code = "not_found"


def retry_after(seconds: int) -> dict[str, str]:
    """Return the Retry-After header for a wait in seconds."""
    return {"Retry-After": str(seconds)}
