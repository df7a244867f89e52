"""Adapter between the public request and the model container's schema. No other module reads or writes that schema.

The container contract (docs/container-contract.md) is the LMI one:

- request: ``{"inputs": "<prompt>", "parameters": {...}}`` with LMI/transformers parameter names.
- response: ``{"generated_text": "<completion without the prompt>", "details": {"prompt_tokens": N,
  "generated_tokens": M}}``, where ``details`` and each count are optional.

- error: a non-200 status with ``{"error": "<code>", "message": "<text>"}``. Status 400 means that the request
  was invalid for the model (for example prompt plus max_new_tokens above its context), 5xx that generation failed.

Anything else in a 200 response (other JSON, an error object, text) is a model failure and is never returned
to the client as a generation.
"""

import json
from dataclasses import dataclass

from invoke_api.validation import GenerateRequest

CONTENT_TYPE = "application/json"
ACCEPT = "application/json"


class ContainerResponseInvalid(ValueError):
    """The container's response does not follow the contract. The message never contains the response text."""


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int | None = None
    generated_tokens: int | None = None

    def usage(self) -> dict[str, int]:
        """Return the known token counts, with their sum when both are known."""
        counts = {}
        if self.prompt_tokens is not None:
            counts["prompt_tokens"] = self.prompt_tokens
        if self.generated_tokens is not None:
            counts["generated_tokens"] = self.generated_tokens
        if len(counts) == 2:
            counts["total_tokens"] = self.prompt_tokens + self.generated_tokens
        return counts


def to_container_request(request: GenerateRequest) -> bytes:
    """Serialize a validated request in the container's schema, always with max_new_tokens."""
    payload = {"inputs": request.prompt, "parameters": request.parameters.as_dict()}
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def from_container_response(body: bytes) -> Generation:
    """Read the container's response, or raise ``ContainerResponseInvalid`` if it breaks the contract."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ContainerResponseInvalid(f"the response ({len(body)} bytes) is not JSON") from None

    # LMI's handlers without rolling batch return the same object inside a one-element list.
    if isinstance(document, list) and len(document) == 1:
        document = document[0]

    if not isinstance(document, dict):
        raise ContainerResponseInvalid(f"the response is a JSON {type(document).__name__}, not an object")
    text = document.get("generated_text")
    if not isinstance(text, str):
        keys = ", ".join(sorted(str(key) for key in document)[:10])
        raise ContainerResponseInvalid(f"the response has no generated_text string (keys: {keys})")

    details = document.get("details")
    details = details if isinstance(details, dict) else {}
    return Generation(
        text=text,
        prompt_tokens=_count(details.get("prompt_tokens")),
        generated_tokens=_count(details.get("generated_tokens")),
    )


# Error codes of the container's 400 responses whose message is written for the API's clients.
CLIENT_ERROR_CODES = ("invalid_request", "token_limit_exceeded")

MAX_REJECTION_MESSAGE_CHARS = 500


def rejection_message(original_message: str) -> str | None:
    """Return the container's message for a request it rejected, or None if the error body breaks the contract.

    Only the ``message`` of a known client error code is returned, never other text of the container.
    """
    try:
        document = json.loads(original_message)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or document.get("error") not in CLIENT_ERROR_CODES:
        return None
    message = document.get("message")
    if not isinstance(message, str) or not message:
        return None
    return message[:MAX_REJECTION_MESSAGE_CHARS]


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None
