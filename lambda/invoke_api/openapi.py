"""The API's OpenAPI 3.0 description, built from the schemas that the function validates with.

The CDK app writes it next to the templates (``<stack>.openapi.json`` in cdk.out) and attaches its models and
texts to the REST API as API Gateway models and documentation parts, so that
``aws apigateway get-export --export-type oas30`` returns the same description of the deployed stage.
"""

from invoke_api.bounds import GenerationBounds
from invoke_api.schema import ERROR_CODES, EXAMPLE_REQUEST, api_schemas
from invoke_api.status import START_COMMAND

API_KEY_HEADER = "x-api-key"

API_KEY_DESCRIPTION = (
    f"Every request needs an API key in the {API_KEY_HEADER} header. Without it, or with a key that is not in a "
    "usage plan of this stage, API Gateway returns 403 Forbidden. The stack's outputs name the key ids and the "
    "AWS CLI command that prints a key's value."
)

GENERATE_ERRORS = {
    "400": "invalid_request: the body is not valid JSON, a field is unknown or unsupported by the profile, or a "
    "value is out of range (the message names the field and what is allowed).",
    "403": "forbidden: the x-api-key header is missing or the key is not valid for this stage.",
    "413": "payload_too_large: the body is larger than the deployment accepts.",
    "429": "throttled or quota_exceeded: the usage plan's rate or quota, the endpoint's capacity or SageMaker "
    "throttled the request. Retry after the Retry-After header's seconds.",
    "502": "model_error: the model failed or returned no generation. Its error text is never returned as text.",
    "503": f"endpoint_not_running: the model is stopped, starting, stopping or failed. Start it with "
    f"`{START_COMMAND}` and retry after the Retry-After header's seconds.",
    "504": "generation_timeout: the generation did not finish in time; ask for fewer max_new_tokens.",
}

STATUS_ERRORS = {key: GENERATE_ERRORS[key] for key in ("403", "429")} | {
    "503": "service_unavailable: the endpoint's state could not be read. Retry after the Retry-After header's seconds."
}

RETRY_AFTER_HEADER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
}


def build_openapi(bounds: GenerationBounds, *, title: str, stage_name: str) -> dict:
    """Return the OpenAPI 3.0 document of the API for the deployment's bounds."""
    schemas = api_schemas(bounds)
    description = (
        f"Text generation with BLOOM (profile {bounds.profile}) on a SageMaker endpoint. {API_KEY_DESCRIPTION} "
        f"POST /generate accepts at most {bounds.max_new_tokens} new tokens per request and bodies of at most "
        f"{bounds.max_request_bytes} bytes. Errors are JSON with a stable error code: "
        + ", ".join(f"{status} {code}" for code, status in sorted(ERROR_CODES.items(), key=lambda item: item[1]))
        + "."
    )
    return {
        "openapi": "3.0.1",
        "info": {"title": title, "version": "1.0", "description": description},
        "servers": [
            {
                "url": "https://{restApiId}.execute-api.{region}.amazonaws.com/{stage}",
                "variables": {
                    "restApiId": {"default": "restApiId", "description": "The RestApiId output of the API stack."},
                    "region": {"default": "us-east-1"},
                    "stage": {"default": stage_name},
                },
            }
        ],
        "security": [{"api_key": []}],
        "paths": {
            "/generate": {"post": _generate_operation()},
            "/status": {"get": _status_operation()},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "api_key": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER, "description": API_KEY_DESCRIPTION}
            },
        },
    }


def _generate_operation() -> dict:
    return {
        "operationId": "generate",
        "summary": "Generate text from a prompt.",
        "description": "Send {input, gen_kwargs} (the format of the original BLOOM-176B write-up) or "
        "{inputs, parameters} (the LMI format). The response has the completion without the prompt, token "
        "counts where the model reports them, and timings.",
        "security": [{"api_key": []}],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/GenerateRequest"},
                    "example": EXAMPLE_REQUEST,
                }
            },
        },
        "responses": {
            "200": _json_response("The completion.", "GenerateResponse"),
            **{status: _error_response(text, status) for status, text in GENERATE_ERRORS.items()},
        },
    }


def _status_operation() -> dict:
    return {
        "operationId": "getStatus",
        "summary": "Read the model endpoint's state.",
        "description": "Returns whether the model can serve POST /generate now, and if not, how to start it and "
        "how long to wait. Also lists the deployment's limits.",
        "security": [{"api_key": []}],
        "responses": {
            "200": _json_response("The endpoint's state.", "StatusResponse"),
            **{status: _error_response(text, status) for status, text in STATUS_ERRORS.items()},
        },
    }


def _json_response(description: str, schema_name: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}},
    }


def _error_response(description: str, status: str) -> dict:
    response = _json_response(description, "Error")
    if status in ("429", "503"):
        response["headers"] = RETRY_AFTER_HEADER
    return response
