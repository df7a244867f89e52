"""Parse and validate a POST /generate body into a typed request, against the schemas of ``invoke_api.schema``.

The validator covers the JSON Schema keywords that those schemas use and nothing more. Every rejection is an
``InvalidRequest`` (400) or ``PayloadTooLarge`` (413) whose message names the field, the value's problem and
what is allowed. No input makes it raise anything else.
"""

import json
import math
from dataclasses import dataclass, fields
from typing import Any

from invoke_api.bounds import GenerationBounds
from invoke_api.errors import InvalidRequest, PayloadTooLarge
from invoke_api.schema import (
    ALL_GENERATION_PARAMETERS,
    BLOOM_FORM,
    LMI_FORM,
    parameter_schemas,
    request_form_schema,
)

FORM_HINT = 'send {"input": "...", "gen_kwargs": {...}} or {"inputs": "...", "parameters": {...}}'


@dataclass(frozen=True)
class GenerationParameters:
    """Generation parameters of one request, where ``None`` means that the request did not set the parameter."""

    max_new_tokens: int
    min_length: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    num_beams: int | None = None
    no_repeat_ngram_size: int | None = None
    repetition_penalty: float | None = None
    do_sample: bool | None = None
    seed: int | None = None
    stop: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the parameters that are set, with stop sequences as a list."""
        values = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None:
                values[item.name] = list(value) if isinstance(value, tuple) else value
        return values


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    parameters: GenerationParameters
    # "gen_kwargs" or "parameters": the key under which the request sent its parameters.
    parameters_key: str
    # Whether max_new_tokens came from the deployment's default rather than the request.
    default_max_new_tokens_applied: bool


def parse_generate_request(body: bytes, bounds: GenerationBounds) -> GenerateRequest:
    """Validate a raw request body against the bounds and return the typed request."""
    if len(body) > bounds.max_request_bytes:
        raise PayloadTooLarge(
            f"The request body has {len(body)} bytes, but this deployment accepts at most {bounds.max_request_bytes} "
            f"(profile {bounds.profile} holds {bounds.max_total_tokens} tokens of prompt plus completion)."
        )

    document = _parse_json(body)
    if not isinstance(document, dict):
        raise InvalidRequest(f"The request body must be a JSON object: {FORM_HINT}.")

    form = _detect_form(document)
    prompt_key, parameters_key = form
    schema = request_form_schema(bounds, form)
    _check_object_keys(document, schema)

    prompt = document[prompt_key]
    _check_value(prompt, schema["properties"][prompt_key], prompt_key)
    _check_encodable(prompt, prompt_key)
    if not prompt.strip():
        raise InvalidRequest(f"{prompt_key} is blank: give the text that the model continues.", field=prompt_key)

    raw_parameters = document.get(parameters_key, {})
    parameters, default_applied = _parse_parameters(raw_parameters, parameters_key, bounds)
    return GenerateRequest(
        prompt=prompt,
        parameters=parameters,
        parameters_key=parameters_key,
        default_max_new_tokens_applied=default_applied,
    )


def _parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidRequest(f"The request body is not valid UTF-8 (byte {error.start}).") from None

    if not text.strip():
        raise InvalidRequest(f"The request body is empty: {FORM_HINT}.")

    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise InvalidRequest(
            f"The request body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}."
        ) from None
    except RecursionError:
        raise InvalidRequest("The request body is not valid for this API: JSON nested too deeply.") from None
    except NonFiniteNumber as error:
        raise InvalidRequest(f"The request body is not valid JSON: {error}.") from None
    except ValueError:
        # Python's own message for an integer over its digit limit names interpreter settings, not the API.
        raise InvalidRequest("The request body is not valid for this API: a number has too many digits.") from None


class NonFiniteNumber(ValueError):
    """NaN, Infinity or -Infinity in a request body: Python's json accepts them, JSON does not."""


def _reject_constant(name: str) -> Any:
    raise NonFiniteNumber(f"{name} is not a JSON number")


def _detect_form(document: dict) -> tuple[str, str]:
    uses_bloom = any(key in document for key in BLOOM_FORM)
    uses_lmi = any(key in document for key in LMI_FORM)
    if uses_bloom and uses_lmi:
        raise InvalidRequest(
            f"The request mixes the two formats: {FORM_HINT}, not both.",
            allowed=list(BLOOM_FORM) + list(LMI_FORM),
        )

    form = LMI_FORM if uses_lmi else BLOOM_FORM
    if form[0] not in document:
        raise InvalidRequest(f"The request has no prompt: {FORM_HINT}.", field=form[0])
    return form


def _parse_parameters(
    raw: Any, parameters_key: str, bounds: GenerationBounds
) -> tuple[GenerationParameters, bool]:
    if not isinstance(raw, dict):
        raise InvalidRequest(
            f"{parameters_key} must be a JSON object of generation parameters, got {_json_type(raw)}.",
            field=parameters_key,
        )

    supported = [name for name in ALL_GENERATION_PARAMETERS if name in bounds.supported_parameters]
    for name in raw:
        if name in supported:
            continue
        if name in ALL_GENERATION_PARAMETERS:
            problem = f"is not supported by profile {bounds.profile}, whose model container does not accept it"
        else:
            problem = "is not a known generation parameter"
        raise InvalidRequest(
            f"{parameters_key}.{name} {problem}. Allowed: {', '.join(supported)}.",
            field=f"{parameters_key}.{name}",
            allowed=supported,
        )

    schemas = parameter_schemas(bounds)
    for name, value in raw.items():
        if name == "max_new_tokens":
            _check_max_new_tokens(value, schemas[name], parameters_key, bounds)
        else:
            _check_value(value, schemas[name], f"{parameters_key}.{name}")

    values = dict(raw)
    default_applied = "max_new_tokens" not in values
    values.setdefault("max_new_tokens", bounds.default_max_new_tokens)
    if isinstance(values.get("stop"), str):
        values["stop"] = (values["stop"],)
    elif "stop" in values:
        values["stop"] = tuple(values["stop"])
    return GenerationParameters(**values), default_applied


def _check_max_new_tokens(value: Any, schema: dict, parameters_key: str, bounds: GenerationBounds) -> None:
    path = f"{parameters_key}.max_new_tokens"
    if _is_integer(value) and value > bounds.max_new_tokens:
        seconds = bounds.max_new_tokens * bounds.seconds_per_token
        raise InvalidRequest(
            f"{path}={value} is above this deployment's cap of {bounds.max_new_tokens} tokens: profile "
            f"{bounds.profile} generates about {1 / bounds.seconds_per_token:g} tokens per second, and "
            f"{bounds.max_new_tokens} tokens (about {seconds:g} s) is what fits into one request. "
            f"Ask for at most {bounds.max_new_tokens}.",
            field=path,
        )
    _check_value(value, schema, path)


def _check_object_keys(document: dict, schema: dict) -> None:
    """Check ``required`` and ``additionalProperties: false`` of a request form's schema."""
    allowed = list(schema["properties"])
    for key in document:
        if key not in schema["properties"]:
            raise InvalidRequest(f"Unknown field {key!r}. Allowed: {', '.join(allowed)}.", field=key, allowed=allowed)
    for key in schema.get("required", []):
        if key not in document:
            raise InvalidRequest(f"Missing required field {key!r}.", field=key, allowed=allowed)


def _check_value(value: Any, schema: dict, path: str) -> None:
    """Check one value against a schema of ``invoke_api.schema``, or raise ``InvalidRequest`` naming ``path``."""
    if not _matches(value, schema):
        raise InvalidRequest(
            f"{path}={_preview(value)} is invalid: expected {describe_schema(schema)}.", field=path
        )


def _matches(value: Any, schema: dict) -> bool:
    if "anyOf" in schema:
        return any(_matches(value, option) for option in schema["anyOf"])

    expected = schema.get("type")
    if expected == "integer":
        return _is_integer(value) and _in_range(value, schema)
    if expected == "number":
        return _is_number(value) and _in_range(value, schema)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "string":
        return isinstance(value, str) and _length_in_range(len(value), schema, "minLength", "maxLength")
    if expected == "array":
        return (
            isinstance(value, list)
            and _length_in_range(len(value), schema, "minItems", "maxItems")
            and all(_matches(item, schema["items"]) for item in value)
        )
    raise ValueError(f"schema type {expected!r} is not supported by this validator")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def _in_range(value: float, schema: dict) -> bool:
    if "minimum" in schema:
        low = schema["minimum"]
        if value < low or schema.get("exclusiveMinimum") and value == low:
            return False
    if "maximum" in schema:
        high = schema["maximum"]
        if value > high or schema.get("exclusiveMaximum") and value == high:
            return False
    return True


def _length_in_range(length: int, schema: dict, low_key: str, high_key: str) -> bool:
    return schema.get(low_key, 0) <= length <= schema.get(high_key, length)


def _check_encodable(prompt: str, path: str) -> None:
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidRequest(
            f"{path} contains a lone UTF-16 surrogate at character {error.start}, which is not valid Unicode text.",
            field=path,
        ) from None


def describe_schema(schema: dict) -> str:
    """Describe in words what a schema accepts, for error messages."""
    if "anyOf" in schema:
        return " or ".join(describe_schema(option) for option in schema["anyOf"])

    expected = schema.get("type")
    if expected in ("integer", "number"):
        noun = "a whole number" if expected == "integer" else "a number"
        return f"{noun} {_describe_range(schema)}".rstrip()
    if expected == "boolean":
        return "true or false"
    if expected == "string":
        return f"a string of {_describe_length(schema, 'minLength', 'maxLength', 'characters')}"
    if expected == "array":
        items = describe_schema(schema["items"])
        return f"a list of {_describe_length(schema, 'minItems', 'maxItems', 'items')}, each {items}"
    return f"a {expected}"


def _describe_range(schema: dict) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    exclusive_low, exclusive_high = schema.get("exclusiveMinimum", False), schema.get("exclusiveMaximum", False)
    if low is not None and high is not None and not exclusive_low and not exclusive_high:
        return f"from {low} to {high}"

    parts = []
    if low is not None:
        parts.append(f"greater than {low}" if exclusive_low else f"at least {low}")
    if high is not None:
        parts.append(f"below {high}" if exclusive_high else f"at most {high}")
    return " and ".join(parts)


def _describe_length(schema: dict, low_key: str, high_key: str, unit: str) -> str:
    low, high = schema.get(low_key, 0), schema.get(high_key)
    return f"{low} to {high} {unit}" if high is not None else f"at least {low} {unit}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _preview(value: Any) -> str:
    """Render a rejected value for a message without its text: strings and containers may hold the prompt.

    Numbers, booleans and null are shown as they are; a string, array or object only by its type and size.
    """
    if isinstance(value, str):
        return f"<string of {len(value)} characters>"
    if isinstance(value, list):
        return f"<array of {len(value)} items>"
    if isinstance(value, dict):
        return f"<object with {len(value)} keys>"
    return json.dumps(value)
