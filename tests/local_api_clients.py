"""HTTP clients for the local API tests: curl in a subprocess, and a reader of a server's output lines."""

import queue
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO

import pytest

EXAMPLE_REQUEST = {
    "input": "The BLOOM large language model is a",
    "gen_kwargs": {"min_length": 5, "max_new_tokens": 100, "temperature": 0.8, "num_beams": 5, "no_repeat_ngram_size": 2},
}


@dataclass(frozen=True)
class CurlResult:
    status: int
    # Header names in lower case.
    headers: dict[str, str]
    body: bytes


def curl_binary() -> str:
    path = shutil.which("curl")
    if path is None:
        pytest.fail("curl is not installed, and these tests call the API with it: install curl (apt-get install curl)")
    return path


def curl(
    url: str,
    *,
    method: str = "GET",
    key: str | None = None,
    body: bytes | None = None,
    headers: tuple[str, ...] = (),
    timeout: float = 60,
) -> CurlResult:
    """Call the URL with curl and return the status, the headers of the final response and the body."""
    command = [curl_binary(), "-sS", "-X", method, "-D", "-", "--max-time", str(timeout), url]
    if key is not None:
        command += ["-H", f"x-api-key: {key}"]
    for header in headers:
        command += ["-H", header]
    if body is not None:
        command += ["-H", "Content-Type: application/json", "--data-binary", "@-"]

    completed = subprocess.run(command, input=body or b"", capture_output=True, timeout=timeout + 10, check=True)
    return parse_curl_output(completed.stdout)


def parse_curl_output(output: bytes) -> CurlResult:
    """Split curl's ``-D -`` output (header blocks, then the body) into the final response's parts."""
    rest = output
    while True:
        head, _, rest = rest.partition(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        status = int(lines[0].split()[1])
        # A 100 Continue block comes before the real response.
        if status != 100:
            break

    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return CurlResult(status=status, headers=headers, body=rest)


class OutputReader:
    """Collect a subprocess's output lines in a thread, so that a test can wait for a line with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """Return the match of the first new line that matches, or fail after ``timeout`` seconds."""
        expression = re.compile(pattern)
        deadline = time.monotonic() + timeout
        try:
            while True:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                if line is None:
                    pytest.fail(f"output ended before a line matched {pattern!r}. Output:\n" + "\n".join(self.lines))
                self.lines.append(line)
                match = expression.search(line)
                if match:
                    return match
        except queue.Empty:
            pytest.fail(f"no line matched {pattern!r} within {timeout} s. Output:\n" + "\n".join(self.lines))
