"""Shared parts of the benchmarks: the machine description, percentiles, and the invoke handler's setup."""

import contextlib
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBDA_CODE_DIR = REPO_ROOT / "lambda"

# The profile whose serving.properties and limits local mode uses.
LOCAL_PROFILE = "bloom-1b7"
ENDPOINT_NAME = "bloom-benchmark-endpoint"
PROMPT = "The BLOOM large language model is a"


def use_lambda_code() -> None:
    """Put ``lambda/`` on sys.path, as the Lambda runtime has the code asset's root on its path."""
    if str(LAMBDA_CODE_DIR) not in sys.path:
        sys.path.insert(0, str(LAMBDA_CODE_DIR))


# Settings that keep boto3 and the CDK CLI away from the user's AWS files and from the instance metadata service.
AWS_ISOLATION = {
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def use_fake_aws_credentials() -> None:
    """Give boto3 fake keys, a region, and no AWS files or metadata service to read real ones from."""
    os.environ.update(AWS_ISOLATION, AWS_ACCESS_KEY_ID="benchmark", AWS_SECRET_ACCESS_KEY="benchmark")
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)


def prepare_local_run(title: str, max_new_tokens: int | None) -> int:
    """Isolate boto3 from AWS, put ``lambda/`` on the path, print the header, and return the tokens per request
    (the API's default when ``max_new_tokens`` is None)."""
    use_fake_aws_credentials()
    use_lambda_code()
    from invoke_api.bounds import DEFAULT_MAX_NEW_TOKENS

    print_header(title)
    return max_new_tokens or DEFAULT_MAX_NEW_TOKENS


# Machine and command


def describe_machine() -> dict[str, str]:
    """Return the CPU model, the cores, the memory, the OS, the Python version and the load of this machine."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "memory": _memory_text(),
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load": _load_text(),
    }


def _load_text() -> str:
    """Return the load averages: other work on the machine slows every figure down."""
    try:
        one, five, fifteen = os.getloadavg()
    except (OSError, AttributeError):
        return "unknown"
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min averages)"


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_text() -> str:
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    try:
        return f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB"
    except (ValueError, OSError, AttributeError):
        return "unknown"


def command_line() -> str:
    """Return the command that started this process, as typed (``sys.orig_argv``)."""
    return shlex.join(sys.orig_argv)


def print_header(title: str) -> None:
    print(f"# {title}")
    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"command: {command_line()}")
    for key, value in describe_machine().items():
        print(f"{key}: {value}")
    print(flush=True)


def verdict(passed: bool) -> str:
    return "meets the target" if passed else "MISSES the target"


# Statistics


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the percentile by linear interpolation between the closest ranks (numpy's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction {fraction} is outside 0..1")

    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


@dataclass(frozen=True)
class LatencySummary:
    """Latencies of one series, in milliseconds."""

    count: int
    p50: float
    p99: float
    mean: float
    minimum: float
    maximum: float

    @classmethod
    def of(cls, milliseconds: Sequence[float]) -> "LatencySummary":
        return cls(
            count=len(milliseconds),
            p50=percentile(milliseconds, 0.50),
            p99=percentile(milliseconds, 0.99),
            mean=sum(milliseconds) / len(milliseconds),
            minimum=min(milliseconds),
            maximum=max(milliseconds),
        )

    def row(self) -> str:
        return (
            f"n={self.count:<5} p50={self.p50:9.2f} ms  p99={self.p99:9.2f} ms  mean={self.mean:9.2f} ms  "
            f"min={self.minimum:9.2f} ms  max={self.maximum:9.2f} ms"
        )


class Deadline:
    """A time budget that bounds a benchmark loop."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires = time.monotonic() + seconds

    def passed(self) -> bool:
        return time.monotonic() >= self.expires


@contextlib.contextmanager
def stdout_discarded() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null, so that JSON log lines cost their write but fill no terminal.

    The redirect is at the descriptor, because Powertools' logger keeps the ``sys.stdout`` object that it saw
    when it was created.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


# Local mode


def configure_torch(threads: int | None) -> int:
    """Set the threads of torch's CPU kernels when ``threads`` is given, hide the weight-loading progress bar,
    and return the thread count in use.

    With two threads on a busy 2-core machine, the tiny model's kernels wait on each other: its 8-token
    generation took 40-600 ms there, against 9-40 ms with one thread.
    """
    import torch
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def ensure_tcp_nodelay(*handler_classes: type) -> str | None:
    """Turn on TCP_NODELAY for the connections of local mode's HTTP servers; return a note naming those that had
    it off, or None.

    The servers send a response's headers and its body in two writes. With Nagle's algorithm on, the second
    write waits for the client's delayed ACK, which is about 40 ms on Linux, on every keep-alive response, and
    that wait would hide what the benchmark measures.
    """
    changed = []
    for handler_class in handler_classes:
        if not handler_class.disable_nagle_algorithm:
            handler_class.disable_nagle_algorithm = True
            changed.append(f"{handler_class.__module__}.{handler_class.__name__}")
    if not changed:
        return None
    return (
        f"note: {', '.join(changed)} did not set TCP_NODELAY, so each keep-alive response waited about 40 ms for a "
        "delayed ACK; this run sets disable_nagle_algorithm = True on it"
    )


class InstantModelService:
    """A model service that parses the container request and returns a fixed one-token generation at once, so
    that generation time does not hide what the rest of the path costs."""

    def invoke(self, body: bytes) -> tuple[int, dict]:
        request = json.loads(body)
        if "inputs" not in request:
            return 400, {"error": "missing inputs"}
        return 200, {"generated_text": " model", "details": {"prompt_tokens": 8, "generated_tokens": 1}}


# The invoke handler


def handler_environment(runtime_url: str, profile_name: str = LOCAL_PROFILE) -> dict[str, str]:
    """Return the invoke function's environment as the API stack builds it from cdk.json, for a profile, with
    its clients pointed at a local model server."""
    from stacks.api_config import invoke_function_environment, load_api_config
    from stacks.config import load_config

    context = {**json.loads((REPO_ROOT / "cdk.json").read_text())["context"], "profile": profile_name}
    config = load_config(context.get)
    return {
        **invoke_function_environment(config, load_api_config(config)),
        # The benchmark's server accepts one endpoint name, whatever the deployment's prefix.
        "ENDPOINT_NAME": ENDPOINT_NAME,
        "SAGEMAKER_RUNTIME_ENDPOINT_URL": runtime_url,
        # DescribeEndpoint is called only after a failed invocation; it too goes to the local server.
        "SAGEMAKER_ENDPOINT_URL": runtime_url,
    }


def generate_body(max_new_tokens: int) -> str:
    """Return a public POST /generate body in the format of the original BLOOM-176B write-up."""
    return json.dumps({"input": PROMPT, "gen_kwargs": {"max_new_tokens": max_new_tokens}})


def container_body(max_new_tokens: int) -> bytes:
    """Return the container request that the handler sends for ``generate_body(max_new_tokens)``."""
    return json.dumps({"inputs": PROMPT, "parameters": {"max_new_tokens": max_new_tokens}}).encode()


def proxy_event(body: str, request_number: int) -> dict:
    """Build the API Gateway proxy event of POST /generate with local mode's event builder."""
    from local_mode.proxy_event import IncomingRequest, build_proxy_event
    from local_mode.usage_plan import ApiKey

    request = IncomingRequest(
        http_method="POST",
        stage="v1",
        resource="/generate",
        query="",
        headers=[("Content-Type", "application/json")],
        body=body.encode(),
        source_ip="127.0.0.1",
        host="127.0.0.1",
    )
    key = ApiKey(name="benchmark", plan="benchmark", value="benchmark-key-0123456789abcdef")
    return build_proxy_event(request, key, request_id=f"benchmark-{request_number}")


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that Powertools reads."""

    aws_request_id: str = "benchmark-request"
    function_name: str = "bloom-invoke-api"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:000000000000:function:bloom-invoke-api"
