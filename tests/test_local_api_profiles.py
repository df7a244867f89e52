"""Tests of the local stack's per-profile bounds and of what it leaves behind in the process when closed."""

import json
import os

import pytest
import requests

from local_mode.stack import start_local_stack
from tests.local_api_clients import EXAMPLE_REQUEST, curl

pytestmark = pytest.mark.slow


def test_int8_profile_rejects_write_up_beam_search():
    """The INT8 profile caps num_beams at 1 because DeepSpeed 0.8.3 rejects beam search, and local mode
    applies the same bound before the request reaches the model."""
    stack = start_local_stack("tiny", profile="bloom-176b-int8")
    try:
        key = stack.api_keys[0].value
        rejected = requests.post(stack.url + "generate", json=EXAMPLE_REQUEST, headers={"x-api-key": key}, timeout=60)
        greedy_request = {"input": EXAMPLE_REQUEST["input"], "gen_kwargs": {"max_new_tokens": 5, "num_beams": 1}}
        accepted = curl(stack.url + "generate", method="POST", key=key, body=json.dumps(greedy_request).encode())
    finally:
        stack.close()

    assert rejected.status_code == 400
    assert rejected.json()["field"] == "gen_kwargs.num_beams"
    assert "1" in rejected.json()["message"]
    assert accepted.status == 200


def test_second_stack_in_process_is_rejected():
    first = start_local_stack("tiny")
    try:
        with pytest.raises(RuntimeError, match="already runs"):
            start_local_stack("tiny")
        response = requests.get(first.url + "status", headers={"x-api-key": first.api_keys[0].value}, timeout=60)
    finally:
        first.close()

    assert response.status_code == 200


def test_close_restores_environment(monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "someone")
    monkeypatch.delenv("ENDPOINT_NAME", raising=False)
    monkeypatch.delenv("SAGEMAKER_RUNTIME_ENDPOINT_URL", raising=False)

    stack = start_local_stack("tiny")
    during = {name: os.environ.get(name) for name in ("AWS_PROFILE", "ENDPOINT_NAME", "SAGEMAKER_RUNTIME_ENDPOINT_URL")}
    stack.close()

    assert during["AWS_PROFILE"] is None
    assert during["ENDPOINT_NAME"] == "bloom-endpoint"
    assert during["SAGEMAKER_RUNTIME_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert os.environ["AWS_PROFILE"] == "someone"
    assert "ENDPOINT_NAME" not in os.environ
    assert "SAGEMAKER_RUNTIME_ENDPOINT_URL" not in os.environ


def test_closed_stack_refuses_connections():
    stack = start_local_stack("tiny")
    url = stack.url
    stack.close()

    with pytest.raises(requests.ConnectionError):
        requests.get(url + "status", timeout=5)

