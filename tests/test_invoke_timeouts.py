"""The timeout chain and the no-retry client, against a sagemaker-runtime stand-in on 127.0.0.1."""

import json
import time

import boto3
import pytest
from botocore.config import Config

from invoke_api import timeouts
from invoke_api.bounds import bounds_for_profile
from stacks.api_config import profile_bounds
from stacks.profiles import PROFILES
from tests.invoke_fakes import (
    ENDPOINT_NAME,
    FakeReply,
    FakeSageMakerRuntime,
    error_reply,
    invoke,
    profile_environment,
    use_environment,
)

pytestmark = pytest.mark.slow

# Short enough to keep the test fast, long enough that a loaded CI machine still connects in time.
TEST_READ_TIMEOUT_SECONDS = 0.5


def test_timeout_chain_is_ordered():
    """Client read timeout < Lambda timeout < API Gateway integration timeout, so the function's 504 reaches
    the client before API Gateway's own timeout."""
    client_seconds = timeouts.CONNECT_TIMEOUT_SECONDS + timeouts.SAGEMAKER_READ_TIMEOUT_SECONDS

    assert client_seconds < timeouts.LAMBDA_TIMEOUT_SECONDS
    assert timeouts.LAMBDA_TIMEOUT_SECONDS < timeouts.INTEGRATION_TIMEOUT_SECONDS
    assert timeouts.INTEGRATION_TIMEOUT_SECONDS <= 29
    timeouts.check_timeout_chain()


@pytest.mark.parametrize("profile_name", sorted(PROFILES))
def test_token_cap_fits_time_budget(profile_name):
    """Each profile's max_new_tokens cap generates within the read timeout at the profile's speed."""
    profile = PROFILES[profile_name]
    bounds = profile_bounds(profile)

    assert bounds.max_new_tokens * bounds.seconds_per_token <= timeouts.generation_budget_seconds()
    assert bounds.max_new_tokens <= profile.max_new_tokens
    assert bounds.max_new_tokens < profile.max_total_tokens


def test_cap_lowered_for_slow_model():
    """A profile cap that would not finish in time is lowered to what the budget allows."""
    bounds = bounds_for_profile(
        profile="slow",
        max_new_tokens=500,
        max_total_tokens=2048,
        max_num_beams=1,
        supported_parameters=("max_new_tokens",),
        seconds_per_token=0.5,
    )

    assert bounds.max_new_tokens == int(timeouts.generation_budget_seconds() / 0.5)


@pytest.fixture
def fake_runtime(monkeypatch):
    """Start the stand-in and point the handler's sagemaker-runtime client at it."""

    def start(reply: FakeReply) -> FakeSageMakerRuntime:
        fake = FakeSageMakerRuntime(reply).__enter__()
        started.append(fake)
        use_environment(
            monkeypatch,
            profile_environment(
                SAGEMAKER_RUNTIME_ENDPOINT_URL=fake.url,
                SAGEMAKER_READ_TIMEOUT_SECONDS=str(TEST_READ_TIMEOUT_SECONDS),
            ),
        )
        return fake

    started: list[FakeSageMakerRuntime] = []
    yield start
    for fake in started:
        fake.__exit__(None, None, None)


def test_slow_generation_returns_504_once(fake_runtime):
    """A generation slower than the read timeout returns a 504 whose message requests fewer tokens, and the
    slow request reaches the endpoint exactly once."""
    fake = fake_runtime(FakeReply(body=b'{"generated_text": "late"}', delay=TEST_READ_TIMEOUT_SECONDS * 3))

    started = time.monotonic()
    status, body, _ = invoke("POST", "/generate", json.dumps({"input": "Hi", "gen_kwargs": {"max_new_tokens": 180}}))
    elapsed = time.monotonic() - started

    assert status == 504
    assert body["error"] == "generation_timeout"
    assert "fewer tokens" in body["message"]
    assert elapsed < TEST_READ_TIMEOUT_SECONDS * 3
    # A retry would follow the timeout at once, so a short wait is enough to see it.
    time.sleep(TEST_READ_TIMEOUT_SECONDS)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("reply", "expected_status", "expected_error"),
    [
        (error_reply(500, "InternalFailure", "internal failure"), 503, "service_unavailable"),
        (error_reply(503, "ServiceUnavailable", "unavailable"), 503, "service_unavailable"),
        (error_reply(400, "ThrottlingException", "rate exceeded"), 429, "throttled"),
        (
            error_reply(424, "ModelError", "server error (500)", OriginalStatusCode=500, OriginalMessage="{}"),
            502,
            "model_error",
        ),
    ],
    ids=["internal-failure", "service-unavailable", "throttling", "model-error"],
)
def test_failures_are_not_retried(fake_runtime, reply, expected_status, expected_error):
    """InvokeEndpoint is sent once even for errors that boto3 retries by default, so a generation never runs
    twice."""
    fake = fake_runtime(reply)

    status, body, _ = invoke("POST", "/generate", json.dumps({"input": "Hi"}))

    assert status == expected_status
    assert body["error"] == expected_error
    assert len(fake.requests) == 1
    assert fake.requests[0][0] == f"/endpoints/{ENDPOINT_NAME}/invocations"


def test_stand_in_counts_retries():
    """A client that does retry shows up as two requests, so the count above can catch retries."""
    with FakeSageMakerRuntime(error_reply(500, "InternalFailure", "internal failure")) as fake:
        client = boto3.client(
            "sagemaker-runtime",
            endpoint_url=fake.url,
            config=Config(retries={"total_max_attempts": 2, "mode": "standard"}, read_timeout=2),
        )
        with pytest.raises(client.exceptions.ClientError):
            client.invoke_endpoint(EndpointName=ENDPOINT_NAME, Body=b"{}", ContentType="application/json")

    assert len(fake.requests) == 2


def test_success_through_http(fake_runtime):
    """The whole path over HTTP: the container gets the LMI form and the client gets the completion."""
    fake = fake_runtime(
        FakeReply(body=json.dumps({"generated_text": " there", "details": {"generated_tokens": 1}}).encode())
    )

    status, body, _ = invoke("POST", "/generate", json.dumps({"input": "Hi", "gen_kwargs": {"max_new_tokens": 3}}))

    assert status == 200
    assert body["generated_text"] == " there"
    assert body["usage"] == {"generated_tokens": 1}
    assert json.loads(fake.requests[0][1]) == {"inputs": "Hi", "parameters": {"max_new_tokens": 3}}


def test_runtime_client_never_retries(monkeypatch):
    """The function's sagemaker-runtime client makes one attempt and waits at most the read timeout."""
    dependencies = use_environment(monkeypatch, profile_environment())
    config = dependencies.runtime.meta.config

    assert config.retries["total_max_attempts"] == 1
    assert config.read_timeout == timeouts.SAGEMAKER_READ_TIMEOUT_SECONDS
    assert config.connect_timeout == timeouts.CONNECT_TIMEOUT_SECONDS
