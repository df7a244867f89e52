"""What the invoke handler adds to each request, against a bare boto3 InvokeEndpoint call to the same server.

Both paths call the local model server on 127.0.0.1 with the same sagemaker-runtime client settings. The bare
path sends the container request itself. The handler path sends a public POST /generate proxy event through
``invoke_api.handler.lambda_handler`` in this process, so it includes the validation, the adaptation, the JSON
log line and the metrics. API Gateway and the Lambda service are not part of either path.

Two model services run behind the server, one after the other:

- ``fake``: returns a fixed generation at once, so that generation time does not hide the handler's cost;
- ``tiny``: the tiny random-weight BLOOM of local mode on the CPU, asked for the API's default of 64 new tokens.

The handler adds a roughly fixed time per request, so the ratio falls as generation takes longer: it is a
figure of the tiny model, and BLOOM-176B's 0.1 s per token brings it close to 1. The two paths alternate
request by request, so that drift of the machine affects both alike, and the ratio that meets the target or not
is the median over those back-to-back pairs. Torch runs the tiny model on one thread by
default, because two threads on a busy 2-core machine made its timing vary tenfold, far more than the handler's
share.

Run: ``make bench-handler`` or ``.venv/bin/python -m benchmarks.handler_overhead``.
"""

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

from benchmarks.common import (
    ENDPOINT_NAME,
    Deadline,
    InstantModelService,
    LambdaContext,
    LatencySummary,
    configure_torch,
    container_body,
    ensure_tcp_nodelay,
    generate_body,
    handler_environment,
    prepare_local_run,
    proxy_event,
    stdout_discarded,
    verdict,
)

TARGET_RATIO = 1.05
TARGET_ADDED_P50_MS = 2.0


@dataclass(frozen=True)
class Comparison:
    service: str
    bare: LatencySummary
    handler: LatencySummary
    # Median of handler / bare over the pairs of requests that ran back to back, so that both saw the same load.
    paired_ratio: float
    cut_short: bool

    @property
    def ratio(self) -> float:
        return self.handler.p50 / self.bare.p50

    @property
    def added_p50_ms(self) -> float:
        return self.handler.p50 - self.bare.p50

    @property
    def added_p99_ms(self) -> float:
        return self.handler.p99 - self.bare.p99


def measure(service_name: str, requests: int, warmup: int, max_new_tokens: int, seconds: float) -> Comparison:
    """Start the model server with a service, then time both paths alternately."""
    from local_mode.model_server import start_model_server

    service = InstantModelService() if service_name == "fake" else None
    server = start_model_server("tiny", endpoint_name=ENDPOINT_NAME, service=service)
    try:
        bare_call, handler_call = _build_calls(server.url, max_new_tokens)
        with stdout_discarded():
            for number in range(warmup):
                bare_call(number)
                handler_call(number)
            bare_ms, handler_ms, cut_short = _alternate(bare_call, handler_call, requests, Deadline(seconds))
    finally:
        server.stop()

    paired_ratio = statistics.median(handler / bare for bare, handler in zip(bare_ms, handler_ms))
    return Comparison(
        service_name, LatencySummary.of(bare_ms), LatencySummary.of(handler_ms), paired_ratio, cut_short
    )


# Runs one request and returns the milliseconds of the call alone, without building the request or checking
# the response.
TimedCall = Callable[[int], float]


def _build_calls(url: str, max_new_tokens: int) -> tuple[TimedCall, TimedCall]:
    os.environ.update(handler_environment(url))
    from invoke_api import handler
    from invoke_api.runtime import build_runtime_client

    handler.dependencies.cache_clear()
    settings = handler.dependencies().settings
    # The handler's own client settings: one attempt, the same connect and read timeouts.
    client = build_runtime_client(settings.region, url, settings.read_timeout_seconds)
    payload = container_body(max_new_tokens)
    public_body = generate_body(max_new_tokens)
    context = LambdaContext()

    def bare_call(_number: int) -> float:
        started = time.perf_counter()
        response = client.invoke_endpoint(
            EndpointName=ENDPOINT_NAME, ContentType="application/json", Accept="application/json", Body=payload
        )
        body = response["Body"].read()
        elapsed_ms = (time.perf_counter() - started) * 1000

        if "generated_text" not in json.loads(body):
            raise RuntimeError(f"the model server returned no generated_text: {body[:200]!r}")
        return elapsed_ms

    def handler_call(number: int) -> float:
        event = proxy_event(public_body, number)
        started = time.perf_counter()
        response = handler.lambda_handler(event, context)
        elapsed_ms = (time.perf_counter() - started) * 1000

        if response["statusCode"] != 200:
            raise RuntimeError(f"the handler returned {response['statusCode']}: {response['body']}")
        return elapsed_ms

    return bare_call, handler_call


def _alternate(bare_call: TimedCall, handler_call: TimedCall, requests: int, deadline: Deadline):
    """Time both calls in turn; return their milliseconds and whether the deadline ended the series."""
    bare_ms: list[float] = []
    handler_ms: list[float] = []
    for number in range(requests):
        if deadline.passed():
            return bare_ms, handler_ms, True

        # Swap the order on every pair, so that neither path always runs right after the other.
        order = ((bare_call, bare_ms), (handler_call, handler_ms))
        for call, samples in order if number % 2 == 0 else reversed(order):
            samples.append(call(number))
    return bare_ms, handler_ms, False


def report(comparisons: list[Comparison], max_new_tokens: int) -> None:
    """Print each comparison and its verdict against the targets."""
    for comparison in comparisons:
        label = "fake model service (fixed reply)" if comparison.service == "fake" else (
            f"tiny BLOOM on the CPU, max_new_tokens={max_new_tokens}"
        )
        print(f"## {label}")
        print(f"bare boto3 InvokeEndpoint: {comparison.bare.row()}")
        print(f"invoke handler:            {comparison.handler.row()}")
        print(
            f"added by the handler: p50 {comparison.added_p50_ms:+.2f} ms, p99 {comparison.added_p99_ms:+.2f} ms; "
            f"ratio of p50s {comparison.ratio:.3f}, median ratio of back-to-back pairs {comparison.paired_ratio:.3f}"
        )
        if comparison.cut_short:
            print("(the time budget ended the series before its request count)")
        print()

    by_service = {comparison.service: comparison for comparison in comparisons}
    if "tiny" in by_service:
        ratio = by_service["tiny"].paired_ratio
        print(
            f"target: ratio at most {TARGET_RATIO} with the tiny model (median of pairs): {ratio:.3f}, "
            f"{verdict(ratio <= TARGET_RATIO)}"
        )
    if "fake" in by_service:
        added = by_service["fake"].added_p50_ms
        print(
            f"target: p50 added latency under {TARGET_ADDED_P50_MS} ms with the fake service: {added:.2f} ms, "
            f"{verdict(added < TARGET_ADDED_P50_MS)}"
        )
        print(
            f"(the ratio with the fake service, {by_service['fake'].ratio:.2f}, compares the handler with a call "
            "that does no work, so it is no target)"
        )


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.handler_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--services", default="fake,tiny", help="model services to run, comma-separated: fake, tiny (default: both)"
    )
    parser.add_argument("--fake-requests", type=int, default=1000, help="timed requests per path, fake service")
    parser.add_argument("--tiny-requests", type=int, default=200, help="timed requests per path, tiny model")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per path before each series")
    parser.add_argument(
        "--max-new-tokens", type=int, help="tokens that each request asks for (default: the API's default, 64)"
    )
    parser.add_argument("--seconds", type=float, default=180, help="time budget of each series in seconds")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="threads of torch's CPU kernels, 0 for torch's own (default: 1)"
    )
    args = parser.parse_args(argv)

    args.services = [name.strip() for name in args.services.split(",") if name.strip()]
    unknown = sorted(set(args.services) - {"fake", "tiny"})
    if unknown or not args.services:
        parser.error(f"--services {','.join(unknown) or '(empty)'} is invalid: allowed fake, tiny")
    for name in ("fake_requests", "tiny_requests", "max_new_tokens"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    title = "Invoke handler overhead against a bare InvokeEndpoint call"
    args.max_new_tokens = prepare_local_run(title, args.max_new_tokens)
    print(f"torch threads: {configure_torch(args.torch_threads)}")
    from local_mode.model_server import InvokeEndpointHandler

    note = ensure_tcp_nodelay(InvokeEndpointHandler)
    if note:
        print(note, flush=True)

    comparisons = []
    for service_name in args.services:
        requests = args.fake_requests if service_name == "fake" else args.tiny_requests
        print(f"running {service_name}: {requests} requests per path after {args.warmup} warm-ups ...", flush=True)
        comparisons.append(measure(service_name, requests, args.warmup, args.max_new_tokens, args.seconds))
    print()

    report(comparisons, args.max_new_tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
