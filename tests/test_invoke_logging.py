"""The invoke function never logs the prompt or the completion, at any log level and on any path."""

import io
import json
import logging

import pytest

from invoke_api import handler
from tests.invoke_fakes import FakeReply, FakeSageMakerRuntime, error_reply, invoke, profile_environment, use_environment

pytestmark = pytest.mark.slow

PROMPT = "PROMPT-zebra-quartz-7731 tell me a secret"
COMPLETION = "COMPLETION-walrus-ember-4410 here it is"


class RecordCollector(logging.Handler):
    """Collects every record of every logger, formatted with its arguments."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()} {record.__dict__}")


@pytest.fixture
def debug_logging(monkeypatch):
    """Turn every logger, including the function's own, up to DEBUG and collect what they write: the records,
    and the JSON lines of the function's logger."""
    collector = RecordCollector()
    json_lines = io.StringIO()
    root = logging.getLogger()
    previous_root_level = root.level
    previous_function_level = handler.logger.log_level
    previous_stream = handler.logger.registered_handler.setStream(json_lines)
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    handler.logger.setLevel(logging.DEBUG)
    handler.logger.addHandler(collector)
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    yield collector, json_lines
    handler.logger.removeHandler(collector)
    handler.logger.setLevel(previous_function_level)
    handler.logger.registered_handler.setStream(previous_stream)
    root.removeHandler(collector)
    root.setLevel(previous_root_level)


SCENARIOS = {
    "success": (FakeReply(body=json.dumps({"generated_text": COMPLETION}).encode()), {"input": PROMPT}),
    # A container that echoes the prompt in its error text.
    "model-error": (
        error_reply(424, "ModelError", f"server error: {PROMPT}", OriginalStatusCode=500, OriginalMessage=PROMPT),
        {"input": PROMPT},
    ),
    "model-rejection": (
        error_reply(
            424,
            "ModelError",
            "client error",
            OriginalStatusCode=400,
            OriginalMessage=json.dumps({"error": "invalid_request", "message": "bad"}),
        ),
        {"inputs": PROMPT},
    ),
    "malformed-response": (FakeReply(body=json.dumps({"text": COMPLETION}).encode()), {"input": PROMPT}),
    "invalid-parameter": (FakeReply(), {"input": PROMPT, "gen_kwargs": {"temperature": PROMPT}}),
    "unknown-field": (FakeReply(), {"input": PROMPT, PROMPT: 1}),
    "not-found": (error_reply(400, "ValidationError", "Endpoint bloom-endpoint of account 1 not found."), {"input": PROMPT}),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_logs_contain_no_prompt_or_completion(monkeypatch, capfd, debug_logging, scenario):
    """Every line written to stdout, stderr or any logger during a request, including boto's at DEBUG, is
    free of the prompt and the completion."""
    reply, request = SCENARIOS[scenario]
    with FakeSageMakerRuntime(reply) as fake:
        use_environment(monkeypatch, profile_environment(SAGEMAKER_RUNTIME_ENDPOINT_URL=fake.url))
        status, body, _ = invoke("POST", "/generate", json.dumps(request))
    handler.dependencies.cache_clear()

    collector, json_lines = debug_logging
    captured = capfd.readouterr()
    output = "\n".join([captured.out, captured.err, json_lines.getvalue(), *collector.lines])
    completed = [json.loads(line) for line in json_lines.getvalue().splitlines() if "request completed" in line]

    assert len(completed) == 1
    assert completed[0]["status"] == status
    assert '"Requests"' in captured.out
    assert "zebra-quartz" not in output
    assert "walrus-ember" not in output
    if scenario == "success":
        assert body["generated_text"] == COMPLETION
