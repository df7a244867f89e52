"""``bloomctl invoke`` against moto (CloudFormation outputs, API Gateway keys) and a stand-in API on 127.0.0.1."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from moto import mock_aws

from bloomctl.cli import main
from bloomctl.commands.invoke import PARAMETER_OPTIONS
from invoke_api.schema import ALL_GENERATION_PARAMETERS

pytestmark = pytest.mark.slow

REGION = "eu-west-1"


class StandInApi:
    """Records each POST and returns a scripted status, body and headers after ``delay`` seconds."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.delay = 0.0
        self.status = 200
        self.body: dict = {"generated_text": " a model.", "usage": {}, "timing": {}}
        self.headers: dict[str, str] = {}
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                stand_in.requests.append({"path": self.path, "headers": headers, "body": json.loads(body)})
                time.sleep(stand_in.delay)
                payload = json.dumps(stand_in.body).encode()
                try:
                    self.send_response(stand_in.status)
                    self.send_header("Content-Type", "application/json")
                    for name, value in stand_in.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # The client timed out before the delayed response.

            def log_message(self, format, *args) -> None:  # noqa: A002 - signature fixed by the base class
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)


@pytest.fixture
def stand_in_api():
    api = StandInApi()
    api.thread.start()
    yield api
    api.server.shutdown()
    api.server.server_close()


def deploy_api_stack(stack_name: str, api_url: str, keys: dict[str, str]) -> dict[str, str]:
    """Create API keys in moto's API Gateway and an API stack whose outputs name them; return name -> id."""
    apigateway = boto3.client("apigateway", region_name=REGION)
    key_ids = {name: apigateway.create_api_key(name=name, value=value, enabled=True)["id"] for name, value in keys.items()}
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "ApiUrl": {"Value": api_url},
            "ApiKeyIds": {"Value": json.dumps(key_ids)},
        },
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=stack_name, TemplateBody=json.dumps(template)
    )
    return key_ids


@pytest.fixture
def aws(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BLOOM_API_KEY", raising=False)
    with mock_aws():
        yield


def test_invoke_sends_key_and_prints_text(aws, stand_in_api, capsys):
    """The URL comes from the stack outputs, the key from API Gateway, and the request carries x-api-key."""
    deploy_api_stack("bloom-api", stand_in_api.url, {"team": "secret-key-value-1234567890"})

    code = main(["--region", REGION, "invoke", "The BLOOM large language model is a", "--max-new-tokens", "20",
                 "--temperature", "0.8", "--num-beams", "2", "--stop", "\n", "--no-do-sample"])

    assert code == 0
    assert capsys.readouterr().out == " a model.\n"
    (request,) = stand_in_api.requests
    assert request["path"] == "/v1/generate"
    assert request["headers"]["x-api-key"] == "secret-key-value-1234567890"
    assert request["body"] == {
        "input": "The BLOOM large language model is a",
        "gen_kwargs": {"max_new_tokens": 20, "temperature": 0.8, "num_beams": 2, "do_sample": False, "stop": ["\n"]},
    }


def test_invoke_uses_prefix_from_cdk_json(aws, stand_in_api, tmp_path, capsys):
    (tmp_path / "cdk.json").write_text(json.dumps({"context": {"namePrefix": "research"}}))
    deploy_api_stack("research-api", stand_in_api.url, {"team": "research-key-value-123456"})

    code = main(["--region", REGION, "invoke", "Hello"])

    assert code == 0
    assert stand_in_api.requests[0]["headers"]["x-api-key"] == "research-key-value-123456"


def test_invoke_needs_key_choice_when_several(aws, stand_in_api, capsys):
    deploy_api_stack("bloom-api", stand_in_api.url, {"team-a": "value-a-1234567890abcd", "team-b": "value-b-1234567890abcd"})

    assert main(["--region", REGION, "invoke", "Hello"]) == 2
    assert "--key: team-a, team-b" in capsys.readouterr().err

    assert main(["--region", REGION, "invoke", "Hello", "--key", "team-b"]) == 0
    assert stand_in_api.requests[-1]["headers"]["x-api-key"] == "value-b-1234567890abcd"


def test_invoke_reports_api_error(aws, stand_in_api, capsys):
    """A 503 from a stopped model prints its code, message and Retry-After, and exits with 1."""
    deploy_api_stack("bloom-api", stand_in_api.url, {"team": "secret-key-value-1234567890"})
    stand_in_api.status = 503
    stand_in_api.body = {"error": "endpoint_not_running", "message": "The model is stopped. Start it with `bloomctl start --wait`."}
    stand_in_api.headers = {"Retry-After": "300"}

    code = main(["--region", REGION, "invoke", "Hello"])

    err = capsys.readouterr().err
    assert code == 1
    assert "HTTP 503 endpoint_not_running" in err
    assert "bloomctl start --wait" in err
    assert "retry after 300 s" in err


def test_invoke_json_output(aws, stand_in_api, capsys):
    deploy_api_stack("bloom-api", stand_in_api.url, {"team": "secret-key-value-1234567890"})

    assert main(["--region", REGION, "invoke", "Hello", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["generated_text"] == " a model."


def test_invoke_missing_stack(aws, capsys):
    code = main(["--region", REGION, "invoke", "Hello"])

    assert code == 2
    assert "reading stack bloom-api failed" in capsys.readouterr().err


def test_invoke_key_from_environment(aws, stand_in_api, monkeypatch):
    """--url and BLOOM_API_KEY skip the AWS look-ups (no stack exists here)."""
    monkeypatch.setenv("BLOOM_API_KEY", "from-environment-1234567890")

    assert main(["--region", REGION, "invoke", "Hello", "--url", stand_in_api.url]) == 0
    assert stand_in_api.requests[0]["headers"]["x-api-key"] == "from-environment-1234567890"


def test_invoke_url_needs_environment_key(aws, stand_in_api, capsys):
    """With --url, the key comes from BLOOM_API_KEY only, so a missing variable is an error without AWS look-ups."""
    code = main(["invoke", "Hello", "--url", stand_in_api.url])

    error = capsys.readouterr().err
    assert code == 2
    assert "--url needs the API key's value in the BLOOM_API_KEY environment variable" in error
    assert "stack" not in error.split("Without --url")[0]
    assert stand_in_api.requests == []


def test_invoke_unreachable_url(aws, monkeypatch, capsys):
    monkeypatch.setenv("BLOOM_API_KEY", "from-environment-1234567890")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    code = main(["invoke", "Hello", "--url", f"http://127.0.0.1:{port}/v1/"])

    error = capsys.readouterr().err
    assert code == 1
    assert f"could not reach http://127.0.0.1:{port}/v1/generate: [Errno" in error
    assert "refused" in error
    assert "HTTP 0" not in error


def test_invoke_timeout_names_the_limit(aws, stand_in_api, monkeypatch, capsys):
    monkeypatch.setenv("BLOOM_API_KEY", "from-environment-1234567890")
    stand_in_api.delay = 1.0

    code = main(["invoke", "Hello", "--url", stand_in_api.url, "--timeout", "0.2"])

    error = capsys.readouterr().err
    assert code == 1
    assert f"{stand_in_api.url}generate sent no response within 0.2 s: raise --timeout" in error
    assert "HTTP 0" not in error


def test_cli_covers_every_parameter():
    covered = set(PARAMETER_OPTIONS) | {"do_sample", "stop"}

    assert covered == set(ALL_GENERATION_PARAMETERS)
