"""Property-based test: arbitrary JSON and non-JSON bodies never make validation fail with a 5xx or raise."""

import io
import json

import pytest
from botocore.response import StreamingBody
from hypothesis import HealthCheck, given, settings, strategies as st

from invoke_api import handler
from invoke_api.bounds import GenerationBounds
from invoke_api.schema import ALL_GENERATION_PARAMETERS, ERROR_CODES
from invoke_api.settings import Settings
from tests.invoke_fakes import ENDPOINT_NAME, LambdaContext, profile_environment, proxy_event

# Statuses that validation and a well-behaved model may produce.
ALLOWED_STATUSES = {200, 400, 413}

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
parameter_names = st.sampled_from(ALL_GENERATION_PARAMETERS) | st.text(max_size=12)
near_valid_parameters = st.dictionaries(parameter_names, json_values, max_size=5)
near_valid_requests = st.fixed_dictionaries(
    {},
    optional={
        "input": st.text(max_size=40) | json_values,
        "inputs": st.text(max_size=40) | json_values,
        "gen_kwargs": near_valid_parameters | json_values,
        "parameters": near_valid_parameters | json_values,
        "stream": st.booleans(),
    },
)
text_bodies = st.text(max_size=200)
json_bodies = (json_values | near_valid_requests).map(json.dumps)
byte_bodies = st.binary(max_size=200)


class FakeRuntimeClient:
    """Returns a fixed completion for any request, so that valid requests complete with 200."""

    def invoke_endpoint(self, **kwargs):
        body = json.dumps({"generated_text": "ok", "details": {"prompt_tokens": 1, "generated_tokens": 1}}).encode()
        return {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"}


@pytest.fixture
def fake_dependencies(monkeypatch):
    settings_ = Settings.from_environment(profile_environment())
    dependencies = handler.Dependencies(settings=settings_, runtime=FakeRuntimeClient(), sagemaker=None)
    monkeypatch.setattr(handler, "dependencies", lambda: dependencies)
    return dependencies


def check_response(response: dict) -> None:
    status = response["statusCode"]
    body = json.loads(response["body"])

    assert status in ALLOWED_STATUSES, body
    if status == 200:
        assert body["generated_text"] == "ok"
    else:
        assert ERROR_CODES[body["error"]] == status
        assert body["message"]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_bodies | text_bodies)
def test_text_bodies_never_fail_server_side(fake_dependencies, body):
    check_response(handler.lambda_handler(proxy_event("POST", "/generate", body), LambdaContext()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=byte_bodies | json_bodies.map(str.encode))
def test_binary_bodies_never_fail_server_side(fake_dependencies, body):
    """Bodies that API Gateway passes base64-encoded, including invalid UTF-8."""
    check_response(handler.lambda_handler(proxy_event("POST", "/generate", body), LambdaContext()))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.text(max_size=50))
def test_invalid_base64_rejected(fake_dependencies, body):
    response = handler.lambda_handler(
        proxy_event("POST", "/generate", body + "!", base64_encoded=True), LambdaContext()
    )

    assert response["statusCode"] == 400


def test_fake_dependencies_reach_model(fake_dependencies):
    """The properties above can see a 200: a valid body passes validation and reaches the fake model."""
    response = handler.lambda_handler(proxy_event("POST", "/generate", json.dumps({"input": "Hi"})), LambdaContext())

    assert response["statusCode"] == 200
    assert fake_dependencies.settings.endpoint_name == ENDPOINT_NAME
    assert isinstance(fake_dependencies.settings.bounds, GenerationBounds)
