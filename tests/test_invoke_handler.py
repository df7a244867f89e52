"""Handler tests with botocore's Stubber: the generate and status routes, and each SageMaker failure mapped
to its status code and error body."""

import io
import json

import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from invoke_api.status import START_COMMAND
from stacks.profiles import PROFILES
from tests.invoke_fakes import (  # noqa: F401 - invoke_environment is a fixture
    ENDPOINT_NAME,
    EXAMPLE_PROMPT,
    invoke,
    invoke_environment,
    profile_environment,
    use_environment,
)

EXAMPLE_REQUEST = {
    "input": EXAMPLE_PROMPT,
    "gen_kwargs": {"min_length": 5, "max_new_tokens": 100, "temperature": 0.8, "num_beams": 5, "no_repeat_ngram_size": 2},
}


def container_reply(document) -> dict:
    body = json.dumps(document).encode()
    return {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"}


class JsonBody:
    """Matches a request body that decodes to the given JSON document, whatever its key order."""

    def __init__(self, document: dict) -> None:
        self.document = document

    def __eq__(self, other: object) -> bool:
        return isinstance(other, bytes) and json.loads(other) == self.document

    def __repr__(self) -> str:
        return f"JsonBody({self.document!r})"


def expected_invocation(container_request: dict | None = None) -> dict:
    return {
        "EndpointName": ENDPOINT_NAME,
        "ContentType": "application/json",
        "Accept": "application/json",
        "Body": JsonBody(container_request) if container_request else ANY,
    }


@pytest.fixture
def runtime(invoke_environment):
    with Stubber(invoke_environment.runtime) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def sagemaker(invoke_environment):
    with Stubber(invoke_environment.sagemaker) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def accepts_design_example(profile) -> bool:
    names = set(EXAMPLE_REQUEST["gen_kwargs"])
    return names <= set(profile.supported_parameters) and profile.max_num_beams >= EXAMPLE_REQUEST["gen_kwargs"]["num_beams"]


EXAMPLE_PROFILES = sorted(name for name, profile in PROFILES.items() if accepts_design_example(profile))
OTHER_PROFILES = sorted(set(PROFILES) - set(EXAMPLE_PROFILES))


def test_some_profile_accepts_design_example():
    assert EXAMPLE_PROFILES


@pytest.mark.parametrize("profile_name", EXAMPLE_PROFILES)
def test_design_example_returns_generated_text(monkeypatch, profile_name):
    """The example request of the original BLOOM-176B write-up returns the completion with token counts."""
    dependencies = use_environment(monkeypatch, profile_environment(profile_name))
    container_request = {"inputs": EXAMPLE_PROMPT, "parameters": EXAMPLE_REQUEST["gen_kwargs"]}

    with Stubber(dependencies.runtime) as runtime:
        runtime.add_response(
            "invoke_endpoint",
            container_reply(
                {"generated_text": " multilingual model.", "details": {"prompt_tokens": 8, "generated_tokens": 4}}
            ),
            expected_invocation(container_request),
        )
        status, body, _ = invoke("POST", "/generate", json.dumps(EXAMPLE_REQUEST))
        runtime.assert_no_pending_responses()

    assert status == 200
    assert body["generated_text"] == " multilingual model."
    assert body["usage"] == {"prompt_tokens": 8, "generated_tokens": 4, "total_tokens": 12}
    assert set(body["timing"]) == {"model_latency_ms", "total_latency_ms"}


@pytest.mark.parametrize("profile_name", OTHER_PROFILES)
def test_design_example_rejected_where_unsupported(monkeypatch, profile_name):
    """A profile whose container lacks beam search (or another parameter of the example) names it in a 400."""
    use_environment(monkeypatch, profile_environment(profile_name))

    status, body, _ = invoke("POST", "/generate", json.dumps(EXAMPLE_REQUEST))

    assert status == 400
    assert body["field"].startswith("gen_kwargs.")
    assert body["field"].split(".")[1] in EXAMPLE_REQUEST["gen_kwargs"]


@pytest.mark.parametrize(
    "public_request",
    [
        {"input": "Hello", "gen_kwargs": {"max_new_tokens": 10}},
        {"inputs": "Hello", "parameters": {"max_new_tokens": 10}},
    ],
    ids=["bloom-form", "lmi-form"],
)
def test_container_gets_inputs_form(runtime, public_request):
    """Both public request forms reach the container as {"inputs", "parameters"}, never {"input"}, which the
    container would reject with a 424."""
    runtime.add_response(
        "invoke_endpoint",
        container_reply({"generated_text": " world"}),
        expected_invocation({"inputs": "Hello", "parameters": {"max_new_tokens": 10}}),
    )

    status, body, _ = invoke("POST", "/generate", json.dumps(public_request))

    assert status == 200
    assert body == {"generated_text": " world", "usage": {}, "timing": body["timing"]}


def test_default_max_new_tokens_sent(runtime):
    """A request without max_new_tokens still bounds the generation with the deployment's default."""
    runtime.add_response(
        "invoke_endpoint",
        container_reply({"generated_text": "!"}),
        expected_invocation({"inputs": "Hi", "parameters": {"max_new_tokens": 64}}),
    )

    status, _, _ = invoke("POST", "/generate", json.dumps({"input": "Hi"}))

    assert status == 200


def test_stopped_endpoint_returns_503(runtime):
    """InvokeEndpoint on a missing endpoint (the model is stopped) returns 503 with Retry-After and how to
    start it, never a 500."""
    runtime.add_client_error(
        "invoke_endpoint",
        service_error_code="ValidationError",
        service_message=f"Endpoint {ENDPOINT_NAME} of account 123456789012 not found.",
        http_status_code=400,
        expected_params=expected_invocation(),
    )

    status, body, headers = invoke("POST", "/generate", json.dumps({"input": "Hi"}))

    assert status == 503
    assert body["error"] == "endpoint_not_running"
    assert body["state"] == "stopped"
    assert START_COMMAND in body["message"]
    assert int(headers["Retry-After"]) > 0
    assert body["retry_after_seconds"] == int(headers["Retry-After"])
    assert "123456789012" not in json.dumps(body)


@pytest.mark.parametrize(
    ("endpoint_status", "state"),
    [("Creating", "starting"), ("Deleting", "stopping"), ("Failed", "failed"), ("OutOfService", "failed")],
)
def test_endpoint_not_in_service_returns_503(runtime, sagemaker, endpoint_status, state):
    """A ValidationError while the endpoint exists but is not in service reports its state as a 503."""
    runtime.add_client_error(
        "invoke_endpoint",
        service_error_code="ValidationError",
        service_message=f"Endpoint {ENDPOINT_NAME} is not in service.",
        http_status_code=400,
    )
    sagemaker.add_response(
        "describe_endpoint",
        describe_endpoint_response(endpoint_status),
        {"EndpointName": ENDPOINT_NAME},
    )

    status, body, headers = invoke("POST", "/generate", json.dumps({"input": "Hi"}))

    assert status == 503
    assert body["error"] == "endpoint_not_running"
    assert body["state"] == state
    assert "Retry-After" in headers


def test_model_error_returns_502(runtime):
    """A container failure is a 502 with a stable code; the container's text never comes back as a generation."""
    runtime.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received server error (500) from primary with message "
        '"{"error": "generation_failed", "message": "CUDA out of memory SECRET-DETAIL"}"',
        http_status_code=424,
        modeled_fields={
            "OriginalStatusCode": 500,
            "OriginalMessage": '{"error": "generation_failed", "message": "CUDA out of memory SECRET-DETAIL"}',
            "LogStreamArn": "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/sagemaker/Endpoints/bloom-endpoint",
        },
    )

    status, body, _ = invoke("POST", "/generate", json.dumps({"input": "Hi"}))

    assert status == 502
    assert body["error"] == "model_error"
    assert "generated_text" not in body
    assert "SECRET-DETAIL" not in body["message"]


def test_model_rejection_returns_400(runtime):
    """A 400 from the container (prompt plus new tokens above its context) is the client's error, with the
    container's own explanation."""
    reason = "the prompt (1000 tokens) plus max_new_tokens (100) is 1100 tokens, above the 1024 this model holds"
    runtime.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Received client error (400) from primary",
        http_status_code=424,
        modeled_fields={
            "OriginalStatusCode": 400,
            "OriginalMessage": json.dumps({"error": "token_limit_exceeded", "message": reason}),
        },
    )

    status, body, _ = invoke("POST", "/generate", json.dumps({"input": "Hi"}))

    assert status == 400
    assert body["error"] == "invalid_request"
    assert reason in body["message"]


def test_container_invocation_timeout_returns_504(runtime):
    """SageMaker's own 60 s container timeout also maps to 504 with advice to ask for fewer tokens."""
    runtime.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        service_message="Your invocation timed out while waiting for a response from container primary.",
        http_status_code=424,
    )

    status, body, _ = invoke("POST", "/generate", json.dumps({"input": "Hi", "gen_kwargs": {"max_new_tokens": 150}}))

    assert status == 504
    assert body["error"] == "generation_timeout"
    assert "fewer tokens" in body["message"]
    assert "max_new_tokens=150" in body["message"]


def test_sagemaker_throttling_returns_429(runtime):
    runtime.add_client_error(
        "invoke_endpoint", service_error_code="ThrottlingException", service_message="Rate exceeded", http_status_code=400
    )

    status, body, headers = invoke("POST", "/generate", json.dumps({"input": "Hi"}))

    assert status == 429
    assert body["error"] == "throttled"
    assert int(headers["Retry-After"]) > 0


def test_model_not_ready_returns_503(runtime):
    runtime.add_client_error(
        "invoke_endpoint", service_error_code="ModelNotReadyException", service_message="Model not ready", http_status_code=429
    )

    status, body, _ = invoke("POST", "/generate", json.dumps({"input": "Hi"}))

    assert status == 503
    assert body["error"] == "endpoint_not_running"
    assert body["state"] == "starting"


def test_sagemaker_unavailable_returns_503(runtime):
    runtime.add_client_error(
        "invoke_endpoint", service_error_code="ServiceUnavailable", service_message="Unavailable", http_status_code=503
    )

    status, body, headers = invoke("POST", "/generate", json.dumps({"input": "Hi"}))

    assert status == 503
    assert body["error"] == "service_unavailable"
    assert "Retry-After" in headers


@pytest.mark.parametrize(
    "container_document",
    [{"error": "generation_failed", "message": "boom"}, ["a", "b"], {"generated_text": 5}, "plain text"],
    ids=["error-object", "list", "text-not-string", "string"],
)
def test_malformed_container_response_returns_502(runtime, container_document):
    """A 200 from the container that is not a generation is a model failure, never returned as text."""
    runtime.add_response("invoke_endpoint", container_reply(container_document))

    status, body, _ = invoke("POST", "/generate", json.dumps({"input": "Hi"}))

    assert status == 502
    assert body["error"] == "model_error"
    assert "boom" not in body["message"]


def test_invalid_request_never_reaches_sagemaker(runtime):
    """Stubber fails on any unexpected call, so a 400 here proves InvokeEndpoint was not called."""
    status, body, _ = invoke("POST", "/generate", json.dumps({"input": "Hi", "gen_kwargs": {"top_k": 0}}))

    assert status == 400
    assert body["field"] == "gen_kwargs.top_k"


def describe_endpoint_response(endpoint_status: str) -> dict:
    return {
        "EndpointName": ENDPOINT_NAME,
        "EndpointArn": f"arn:aws:sagemaker:eu-west-1:123456789012:endpoint/{ENDPOINT_NAME}",
        "EndpointConfigName": "config-1",
        "EndpointStatus": endpoint_status,
        "CreationTime": "2024-01-01T00:00:00Z",
        "LastModifiedTime": "2024-01-01T00:00:00Z",
    }


@pytest.mark.parametrize(
    ("endpoint_status", "state", "ready"),
    [("InService", "running", True), ("Updating", "updating", True), ("Creating", "starting", False)],
)
def test_status_route_reports_state(sagemaker, endpoint_status, state, ready):
    sagemaker.add_response("describe_endpoint", describe_endpoint_response(endpoint_status), {"EndpointName": ENDPOINT_NAME})

    status, body, _ = invoke("GET", "/status")

    assert status == 200
    assert body["state"] == state
    assert body["ready"] is ready
    assert body["endpoint_status"] == endpoint_status
    assert body["profile"] == "bloom-176b-int8"
    assert body["limits"]["max_new_tokens"] == 200


def test_status_route_when_stopped(sagemaker):
    sagemaker.add_client_error(
        "describe_endpoint",
        service_error_code="ValidationException",
        service_message=f"Could not find endpoint \"{ENDPOINT_NAME}\".",
        http_status_code=400,
    )

    status, body, _ = invoke("GET", "/status")

    assert status == 200
    assert body["state"] == "stopped"
    assert body["ready"] is False
    assert START_COMMAND in body["message"]
    assert "endpoint_status" not in body


def test_status_route_throttled(sagemaker):
    sagemaker.add_client_error(
        "describe_endpoint", service_error_code="ThrottlingException", service_message="Rate exceeded", http_status_code=400
    )

    status, body, _ = invoke("GET", "/status")

    assert status == 429
    assert body["error"] == "throttled"


def test_unknown_route_returns_404(invoke_environment):
    status, body, _ = invoke("DELETE", "/generate")

    assert status == 404
    assert body["error"] == "not_found"


def test_missing_setting_returns_500(monkeypatch, invoke_environment):
    """A broken environment fails each request clearly instead of crashing the import."""
    from invoke_api import handler

    monkeypatch.delenv("MAX_NEW_TOKENS")
    handler.dependencies.cache_clear()

    status, body, _ = invoke("POST", "/generate", json.dumps({"input": "Hi"}))

    assert status == 500
    assert body["error"] == "internal_error"
    assert "MAX_NEW_TOKENS" not in body["message"]


def test_metrics_count_errors_by_code(runtime, capfd):
    """Each request emits Requests and Latency, and a failed one also Errors with its ErrorCode dimension."""
    runtime.add_client_error(
        "invoke_endpoint", service_error_code="ThrottlingException", service_message="Rate exceeded", http_status_code=400
    )

    invoke("POST", "/generate", json.dumps({"input": "Hi"}))

    metric_lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    names = {
        metric["Name"]: directive["Dimensions"]
        for line in metric_lines
        for directive in line["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    }
    (errors,) = [line for line in metric_lines if "Errors" in line]
    assert {"Requests", "Latency", "Errors"} <= set(names)
    assert ["service", "Route", "ErrorCode"] in names["Errors"]
    assert errors["ErrorCode"] == "throttled"
