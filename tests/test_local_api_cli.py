"""Tests of ``bloomctl local serve`` and the README's local-mode commands, run as subprocesses on 127.0.0.1.

Each server runs in its own process group and is stopped with SIGTERM or SIGINT (Ctrl-C). A server that
outlives the test is killed, so no test leaves a process behind.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.local_api_clients import EXAMPLE_REQUEST, OutputReader, curl, curl_binary

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"

START_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 30

URL_LINE = r" at (http://127\.0\.0\.1:(\d+)/v1/)$"


def bloomctl_command() -> list[str]:
    script = Path(sys.executable).parent / "bloomctl"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "bloomctl"]


def offline_environment(**extra: str) -> dict[str, str]:
    """Return the test's environment without AWS settings and with the Hugging Face libraries in offline mode."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    environment.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", **extra)
    return environment


class Server:
    """A server subprocess with its output lines, stopped by SIGTERM to its process group."""

    def __init__(self, command: list[str], cwd: Path, environment: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.stdout = OutputReader(self.process.stdout)
        self.stderr = OutputReader(self.process.stderr)

    def send_signal(self, signal_number: int) -> None:
        os.killpg(self.process.pid, signal_number)

    def stop(self, signal_number: int = signal.SIGTERM) -> int:
        """Send the signal and return the exit code, failing the test if the server needs more than the timeout."""
        self.send_signal(signal_number)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not stop within {STOP_TIMEOUT_SECONDS} s of signal {signal_number}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.send_signal(signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)


@pytest.fixture
def servers():
    started: list[Server] = []

    def start(command: list[str], cwd: Path, environment: dict[str, str]) -> Server:
        server = Server(command, cwd, environment)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def test_serve_prints_url_key_and_answers_curl(servers, tmp_path):
    # The working directory's cdk.json gives the usage plans, as for cdk synth.
    context = {
        "namePrefix": "trial",
        "usagePlans": [
            {"name": "trial", "rateLimit": 10, "burstLimit": 10, "quota": {"limit": 3, "period": "DAY"}, "keys": ["dev"]}
        ],
    }
    (tmp_path / "cdk.json").write_text(json.dumps({"context": context}))
    server = servers([*bloomctl_command(), "local", "serve", "--port", "0"], tmp_path, offline_environment())

    url = server.stdout.wait_for(URL_LINE, START_TIMEOUT_SECONDS).group(1)
    key = server.stdout.wait_for(r"^API key dev \(usage plan trial\): (\S+)$", 5).group(1)
    curl_line = server.stdout.wait_for(r"^  (curl .*)$", 5).group(1)
    server.stdout.wait_for(r"Press Ctrl-C to stop\.$", 5)

    printed_curl = subprocess.run(
        [curl_binary(), *shlex.split(curl_line)[1:]], capture_output=True, timeout=90, check=True
    )
    server.send_signal(signal.SIGUSR2)
    server.stdout.wait_for(r"^The model is stopped\.$", 10)
    stopped = curl(url + "generate", method="POST", key=key, body=json.dumps(EXAMPLE_REQUEST).encode())
    server.send_signal(signal.SIGUSR1)
    server.stdout.wait_for(r"^The model is running\.$", 10)
    status = curl(url + "status", key=key)
    over_quota = curl(url + "status", key=key)
    exit_code = server.stop()

    generation = json.loads(printed_curl.stdout)
    assert generation["generated_text"].strip()
    assert 1 <= generation["usage"]["generated_tokens"] <= 100
    assert stopped.status == 503
    assert stopped.headers["retry-after"] == "300"
    assert json.loads(stopped.body)["error"] == "endpoint_not_running"
    assert status.status == 200
    assert json.loads(status.body)["endpoint_name"] == "trial-endpoint"
    assert over_quota.status == 429
    assert json.loads(over_quota.body)["error"] == "quota_exceeded"
    assert exit_code == 0
    server.stderr.wait_for(r"Local stack stopped", 5)


def test_serve_stopped_with_int8_profile_and_fixed_key(servers, tmp_path):
    command = [
        *bloomctl_command(),
        "local",
        "serve",
        "--port",
        "0",
        "--profile",
        "bloom-176b-int8",
        "--stopped",
        "--api-key",
        "team=fixed-development-key-1234567890",
    ]
    server = servers(command, tmp_path, offline_environment())

    url = server.stdout.wait_for(URL_LINE, START_TIMEOUT_SECONDS).group(1)
    server.stdout.wait_for(r"^API key team \(usage plan default\): fixed-development-key-1234567890$", 5)
    server.stdout.wait_for(r"^The model is stopped: POST /generate returns 503 until it starts\.$", 5)
    server.stdout.wait_for(rf"^kill -USR1 {server.process.pid} starts the model, kill -USR2 {server.process.pid} stops it\.$", 5)
    beam_search = curl(
        url + "generate", method="POST", key="fixed-development-key-1234567890", body=json.dumps(EXAMPLE_REQUEST).encode()
    )
    greedy = curl(
        url + "generate",
        method="POST",
        key="fixed-development-key-1234567890",
        body=json.dumps({"input": "The BLOOM", "gen_kwargs": {"max_new_tokens": 4}}).encode(),
    )
    # SIGINT is what Ctrl-C sends.
    exit_code = server.stop(signal.SIGINT)

    assert beam_search.status == 400
    assert json.loads(beam_search.body)["field"] == "gen_kwargs.num_beams"
    assert greedy.status == 503
    assert greedy.headers["retry-after"] == "300"
    assert exit_code == 0


def test_serve_rejects_unknown_key_name(tmp_path):
    completed = subprocess.run(
        [*bloomctl_command(), "local", "serve", "--port", "0", "--api-key", "nobody=value"],
        cwd=tmp_path,
        env=offline_environment(),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_SECONDS,
    )

    assert completed.returncode == 2
    assert "nobody" in completed.stderr
    assert "usagePlans" in completed.stderr


def readme_local_mode_blocks() -> list[str]:
    """Return the shell code blocks of the README's "Local mode" section."""
    text = README.read_text()
    section = text.split("\n## Local mode\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


def test_readme_local_mode_works_offline(servers, tmp_path):
    serve_block, call_block = readme_local_mode_blocks()[:2]
    serve_command = serve_block.split("#", 1)[0].strip()
    if subprocess.run(["make", "-q", ".venv/.installed"], cwd=REPO_ROOT, capture_output=True).returncode != 0:
        pytest.skip("the .venv is older than the requirements files: run make setup first")

    # A cache folder of its own makes the command build the tiny BLOOM from scratch, as on a fresh clone.
    environment = offline_environment(LOCAL_ARGS="--port 0", BLOOM_LOCAL_CACHE_DIR=str(tmp_path / "cache"))
    server = servers(["bash", "-c", serve_command], REPO_ROOT, environment)
    url, port = server.stdout.wait_for(URL_LINE, START_TIMEOUT_SECONDS).groups()
    key = server.stdout.wait_for(r"^API key team \(usage plan default\): (\S+)$", 5).group(1)

    call_lines = [line for line in call_block.splitlines() if not line.startswith("KEY=")]
    call_script = "\n".join(call_lines).replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    called = subprocess.run(
        ["bash", "-c", call_script], env={**environment, "KEY": key}, capture_output=True, text=True, timeout=90
    )
    server.stop()

    assert serve_command == "make local"
    assert url == f"http://127.0.0.1:{port}/v1/"
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["generated_text"].strip()
    assert (tmp_path / "cache" / "tiny-bloom-v1" / "config.json").is_file()
    server.stderr.wait_for(r"Local stack stopped", 5)
