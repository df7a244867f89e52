"""``bloomctl local serve``: the API's whole request path on this machine, without AWS, on a small BLOOM.

It starts the model (by default the tiny BLOOM, built offline), the local SageMaker endpoint, the unchanged
invoke function and an API front with the deployed API's keys, usage plans and error responses, all on
127.0.0.1. It prints the URL, a development key for each configured API key and a curl command. Ctrl-C or
SIGTERM stops it. SIGUSR1 starts the model and SIGUSR2 stops it, as ``bloomctl start`` and ``stop`` do in
the cloud.
"""

import argparse
import errno
import json
import logging
import os
import queue
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from stacks.config import ConfigError
from stacks.profiles import PROFILES

if TYPE_CHECKING:
    from local_mode.stack import LocalStack

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

DEFAULT_PORT = 8000
MAX_PORT = 65535
TINY_MODEL = "tiny"
DESCRIPTION = "Run the API's whole request path on this machine, without AWS, on a small BLOOM."

# The request of the original BLOOM-176B write-up, in the API's primary format.
EXAMPLE_REQUEST = {
    "input": "The BLOOM large language model is a",
    "gen_kwargs": {"min_length": 5, "max_new_tokens": 100, "temperature": 0.8, "num_beams": 5, "no_repeat_ngram_size": 2},
}


def port_number(text: str) -> int:
    """Parse a TCP port for --port: a whole number from 0 to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a port: give a whole number from 0 to {MAX_PORT}, where 0 picks any free port"
        )
    return port


def model_source(text: str) -> str:
    """Check that a --model value that looks like a path, not like "tiny" or a Hub id, names an existing folder."""
    if text == TINY_MODEL or not _looks_like_path(text):
        return text
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(
            f"no such folder: {path}. Give a saved transformers model folder, 'tiny', or a Hub id such as "
            "bigscience/bloom-560m"
        )
    return text


def _looks_like_path(text: str) -> bool:
    """Return whether ``text`` is a path rather than a Hub id, which has the form NAME or ORGANIZATION/NAME.

    An ORGANIZATION/NAME that is also an existing folder loads from the folder, as in local_mode.engine.
    """
    separators = [os.sep] + ([os.altsep] if os.altsep else [])
    if text.startswith((".", "~", *separators)):
        return True
    count = sum(text.count(separator) for separator in separators)
    return count > 1 or text.endswith(tuple(separators))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "local", help="run the API on this machine without AWS, on a small model", description=DESCRIPTION
    )
    commands = parser.add_subparsers(dest="local_command", required=True, metavar="ACTION")

    serve = commands.add_parser(
        "serve",
        help="start the local API and print its URL, keys and a curl command",
        description="Start the model, the invoke function and the API front on 127.0.0.1 until Ctrl-C or SIGTERM.",
    )
    serve.add_argument(
        "--model",
        type=model_source,
        default=TINY_MODEL,
        help="'tiny' (a BLOOM with random weights, built offline), a local model folder, or a Hugging Face Hub id "
        "such as bigscience/bloom-560m (needs network) (default: %(default)s)",
    )
    serve.add_argument(
        "--profile",
        default="bloom-1b7",
        choices=sorted(PROFILES),
        help="profile whose request bounds and serving.properties apply (default: %(default)s)",
    )
    serve.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help="port of the API on 127.0.0.1, 0 for any free port (default: %(default)s)",
    )
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="value of a configured API key instead of a random one. Repeat the option for several keys",
    )
    serve.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a cdk.json context value as cdk synth -c does, for example -c usagePlans='[...]'",
    )
    serve.add_argument(
        "--stopped",
        action="store_true",
        help="start with the model stopped, so that POST /generate returns 503 until SIGUSR1 starts it",
    )
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Imported here: loading torch and transformers takes seconds that the other commands should not pay.
    from local_mode.config import parse_context_option
    from local_mode.stack import start_local_stack

    try:
        overrides = dict(parse_context_option(text) for text in args.context)
        if args.prefix:
            overrides["namePrefix"] = args.prefix
        key_values = dict(_parse_key_option(text) for text in args.api_key)
        stack = start_local_stack(
            args.model,
            profile=args.profile,
            port=args.port,
            context_overrides=overrides,
            api_key_values=key_values,
            stopped=args.stopped,
        )
    except (ConfigError, ValueError) as error:
        print(f"bloomctl local serve: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        hint = ""
        if error.errno == errno.EADDRINUSE:
            hint = f" Port {args.port} is in use: pass another --port, or --port 0 for any free port."
        print(f"bloomctl local serve: starting the local API failed: {error}.{hint}", file=sys.stderr)
        return EXIT_FAILED

    # The handlers are in place before the banner, so that a client that reacts to the banner can stop the server.
    actions = _handle_signals()
    print_banner(stack)
    code = _serve_until_stopped(stack, actions)
    _exit_without_finalization(code)
    return code


def _parse_key_option(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name or not value:
        raise ValueError(f"--api-key {text!r} is invalid: expected NAME=VALUE with a key name from usagePlans")
    return name, value


def print_banner(stack: "LocalStack") -> None:
    """Print where the API listens, its keys and plans, and commands to try it."""
    config = stack.config
    lines = [f"Local API of profile {config.deployment.profile.name} (model {stack.model_source}) at {stack.url}"]
    lines.append(f"Routes: POST {stack.url}generate, GET {stack.url}status")
    for plan in config.api.usage_plans:
        quota = f", quota {plan.quota_limit} per {plan.quota_period}" if plan.quota_limit else ""
        lines.append(f"Usage plan {plan.name}: rate {plan.rate_limit:g}/s, burst {plan.burst_limit}{quota}")
    for key in stack.api_keys:
        lines.append(f"API key {key.name} (usage plan {key.plan}): {key.value}")

    key = stack.api_keys[0]
    lines.append("Try it:")
    lines.append("  " + curl_command(stack.url, key.value))
    lines.append(f"  BLOOM_API_KEY={shlex.quote(key.value)} bloomctl invoke --url {stack.url} {shlex.quote(EXAMPLE_REQUEST['input'])}")
    if not stack.model_running:
        lines.append("The model is stopped: POST /generate returns 503 until it starts.")
    pid = os.getpid()
    lines.append(f"kill -USR1 {pid} starts the model, kill -USR2 {pid} stops it.")
    lines.append("The keys are new on every run unless --api-key sets them. Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)


def curl_command(url: str, key_value: str) -> str:
    """Return a curl command that sends the write-up's example request."""
    return " ".join(
        [
            "curl -s -X POST",
            shlex.quote(f"{url}generate"),
            "-H",
            shlex.quote(f"x-api-key: {key_value}"),
            "-H 'Content-Type: application/json'",
            "-d",
            shlex.quote(json.dumps(EXAMPLE_REQUEST)),
        ]
    )


def _handle_signals() -> "queue.SimpleQueue[str]":
    """Turn SIGTERM, SIGUSR1 and SIGUSR2 into actions on a queue. SimpleQueue.put is safe in a signal handler."""
    actions: queue.SimpleQueue[str] = queue.SimpleQueue()
    signal.signal(signal.SIGTERM, lambda _signal_number, _frame: actions.put("exit"))
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, lambda _signal_number, _frame: actions.put("start"))
        signal.signal(signal.SIGUSR2, lambda _signal_number, _frame: actions.put("stop"))
    return actions


def _exit_without_finalization(code: int) -> None:
    """End the process once the stack is closed, without Python's interpreter shutdown.

    In about 1 of 30 test runs here the process ended with SIGABRT after a clean close. The likely cause is a
    daemon thread (the servers' or torch's) still running while the interpreter finalizes. Everything the
    command owns is closed by then, so skipping finalization loses nothing.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _serve_until_stopped(stack: "LocalStack", actions: "queue.SimpleQueue[str]") -> int:
    """Start and stop the model on SIGUSR1 and SIGUSR2 until SIGTERM or Ctrl-C, then close the stack."""
    try:
        while (action := actions.get()) != "exit":
            if action == "start":
                stack.start_model()
            else:
                stack.stop_model()
            print(f"The model is {'running' if stack.model_running else 'stopped'}.", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        stack.close()
    return EXIT_OK
