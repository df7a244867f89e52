"""Run ``moto_server`` as a subprocess on 127.0.0.1 for the deploy cycle, and stop it afterwards.

moto keeps all state in memory, so each server starts from an empty fake AWS account (123456789012).
"""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 20
STOP_TIMEOUT_SECONDS = 10


class MotoServer:
    """A running ``moto_server`` process, its URL and the file that receives its output."""

    def __init__(self, process: subprocess.Popen, port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def problems(self, max_chars: int = 4000) -> str:
        """Return the end of the server's output without the access log lines of successful requests."""
        lines = [line for line in self.log_text().splitlines() if '" 200 -' not in line]
        return "\n".join(lines)[-max_chars:]

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def moto_server_command() -> list[str]:
    """Return the ``moto_server`` entry point of the interpreter that runs the tests."""
    script = Path(sys.executable).with_name("moto_server")
    if not script.exists():
        raise FileNotFoundError(f"{script} is missing: install requirements-dev.txt (moto[server]) into the venv")
    return [str(script)]


def start_moto_server(log_path: Path) -> MotoServer:
    """Start moto_server on a free port of 127.0.0.1 and wait until it responds.

    Raises RuntimeError with the server's output when it exits or does not respond within
    START_TIMEOUT_SECONDS.
    """
    port = free_port()
    log_file = log_path.open("wb")
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "*",
    }
    process = subprocess.Popen(
        [*moto_server_command(), "--host", HOST, "--port", str(port)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=environment,
    )
    log_file.close()
    server = MotoServer(process, port, log_path)

    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with code {process.returncode}:\n{server.log_text()}")
        try:
            with urllib.request.urlopen(f"{server.url}/moto-api/", timeout=2):
                return server
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)

    server.stop()
    raise RuntimeError(f"moto_server did not respond on {server.url} within {START_TIMEOUT_SECONDS} s:\n{server.log_text()}")
