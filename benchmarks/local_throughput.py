"""Local-mode throughput and p50/p99 latency at concurrency 1, 8 and 32 on the tiny BLOOM.

The default path is the local API (``local_mode.stack.start_local_stack``, what ``bloomctl local serve`` runs):
HTTP POST /v1/generate with an API key, the API front's key and throttle checks, the unchanged invoke
function, the local endpoint and the tiny random-weight BLOOM on the CPU. Clients are threads of this process,
each with its own keep-alive connection to 127.0.0.1. The usage plan and the stage throttle are raised through
context overrides (a plan of 10,000 requests per second and ``invokeConcurrency`` 1000), so that the figures
measure the request path, not the configured limits.

``--path handler`` leaves out HTTP and the API front: client threads call ``invoke_api.handler.lambda_handler``
in this process, one at a time as one Lambda execution environment runs them, in front of the local model
server.

Each level sends a bounded number of requests. Its time budget stops new requests, and the requests in flight
then finish within the client's 60 s timeout.

Run: ``make bench-local`` or ``.venv/bin/python -m benchmarks.local_throughput``.
"""

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from benchmarks.common import (
    ENDPOINT_NAME,
    LOCAL_PROFILE,
    Deadline,
    InstantModelService,
    LambdaContext,
    LatencySummary,
    configure_torch,
    ensure_tcp_nodelay,
    generate_body,
    handler_environment,
    prepare_local_run,
    proxy_event,
    stdout_discarded,
)

API_KEY_NAME = "benchmark"
API_KEY_VALUE = "benchmark-key-0123456789abcdef"
# Limits far above what one CPU model serves, so that no request is throttled.
OPEN_LIMITS = {
    "usagePlans": [{"name": "benchmark", "rateLimit": 10000, "burstLimit": 5000, "keys": [API_KEY_NAME]}],
    "invokeConcurrency": 1000,
}

# Sends one request; returns the HTTP status and the generated token count, or CONNECTION_FAILED and the
# exception's name.
RequestFunction = Callable[[int], tuple[int, int | str]]
CONNECTION_FAILED = 0


@dataclass
class LevelResult:
    concurrency: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    connection_errors: dict[str, int] = field(default_factory=dict)
    generated_tokens: int = 0
    cut_short: bool = False

    @property
    def succeeded(self) -> int:
        return self.statuses.get(200, 0)

    def row(self) -> str:
        summary = LatencySummary.of(self.latencies_ms) if self.latencies_ms else None
        failures = {status: count for status, count in self.statuses.items() if status not in (200, CONNECTION_FAILED)}
        text = (
            f"concurrency {self.concurrency:>2}: {self.succeeded:>4} ok in {self.seconds:6.1f} s = "
            f"{self.succeeded / self.seconds:7.2f} requests/s, {self.generated_tokens / self.seconds:8.1f} tokens/s"
        )
        if summary is not None:
            text += f", p50 {summary.p50:8.1f} ms, p99 {summary.p99:8.1f} ms, max {summary.maximum:8.1f} ms"
        if failures:
            text += f", failures by status {failures}"
        if self.connection_errors:
            text += f", connection errors {self.connection_errors}"
        if self.cut_short:
            text += " (time budget ended the level)"
        return text


def run_level(send: RequestFunction, concurrency: int, requests: int, seconds: float) -> LevelResult:
    """Send ``requests`` requests from ``concurrency`` threads, or as many as fit in ``seconds``."""
    lock = threading.Lock()
    next_number = iter(range(requests))
    deadline = Deadline(seconds)
    result = LevelResult(concurrency, 0.0)

    def worker() -> None:
        while not deadline.passed():
            with lock:
                number = next(next_number, None)
            if number is None:
                return

            started = time.perf_counter()
            status, detail = send(number)
            elapsed_ms = (time.perf_counter() - started) * 1000
            with lock:
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if status == CONNECTION_FAILED:
                    result.connection_errors[detail] = result.connection_errors.get(detail, 0) + 1
                elif status == 200:
                    result.latencies_ms.append(elapsed_ms)
                    result.generated_tokens += detail

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="client") as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    result.seconds = time.perf_counter() - started
    result.cut_short = sum(result.statuses.values()) < requests
    return result


# Paths


def start_front(max_new_tokens: int, service) -> tuple[RequestFunction, Callable[[], None]]:
    """Start the local API and return a request function for client threads and a stop function."""
    import requests

    from local_mode.stack import start_local_stack

    stack = start_local_stack(
        "tiny",
        profile=LOCAL_PROFILE,
        context_overrides=OPEN_LIMITS,
        api_key_values={API_KEY_NAME: API_KEY_VALUE},
        service=service,
    )
    url = f"{stack.url}generate"
    body = generate_body(max_new_tokens).encode()
    sessions = threading.local()

    def send(_number: int) -> tuple[int, int]:
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
        try:
            response = sessions.session.post(
                url, data=body, headers={"x-api-key": API_KEY_VALUE, "Content-Type": "application/json"}, timeout=60
            )
        except requests.RequestException as error:
            # A fresh connection for the next request of this thread.
            sessions.session = requests.Session()
            return CONNECTION_FAILED, type(error).__name__
        return response.status_code, _generated_tokens(response.status_code, response.content)

    return send, stack.close


def start_handler_path(max_new_tokens: int, service) -> tuple[RequestFunction, Callable[[], None]]:
    """Start the local model server and return a request function that runs the handler in this process."""
    from local_mode.model_server import start_model_server

    server = start_model_server("tiny", endpoint_name=ENDPOINT_NAME, profile=LOCAL_PROFILE, service=service)
    os.environ.update(handler_environment(server.url))
    from invoke_api import handler

    handler.dependencies.cache_clear()
    body = generate_body(max_new_tokens)
    context = LambdaContext()
    # One execution environment: Lambda gives it one request at a time, and the handler's state is global.
    execution_environment = threading.Lock()

    def send(number: int) -> tuple[int, int]:
        with execution_environment:
            response = handler.lambda_handler(proxy_event(body, number), context)
        return response["statusCode"], _generated_tokens(response["statusCode"], response["body"])

    return send, server.stop


def _http_handler_classes(path: str) -> list[type]:
    from local_mode.model_server import InvokeEndpointHandler

    if path == "handler":
        return [InvokeEndpointHandler]
    from local_mode.api_front import ApiGatewayHandler

    return [InvokeEndpointHandler, ApiGatewayHandler]


def _generated_tokens(status: int, body: bytes | str) -> int:
    if status != 200:
        return 0
    usage = json.loads(body).get("usage", {})
    return int(usage.get("generated_tokens", 0))


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.local_throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--path", choices=("front", "handler"), default="front", help="request path (default: front)")
    parser.add_argument("--concurrency", default="1,8,32", help="client threads per level, comma-separated")
    parser.add_argument(
        "--requests", type=int, default=0, help="requests per level (default: 10 per client thread, at least 100)"
    )
    parser.add_argument("--seconds", type=float, default=60, help="time budget of each level in seconds")
    parser.add_argument(
        "--max-new-tokens", type=int, help="tokens that each request asks for (default: the API's default, 64)"
    )
    parser.add_argument("--fake-model", action="store_true", help="replace the tiny BLOOM with a fixed reply")
    parser.add_argument("--torch-threads", type=int, help="threads of torch's CPU kernels (default: torch's own)")
    args = parser.parse_args(argv)

    try:
        args.concurrency = [int(part) for part in args.concurrency.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--concurrency {args.concurrency!r} is invalid: expected whole numbers such as 1,8,32")
    if not args.concurrency or min(args.concurrency) < 1 or max(args.concurrency) > 64:
        parser.error("--concurrency values must be between 1 and 64")
    if args.requests < 0 or args.max_new_tokens is not None and args.max_new_tokens < 1:
        parser.error("--requests must be at least 0 and --max-new-tokens at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    args.max_new_tokens = prepare_local_run("Local-mode throughput and latency", args.max_new_tokens)

    threads = configure_torch(args.torch_threads)
    model = "fixed reply (no model)" if args.fake_model else f"tiny BLOOM, max_new_tokens={args.max_new_tokens}"
    print(f"path: {args.path}; model: {model}; torch threads: {threads}")
    note = ensure_tcp_nodelay(*_http_handler_classes(args.path))
    if note:
        print(note)

    service = InstantModelService() if args.fake_model else None
    start = start_front if args.path == "front" else start_handler_path
    send, stop = start(args.max_new_tokens, service)
    try:
        results = []
        for concurrency in args.concurrency:
            requests = args.requests or max(100, 10 * concurrency)
            # The handler writes a JSON log line and metrics per request to standard output.
            with stdout_discarded():
                run_level(send, concurrency, concurrency, args.seconds)  # warm-up: one request per client thread
                result = run_level(send, concurrency, requests, args.seconds)
            results.append(result)
            print(result.row(), flush=True)
    finally:
        stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
