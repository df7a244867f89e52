"""Request validation against the per-profile bounds, the bounds' environment round trip, and the schema
that both the function and the API description use."""

import json

import pytest

from invoke_api.bounds import GenerationBounds, SettingsError, bounds_for_profile
from invoke_api.errors import InvalidRequest, PayloadTooLarge
from invoke_api.schema import ALL_GENERATION_PARAMETERS, generate_request_schema
from invoke_api.settings import Settings
from invoke_api.validation import describe_schema, parse_generate_request
from stacks import profiles
from tests.invoke_fakes import profile_environment


# Bounds of two kinds of container, fixed here so that the tests do not move with the profiles: one with beam
# search and the transformers parameters, one sampling-only container that accepts stop sequences.
BEAM_SEARCH = bounds_for_profile(
    profile="beam-search",
    max_new_tokens=200,
    max_total_tokens=1024,
    max_num_beams=5,
    supported_parameters=tuple(name for name in ALL_GENERATION_PARAMETERS if name != "stop"),
    seconds_per_token=0.1,
)
SAMPLING = bounds_for_profile(
    profile="sampling",
    max_new_tokens=250,
    max_total_tokens=2048,
    max_num_beams=1,
    supported_parameters=("max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "do_sample",
                          "seed", "stop"),
    seconds_per_token=0.08,
)


def parse(document, bounds: GenerationBounds = BEAM_SEARCH):
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return parse_generate_request(body, bounds)


def rejection(document, bounds: GenerationBounds = BEAM_SEARCH) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        parse(document, bounds)
    return caught.value


def test_both_forms_give_same_request():
    """The format of the original BLOOM-176B write-up and the LMI format are both accepted."""
    bloom = parse({"input": "Hi", "gen_kwargs": {"max_new_tokens": 10, "temperature": 0.8}})
    lmi = parse({"inputs": "Hi", "parameters": {"max_new_tokens": 10, "temperature": 0.8}})

    assert bloom.prompt == lmi.prompt == "Hi"
    assert bloom.parameters == lmi.parameters
    assert bloom.parameters_key == "gen_kwargs"
    assert lmi.parameters_key == "parameters"


def test_design_example_is_valid():
    request = parse(
        {
            "input": "The BLOOM large language model is a",
            "gen_kwargs": {"min_length": 5, "max_new_tokens": 100, "temperature": 0.8, "num_beams": 5,
                           "no_repeat_ngram_size": 2},
        }
    )

    assert request.parameters.as_dict() == {
        "max_new_tokens": 100,
        "min_length": 5,
        "temperature": 0.8,
        "num_beams": 5,
        "no_repeat_ngram_size": 2,
    }
    assert request.default_max_new_tokens_applied is False


def test_max_new_tokens_above_cap_names_cap():
    """A max_new_tokens above the configured cap is a 400 whose message names the cap, so the container never
    gets a request past its context length."""
    error = rejection({"input": "Hi", "gen_kwargs": {"max_new_tokens": BEAM_SEARCH.max_new_tokens + 1}})

    assert error.status == 400
    assert error.details["field"] == "gen_kwargs.max_new_tokens"
    assert f"cap of {BEAM_SEARCH.max_new_tokens} tokens" in error.message
    assert f"at most {BEAM_SEARCH.max_new_tokens}" in error.message


def test_max_new_tokens_at_cap_accepted():
    request = parse({"input": "Hi", "gen_kwargs": {"max_new_tokens": BEAM_SEARCH.max_new_tokens}})

    assert request.parameters.max_new_tokens == BEAM_SEARCH.max_new_tokens


def test_unknown_parameter_lists_allowed():
    error = rejection({"input": "Hi", "gen_kwargs": {"max_tokens": 5}})

    assert error.details["field"] == "gen_kwargs.max_tokens"
    assert error.details["allowed"] == list(BEAM_SEARCH.supported_parameters)
    assert "is not a known generation parameter" in error.message
    for name in BEAM_SEARCH.supported_parameters:
        assert name in error.message


def test_unsupported_parameter_names_profile():
    """stop is a public parameter, but this profile's container does not accept it."""
    error = rejection({"input": "Hi", "gen_kwargs": {"stop": ["\n"]}})

    assert error.details["field"] == "gen_kwargs.stop"
    assert "not supported by profile beam-search" in error.message
    assert "stop" not in error.details["allowed"]


def test_unknown_top_level_field_lists_allowed():
    error = rejection({"input": "Hi", "stream": True})

    assert error.details["field"] == "stream"
    assert error.details["allowed"] == ["input", "gen_kwargs"]


def test_mixed_forms_rejected():
    error = rejection({"input": "Hi", "parameters": {}})

    assert "mixes the two formats" in error.message


@pytest.mark.parametrize("document", [{}, {"gen_kwargs": {}}, {"parameters": {}}])
def test_missing_prompt_rejected(document):
    error = rejection(document)

    assert "no prompt" in error.message


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 10.0}, "max_new_tokens"),
        ({"max_new_tokens": True}, "max_new_tokens"),
        ({"max_new_tokens": "10"}, "max_new_tokens"),
        ({"temperature": 0}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"num_beams": 6}, "num_beams"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"do_sample": 1}, "do_sample"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"min_length": 5000}, "min_length"),
        ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
    ],
)
def test_out_of_range_values_name_field(parameters, field):
    error = rejection({"input": "Hi", "gen_kwargs": parameters})

    assert error.details["field"] == f"gen_kwargs.{field}"
    assert "expected" in error.message or "cap" in error.message


@pytest.mark.parametrize("stop", ["\n", ["\n", "###"]])
def test_stop_accepted_where_supported(stop):
    request = parse({"inputs": "Hi", "parameters": {"stop": stop}}, SAMPLING)

    assert request.parameters.as_dict()["stop"] == ([stop] if isinstance(stop, str) else stop)


@pytest.mark.parametrize("stop", ["", [], ["a"] * 5, ["x" * 65], [1]])
def test_invalid_stop_rejected(stop):
    error = rejection({"inputs": "Hi", "parameters": {"stop": stop}}, SAMPLING)

    assert error.details["field"] == "parameters.stop"
    assert "a string of 1 to 64 characters or a list of 1 to 4 items" in error.message


def test_num_beams_bounded_by_profile():
    """A sampling-only container does not accept num_beams at all."""
    error = rejection({"inputs": "Hi", "parameters": {"num_beams": 2}}, SAMPLING)

    assert "not supported by profile sampling" in error.message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b'{"input": NaN}', "NaN is not a JSON number"),
        (b'{"input": "Hi", "gen_kwargs": {"temperature": Infinity}}', "Infinity is not a JSON number"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b'"just a string"', "must be a JSON object"),
        (b'{"input": "\\ud800"}', "lone UTF-16 surrogate"),
        (b'{"input": ["Hi"]}', "input="),
        (b'{"input": ""}', "input="),
        (b'{"input": "Hi", "gen_kwargs": []}', "must be a JSON object of generation parameters"),
    ],
    ids=[
        "empty", "blank", "truncated", "not-utf8", "nan", "infinity", "deep", "string", "surrogate", "list-prompt",
        "empty-prompt", "list-parameters",
    ],
)
def test_malformed_bodies_rejected(body, fragment):
    error = rejection(body)

    assert error.status == 400
    assert fragment in error.message


def test_large_body_rejected_with_413():
    body = json.dumps({"input": "x" * BEAM_SEARCH.max_request_bytes}).encode()

    with pytest.raises(PayloadTooLarge) as caught:
        parse_generate_request(body, BEAM_SEARCH)

    assert caught.value.status == 413
    assert str(BEAM_SEARCH.max_request_bytes) in caught.value.message


def test_long_value_not_echoed_whole():
    error = rejection({"input": "Hi", "gen_kwargs": {"temperature": "y" * 1000}})

    assert "y" * 50 not in error.message


def test_schema_lists_every_profile_parameter():
    """The API's parameter list and the profiles' list are the same, and each profile uses a subset."""
    assert ALL_GENERATION_PARAMETERS == profiles.ALL_GENERATION_PARAMETERS
    for profile in profiles.PROFILES.values():
        assert set(profile.supported_parameters) <= set(ALL_GENERATION_PARAMETERS)
        assert "max_new_tokens" in profile.supported_parameters


def test_schema_forms_hold_supported_parameters():
    schema = generate_request_schema(BEAM_SEARCH)
    bloom_form, lmi_form = schema["oneOf"]

    assert list(bloom_form["properties"]["gen_kwargs"]["properties"]) == list(BEAM_SEARCH.supported_parameters)
    assert bloom_form["properties"]["gen_kwargs"]["properties"]["max_new_tokens"]["maximum"] == BEAM_SEARCH.max_new_tokens
    assert lmi_form["required"] == ["inputs"]
    assert bloom_form["additionalProperties"] is False


@pytest.mark.parametrize(
    ("schema", "text"),
    [
        ({"type": "integer", "minimum": 1, "maximum": 5}, "a whole number from 1 to 5"),
        ({"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 2}, "a number greater than 0 and at most 2"),
        ({"type": "integer", "minimum": 0}, "a whole number at least 0"),
        ({"type": "boolean"}, "true or false"),
    ],
)
def test_describe_schema(schema, text):
    assert describe_schema(schema) == text


def test_bounds_round_trip_through_environment():
    original = bounds_for_profile(
        profile="bloom-7b1",
        max_new_tokens=512,
        max_total_tokens=2048,
        max_num_beams=1,
        supported_parameters=profiles.VLLM_PARAMETERS,
        seconds_per_token=0.03,
    )

    assert GenerationBounds.from_environment(original.to_environment()) == original


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("MAX_NEW_TOKENS", "", "MAX_NEW_TOKENS is missing"),
        ("MAX_NEW_TOKENS", "many", "MAX_NEW_TOKENS='many' is invalid"),
        ("MAX_NEW_TOKENS", "5000", "inconsistent"),
        ("SECONDS_PER_TOKEN", "nan", "SECONDS_PER_TOKEN='nan' is invalid"),
        ("SUPPORTED_PARAMETERS", "temperature", "must include max_new_tokens"),
        ("ENDPOINT_NAME", "", "ENDPOINT_NAME is missing"),
        ("SAGEMAKER_READ_TIMEOUT_SECONDS", "60", "SAGEMAKER_READ_TIMEOUT_SECONDS='60' is invalid"),
    ],
)
def test_settings_errors_name_variable(name, value, fragment):
    environment = profile_environment(**{name: value})

    with pytest.raises(SettingsError) as caught:
        Settings.from_environment(environment)

    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "document",
    [
        {"input": ["CANARY-PROMPT-TEXT", "b"]},
        {"input": {"text": "CANARY-PROMPT-TEXT"}},
        {"input": "hi", "gen_kwargs": {"stop": "CANARY-PROMPT-TEXT"}},
        {"input": "hi", "gen_kwargs": {"stop": ["CANARY-PROMPT-TEXT", 3]}},
    ],
)
def test_rejection_message_never_echoes_text(document):
    error = rejection(document)

    assert "CANARY" not in error.message


def test_rejection_message_shows_number_value():
    error = rejection({"input": "hi", "gen_kwargs": {"temperature": -1}})

    assert "temperature=-1 is invalid" in error.message


def test_overlong_integer_named_without_python_internals():
    body = '{"input": "hi", "gen_kwargs": {"max_new_tokens": ' + "9" * 5000 + "}}"

    with pytest.raises(InvalidRequest) as raised:
        parse_generate_request(body.encode(), BEAM_SEARCH)

    assert "too many digits" in raised.value.message
    assert "sys." not in raised.value.message


@pytest.mark.parametrize("prompt", ["   ", "\n\t"])
def test_blank_prompt_rejected(prompt):
    error = rejection({"input": prompt})

    assert error.message == "input is blank: give the text that the model continues."
