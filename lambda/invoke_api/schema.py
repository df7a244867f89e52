"""JSON schemas of the public API, built from the deployment's generation bounds.

The function validates requests with these schemas (``invoke_api.validation``), and the CDK app publishes the
same dictionaries as the API's models and in its OpenAPI description (``invoke_api.openapi``). They use the
JSON Schema subset that OpenAPI 3.0 and API Gateway models (draft 4) share: ``exclusiveMinimum`` is a boolean,
and no schema refers to another.
"""

from invoke_api.bounds import GenerationBounds

# Every generation parameter of the public API, in the names of LMI and transformers. A profile accepts a
# subset of them (``GenerationBounds.supported_parameters``).
ALL_GENERATION_PARAMETERS = (
    "max_new_tokens",
    "min_length",
    "temperature",
    "top_p",
    "top_k",
    "num_beams",
    "no_repeat_ngram_size",
    "repetition_penalty",
    "do_sample",
    "seed",
    "stop",
)

# Size of BLOOM's vocabulary, the largest useful top_k.
BLOOM_VOCABULARY_SIZE = 250_880

# transformers seeds NumPy, which takes seeds below 2**32.
MAX_SEED = 2**32 - 1

MAX_STOP_SEQUENCES = 4
MAX_STOP_SEQUENCE_CHARS = 64

# The two accepted request forms: the primary one of the original BLOOM-176B write-up, and the LMI one.
BLOOM_FORM = ("input", "gen_kwargs")
LMI_FORM = ("inputs", "parameters")

EXAMPLE_REQUEST = {
    "input": "The BLOOM large language model is a",
    "gen_kwargs": {"min_length": 5, "max_new_tokens": 100, "temperature": 0.8, "num_beams": 5, "no_repeat_ngram_size": 2},
}

# Stable error codes of the API, with their HTTP status. API Gateway returns 403 (forbidden) and some 429s
# itself, and the function produces the others.
ERROR_CODES = {
    "invalid_request": 400,
    "forbidden": 403,
    "not_found": 404,
    "payload_too_large": 413,
    "throttled": 429,
    "quota_exceeded": 429,
    "internal_error": 500,
    "model_error": 502,
    "endpoint_not_running": 503,
    "service_unavailable": 503,
    "generation_timeout": 504,
}

# Client-facing endpoint states of GET /status (invoke_api.status maps SageMaker's statuses to them).
ENDPOINT_STATES = ("stopped", "starting", "running", "updating", "stopping", "failed")


def is_public_field(path: str) -> bool:
    """Check whether a field path such as ``gen_kwargs.top_k`` names a field of the public API, rather than
    text that a client made up (which may be anything, even the prompt)."""
    prompt_and_parameter_keys = BLOOM_FORM + LMI_FORM
    if path in prompt_and_parameter_keys:
        return True
    parent, _, name = path.partition(".")
    return parent in (BLOOM_FORM[1], LMI_FORM[1]) and name in ALL_GENERATION_PARAMETERS


def parameter_schemas(bounds: GenerationBounds) -> dict[str, dict]:
    """Return the schema of every public generation parameter under the bounds, supported or not."""
    return {
        "max_new_tokens": {
            "type": "integer",
            "minimum": 1,
            "maximum": bounds.max_new_tokens,
            "default": bounds.default_max_new_tokens,
            "description": f"Tokens to generate at most. The cap of {bounds.max_new_tokens} keeps a generation of "
            f"profile {bounds.profile} within the API's time budget.",
        },
        "min_length": {
            "type": "integer",
            "minimum": 0,
            "maximum": bounds.max_total_tokens,
            "description": "Minimum length in tokens of prompt plus completion (transformers counts the prompt).",
        },
        "temperature": {
            "type": "number",
            "minimum": 0,
            "exclusiveMinimum": True,
            "maximum": 2,
            "description": "Sampling temperature. Lower values make the output more deterministic.",
        },
        "top_p": {
            "type": "number",
            "minimum": 0,
            "exclusiveMinimum": True,
            "maximum": 1,
            "description": "Nucleus sampling: sample from the smallest token set whose probability reaches top_p.",
        },
        "top_k": {
            "type": "integer",
            "minimum": 1,
            "maximum": BLOOM_VOCABULARY_SIZE,
            "description": "Sample from the k most likely tokens only.",
        },
        "num_beams": {
            "type": "integer",
            "minimum": 1,
            "maximum": bounds.max_num_beams,
            "description": "Beams of beam search. 1 disables beam search.",
        },
        "no_repeat_ngram_size": {
            "type": "integer",
            "minimum": 0,
            "maximum": bounds.max_total_tokens,
            "description": "Never repeat an n-gram of this size. 0 disables the check.",
        },
        "repetition_penalty": {
            "type": "number",
            "minimum": 0,
            "exclusiveMinimum": True,
            "maximum": 10,
            "description": "Penalty on tokens that already occur. 1.0 means no penalty.",
        },
        "do_sample": {"type": "boolean", "description": "Sample tokens instead of choosing the most likely one."},
        "seed": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_SEED,
            "description": "Random seed, for repeatable sampling.",
        },
        "stop": {
            "anyOf": [
                _stop_sequence_schema(),
                {"type": "array", "items": _stop_sequence_schema(), "minItems": 1, "maxItems": MAX_STOP_SEQUENCES},
            ],
            "description": "Stop generating when the completion ends with one of these strings.",
        },
    }


def _stop_sequence_schema() -> dict:
    return {"type": "string", "minLength": 1, "maxLength": MAX_STOP_SEQUENCE_CHARS}


def generation_parameters_schema(bounds: GenerationBounds) -> dict:
    """Return the schema of the parameters object: the profile's supported parameters, nothing else."""
    all_schemas = parameter_schemas(bounds)
    return {
        "type": "object",
        "properties": {name: all_schemas[name] for name in ALL_GENERATION_PARAMETERS if name in bounds.supported_parameters},
        "additionalProperties": False,
        "description": f"Generation parameters that profile {bounds.profile} accepts.",
    }


def prompt_schema(bounds: GenerationBounds) -> dict:
    return {
        "type": "string",
        "minLength": 1,
        "description": f"The prompt. The prompt plus max_new_tokens must fit into {bounds.max_total_tokens} tokens.",
    }


def request_form_schema(bounds: GenerationBounds, form: tuple[str, str]) -> dict:
    """Return the schema of one request form, ``BLOOM_FORM`` or ``LMI_FORM``."""
    prompt_key, parameters_key = form
    return {
        "type": "object",
        "properties": {prompt_key: prompt_schema(bounds), parameters_key: generation_parameters_schema(bounds)},
        "required": [prompt_key],
        "additionalProperties": False,
    }


def generate_request_schema(bounds: GenerationBounds) -> dict:
    return {
        "title": "GenerateRequest",
        "description": "A prompt and generation parameters, as {input, gen_kwargs} (the format of the original "
        "BLOOM-176B write-up) or as {inputs, parameters} (the LMI format). "
        f"Bodies above {bounds.max_request_bytes} bytes are rejected with 413.",
        "oneOf": [request_form_schema(bounds, BLOOM_FORM), request_form_schema(bounds, LMI_FORM)],
    }


def generate_response_schema() -> dict:
    count = {"type": "integer", "minimum": 0}
    return {
        "title": "GenerateResponse",
        "type": "object",
        "properties": {
            "generated_text": {"type": "string", "description": "The completion, without the prompt."},
            "usage": {
                "type": "object",
                "description": "Token counts, where the model container reports them.",
                "properties": {"prompt_tokens": count, "generated_tokens": count, "total_tokens": count},
            },
            "timing": {
                "type": "object",
                "properties": {
                    "model_latency_ms": {**count, "description": "Time spent in InvokeEndpoint."},
                    "total_latency_ms": {**count, "description": "Time spent in the invoke function."},
                },
            },
        },
        "required": ["generated_text", "usage", "timing"],
    }


def error_schema() -> dict:
    return {
        "title": "Error",
        "type": "object",
        "properties": {
            "error": {"type": "string", "enum": sorted(ERROR_CODES), "description": "Stable error code."},
            "message": {"type": "string", "description": "What failed and what to do next."},
            "field": {"type": "string", "description": "The request field that is invalid, for invalid_request."},
            "allowed": {"type": "array", "items": {"type": "string"}, "description": "The accepted fields."},
            "state": {"type": "string", "enum": list(ENDPOINT_STATES), "description": "For endpoint_not_running."},
            "retry_after_seconds": {"type": "integer", "minimum": 0},
        },
        "required": ["error", "message"],
    }


def status_response_schema() -> dict:
    return {
        "title": "StatusResponse",
        "type": "object",
        "properties": {
            "state": {"type": "string", "enum": list(ENDPOINT_STATES)},
            "ready": {"type": "boolean", "description": "Whether POST /generate can be served now."},
            "endpoint_name": {"type": "string"},
            "endpoint_status": {"type": "string", "description": "SageMaker's EndpointStatus, absent when stopped."},
            "profile": {"type": "string"},
            "message": {"type": "string"},
            "retry_after_seconds": {"type": "integer", "minimum": 0},
            "limits": {
                "type": "object",
                "properties": {
                    "max_new_tokens": {"type": "integer"},
                    "max_total_tokens": {"type": "integer"},
                    "max_request_bytes": {"type": "integer"},
                    "supported_parameters": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "required": ["state", "ready", "endpoint_name", "profile", "message", "limits"],
    }


def api_schemas(bounds: GenerationBounds) -> dict[str, dict]:
    """Return every schema of the API by model name, each self-contained."""
    return {
        "GenerateRequest": generate_request_schema(bounds),
        "GenerateResponse": generate_response_schema(),
        "Error": error_schema(),
        "StatusResponse": status_response_schema(),
    }
