"""Tests of the local model server through boto3's sagemaker-runtime client, with a real tiny BLOOM on the CPU.

The server runs on 127.0.0.1 in a background thread. The tiny model is built once into the local cache
(see local_mode.tiny_bloom) and reused by later runs; nothing is downloaded.
"""

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local_mode.model_server import start_model_server
from local_mode.tiny_bloom import SPECIAL_TOKENS, VOCABULARY_SIZE, tiny_bloom_dir

pytestmark = pytest.mark.slow

PROMPT = "The BLOOM large language model is a"


def runtime_client(url):
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="eu-west-1",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30),
    )


@pytest.fixture(scope="module")
def model_server():
    running = start_model_server("tiny", endpoint_name="bloom-test-endpoint")
    yield running
    running.stop()


@pytest.fixture
def client(model_server):
    """A client per test: it takes the fake credentials that the autouse fixture sets for each test."""
    return runtime_client(model_server.url)


def invoke(client, endpoint_name, payload):
    response = client.invoke_endpoint(
        EndpointName=endpoint_name, ContentType="application/json", Accept="application/json", Body=payload
    )
    return response, json.loads(response["Body"].read())


def invoke_json(client, model_server, parameters, prompt=PROMPT):
    _, body = invoke(client, model_server.endpoint_name, json.dumps({"inputs": prompt, "parameters": parameters}))
    return body


def test_invoke_endpoint_returns_generated_text(client, model_server):
    response, body = invoke(
        client, model_server.endpoint_name, json.dumps({"inputs": PROMPT, "parameters": {"max_new_tokens": 12}})
    )

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert isinstance(body["generated_text"], str)
    assert body["generated_text"].strip()
    assert not body["generated_text"].startswith(PROMPT)
    assert body["details"]["prompt_tokens"] == model_server.service.engine.count_tokens(PROMPT)
    assert 1 <= body["details"]["generated_tokens"] <= 12


@pytest.mark.parametrize("max_new_tokens", [1, 5, 17])
def test_max_new_tokens_bounds_generation(client, model_server, max_new_tokens):
    body = invoke_json(client, model_server, {"max_new_tokens": max_new_tokens, "do_sample": True, "seed": 11})

    assert 1 <= body["details"]["generated_tokens"] <= max_new_tokens


def test_min_length_forces_exact_token_count(client, model_server):
    """min_length counts prompt and new tokens for a causal LM, so prompt + 9 forbids an earlier end."""
    prompt_tokens = model_server.service.engine.count_tokens(PROMPT)

    body = invoke_json(client, model_server, {"max_new_tokens": 9, "min_length": prompt_tokens + 9})

    assert body["details"]["generated_tokens"] == 9


def test_parameters_reach_generate_unchanged(client, model_server, monkeypatch):
    model = model_server.service.engine.model
    original_generate = model.generate
    calls = []

    def recording_generate(**kwargs):
        calls.append({name: value for name, value in kwargs.items() if name not in ("input_ids", "attention_mask")})
        return original_generate(**kwargs)

    monkeypatch.setattr(model, "generate", recording_generate)
    parameters = {
        "max_new_tokens": 6,
        "min_length": 2,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 20,
        "no_repeat_ngram_size": 2,
        "repetition_penalty": 1.1,
        "do_sample": True,
        "num_beams": 1,
    }

    invoke_json(client, model_server, {**parameters, "seed": 5, "stop": ["\n"]})

    assert calls == [parameters]


def test_seed_makes_sampling_repeatable(client, model_server):
    parameters = {"max_new_tokens": 15, "do_sample": True, "temperature": 1.5}

    first = invoke_json(client, model_server, {**parameters, "seed": 1234})
    second = invoke_json(client, model_server, {**parameters, "seed": 1234})
    other = invoke_json(client, model_server, {**parameters, "seed": 4321})

    assert first == second
    assert other["generated_text"] != first["generated_text"]


def test_unknown_endpoint_raises_validation_error(client):
    with pytest.raises(ClientError) as raised:
        invoke(client, "no-such-endpoint", json.dumps({"inputs": PROMPT}))

    error = raised.value.response
    assert error["Error"]["Code"] == "ValidationError"
    assert error["Error"]["Message"] == "Endpoint no-such-endpoint of account 000000000000 not found."
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert isinstance(raised.value, client.exceptions.ValidationError)


def test_bad_body_raises_model_error_with_container_400(client, model_server):
    with pytest.raises(client.exceptions.ModelError) as raised:
        invoke(client, model_server.endpoint_name, json.dumps({"input": PROMPT}))

    error = raised.value.response
    original = json.loads(error["OriginalMessage"])
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == 400
    assert original["error"] == "invalid_request"
    assert 'the key is "inputs"' in original["message"]
    assert error["Error"]["Message"].startswith("Received client error (400) from primary with message")
    assert error["LogStreamArn"].endswith("/aws/sagemaker/Endpoints/bloom-test-endpoint")


def test_token_cap_raises_model_error(client, model_server):
    long_prompt = " ".join(["model"] * 2100)

    with pytest.raises(client.exceptions.ModelError) as raised:
        invoke_json(client, model_server, {"max_new_tokens": 100}, prompt=long_prompt)

    original = json.loads(raised.value.response["OriginalMessage"])
    assert raised.value.response["OriginalStatusCode"] == 400
    assert original["error"] == "token_limit_exceeded"
    assert "2048 tokens" in original["message"]


def test_write_up_example_with_beam_search_returns_text(client, model_server):
    parameters = {"min_length": 5, "max_new_tokens": 20, "temperature": 0.8, "num_beams": 5, "no_repeat_ngram_size": 2}

    response = invoke_json(client, model_server, parameters)

    assert response["generated_text"]
    assert response["details"]["generated_tokens"] >= 1


def test_beam_search_rejected_as_in_deepspeed_container():
    int8_server = start_model_server("tiny", endpoint_name="bloom-int8-endpoint", profile="bloom-176b-int8")
    try:
        with pytest.raises(botocore.exceptions.ClientError) as raised:
            invoke_json(runtime_client(int8_server.url), int8_server, {"max_new_tokens": 10, "num_beams": 5})
    finally:
        int8_server.stop()

    original = json.loads(raised.value.response["OriginalMessage"])
    assert raised.value.response["OriginalStatusCode"] == 400
    assert "num_beams=5" in original["message"]


def test_beam_search_allowed_when_limit_raised():
    running = start_model_server("tiny", property_overrides={"max_num_beams": "5"})
    try:
        body = invoke_json(
            runtime_client(running.url),
            running,
            {"min_length": 5, "max_new_tokens": 10, "temperature": 0.8, "num_beams": 5, "no_repeat_ngram_size": 2},
        )
    finally:
        running.stop()

    assert 1 <= body["details"]["generated_tokens"] <= 10


def test_ping_reports_healthy(model_server):
    with urllib.request.urlopen(f"{model_server.url}/ping", timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {"status": "Healthy"}


def test_unknown_route_returns_404(model_server):
    request = urllib.request.Request(f"{model_server.url}/invocations", data=b"{}", method="POST")

    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)

    assert raised.value.code == 404


# ---- failures that the tiny model cannot show, with stand-in services ----


class SlowService:
    def __init__(self, seconds):
        self.seconds = seconds

    def invoke(self, body):
        time.sleep(self.seconds)
        return 200, {"generated_text": "late", "details": {"prompt_tokens": 1, "generated_tokens": 1}}


class FailingService:
    def invoke(self, body):
        return 500, {"error": "generation_failed", "message": "generation failed: RuntimeError: out of memory"}


def test_slow_container_raises_timeout_model_error():
    running = start_model_server(service=SlowService(seconds=2.0), invocation_timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(ClientError) as raised:
            invoke(runtime_client(running.url), running.endpoint_name, json.dumps({"inputs": PROMPT}))
        elapsed = time.monotonic() - started
    finally:
        running.stop()

    error = raised.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert "Your invocation timed out while waiting for a response from container primary" in error["Error"]["Message"]
    assert elapsed < 1.5


def test_container_500_raises_model_error():
    running = start_model_server(service=FailingService())
    try:
        with pytest.raises(ClientError) as raised:
            invoke(runtime_client(running.url), running.endpoint_name, json.dumps({"inputs": PROMPT}))
    finally:
        running.stop()

    error = raised.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == 500
    assert error["Error"]["Message"].startswith("Received server error (500) from primary")
    assert json.loads(error["OriginalMessage"])["error"] == "generation_failed"


def test_stop_releases_port():
    running = start_model_server(service=FailingService())
    running.stop()

    with pytest.raises(OSError):
        urllib.request.urlopen(f"{running.url}/ping", timeout=2)


def test_command_serves_until_sigterm():
    process = subprocess.Popen(
        [sys.executable, "-m", "local_mode.model_server", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        first_line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", first_line).group(0)
        with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:
            ping_status = response.status

        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert "bloom-local-endpoint" in first_line
    assert ping_status == 200
    assert exit_code == 0


# ---- the tiny model itself ----


def test_tiny_bloom_built_once_and_reused(tmp_path):
    model_dir = tiny_bloom_dir(tmp_path)
    weights = model_dir / "model.safetensors"
    built_at = weights.stat().st_mtime_ns

    again = tiny_bloom_dir(tmp_path)

    assert again == model_dir
    assert weights.stat().st_mtime_ns == built_at
    assert [path.name for path in tmp_path.iterdir()] == [model_dir.name]


def test_tiny_bloom_is_small_bloom(tmp_path):
    config = json.loads((tiny_bloom_dir(tmp_path) / "config.json").read_text())
    tokenizer = json.loads((tiny_bloom_dir(tmp_path) / "tokenizer.json").read_text())
    special_ids = {token["content"]: token["id"] for token in tokenizer["added_tokens"]}

    assert config["model_type"] == "bloom"
    assert config["n_layer"] == 2
    assert config["hidden_size"] == 64
    assert config["vocab_size"] <= VOCABULARY_SIZE
    assert special_ids == {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (1, 2, 3)
