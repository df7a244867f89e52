"""``bloomctl invoke "prompt"``: call the deployed API with one of its keys and print the completion.

The API URL comes from the API stack's outputs (CloudFormation DescribeStacks on ``<prefix>-api``) and the
key's value from API Gateway (GetApiKey with includeValue), so only AWS credentials with read access to both
are needed. ``--url`` skips those look-ups and takes the key's value from the ``BLOOM_API_KEY`` environment
variable.
"""

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from bloomctl.context import aws_session, error_text, name_prefix

API_URL_OUTPUT = "ApiUrl"
API_KEY_IDS_OUTPUT = "ApiKeyIds"
API_KEY_ENVIRONMENT_VARIABLE = "BLOOM_API_KEY"

# API Gateway gives up on the function after 29 s, so a longer wait only covers the network.
DEFAULT_TIMEOUT_SECONDS = 40

EXIT_OK, EXIT_API_ERROR, EXIT_USAGE = 0, 1, 2

# Generation parameters of the public API, with the type that each option parses.
PARAMETER_OPTIONS = {
    "max_new_tokens": (int, "tokens to generate at most (the deployment's cap applies)"),
    "min_length": (int, "minimum length of prompt plus completion, in tokens"),
    "temperature": (float, "sampling temperature, above 0"),
    "top_p": (float, "nucleus sampling probability, above 0 and at most 1"),
    "top_k": (int, "sample from the k most likely tokens"),
    "num_beams": (int, "beams of beam search (1 disables it)"),
    "no_repeat_ngram_size": (int, "never repeat an n-gram of this size"),
    "repetition_penalty": (float, "penalty on tokens that already occur (1.0 means none)"),
    "seed": (int, "random seed, for repeatable sampling"),
}


class CommandError(Exception):
    """A problem that the user can fix; the message states how."""


class ConnectionFailed(Exception):
    """The API could not be reached, or sent no response in time. The message names the URL and the cause."""


def api_url(text: str) -> str:
    """Check that ``text`` is an http(s) URL with a host, for --url; raise ArgumentTypeError if not."""
    parts = urllib.parse.urlsplit(text.strip())
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an http:// or https:// URL with a host: give the base URL of the API stage, such "
            "as the ApiUrl output of the API stack or http://127.0.0.1:8000/v1/ for bloomctl local serve"
        )
    return text.strip()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("invoke", help="send a prompt to the deployed API and print the completion")
    parser.add_argument("prompt", help='the prompt, or "-" to read it from standard input')
    for name, (value_type, help_text) in PARAMETER_OPTIONS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=value_type, help=help_text)
    parser.add_argument(
        "--do-sample", dest="do_sample", action=argparse.BooleanOptionalAction, default=None,
        help="sample tokens instead of choosing the most likely one",
    )
    parser.add_argument("--stop", action="append", help="stop sequence (repeat for several)")
    parser.add_argument("--key", help="name of the API key to use (default: the only key, else required)")
    parser.add_argument(
        "--url",
        type=api_url,
        help=f"base URL of the API stage; the key's value then comes from {API_KEY_ENVIRONMENT_VARIABLE} "
        "(default: the ApiUrl output of the API stack)",
    )
    parser.add_argument("--json", action="store_true", help="print the whole JSON response")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help="seconds to wait for the response (default: %(default)g s)",
    )
    parser.set_defaults(func=run_invoke)


def run_invoke(args: argparse.Namespace) -> int:
    try:
        request = build_request(args)
        url, api_key = resolve_api(args)
    except CommandError as error:
        print(f"bloomctl invoke: {error}", file=sys.stderr)
        return EXIT_USAGE

    try:
        status, body = post_generate(url, api_key, request, args.timeout)
    except ConnectionFailed as error:
        print(f"bloomctl invoke: {error}", file=sys.stderr)
        return EXIT_API_ERROR
    return print_result(status, body, args.json)


def resolve_api(args: argparse.Namespace) -> tuple[str, str]:
    """Return the API's base URL and the key's value: from --url and the environment, else from AWS."""
    environment_key = os.environ.get(API_KEY_ENVIRONMENT_VARIABLE)
    if args.url:
        if not environment_key:
            raise CommandError(
                f"--url needs the API key's value in the {API_KEY_ENVIRONMENT_VARIABLE} environment variable: run "
                f"{API_KEY_ENVIRONMENT_VARIABLE}=<key value> bloomctl invoke --url {args.url} PROMPT. Without --url, "
                "bloomctl reads the URL and the key from the deployed API stack"
            )
        return args.url, environment_key

    session = aws_session(args)
    stack_name = f"{name_prefix(args)}-api"
    outputs = stack_outputs(session, stack_name)
    url = output_value(outputs, API_URL_OUTPUT, stack_name)
    return url, environment_key or api_key_value(session, outputs, stack_name, args.key)


def build_request(args: argparse.Namespace) -> dict:
    """Build the request body in the API's primary format, {"input", "gen_kwargs"}."""
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt:
        raise CommandError("the prompt is empty")

    gen_kwargs = {name: getattr(args, name) for name in PARAMETER_OPTIONS if getattr(args, name) is not None}
    if args.do_sample is not None:
        gen_kwargs["do_sample"] = args.do_sample
    if args.stop:
        gen_kwargs["stop"] = args.stop
    return {"input": prompt, "gen_kwargs": gen_kwargs}


def stack_outputs(session: boto3.Session, stack_name: str) -> dict[str, str]:
    """Read the outputs of the API stack."""
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message") or error_text(error)
        raise CommandError(
            f"reading stack {stack_name} failed: {message.rstrip('.')}. Deploy it (npx cdk deploy {stack_name}) or pass the "
            "deployment's --prefix and --region"
        ) from None
    except BotoCoreError as error:
        raise CommandError(
            f"reading stack {stack_name} failed: {error_text(error)}. Check --region and your credentials"
        ) from None
    return {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}


def output_value(outputs: dict[str, str], key: str, stack_name: str) -> str:
    if key not in outputs:
        raise CommandError(f"stack {stack_name} has no output {key}: deploy the current version of the API stack")
    return outputs[key]


def api_key_value(session: boto3.Session, outputs: dict[str, str], stack_name: str, key_name: str | None) -> str:
    """Find the key's id in the stack outputs and read its value from API Gateway."""
    key_ids = json.loads(output_value(outputs, API_KEY_IDS_OUTPUT, stack_name))
    if key_name is None:
        if len(key_ids) != 1:
            raise CommandError(f"the API has several keys, choose one with --key: {', '.join(sorted(key_ids))}")
        (key_name,) = key_ids
    if key_name not in key_ids:
        raise CommandError(f"the API has no key named {key_name!r}: choose one of {', '.join(sorted(key_ids))}")

    try:
        return session.client("apigateway").get_api_key(apiKey=key_ids[key_name], includeValue=True)["value"]
    except (ClientError, BotoCoreError) as error:
        raise CommandError(
            f"reading the value of API key {key_name} failed: {error_text(error)}. It needs apigateway:GET on the "
            "key, or set "
            f"{API_KEY_ENVIRONMENT_VARIABLE} to the key's value"
        ) from None


def post_generate(base_url: str, api_key: str, request: dict, timeout: float) -> tuple[int, dict]:
    """POST the request to <base_url>generate and return the status and the JSON body (or an error body).

    Raises ConnectionFailed when no HTTP response arrives: the host is unknown or unreachable, the
    connection is refused or the response takes longer than ``timeout`` seconds.
    """
    url = base_url.rstrip("/") + "/generate"
    http_request = urllib.request.Request(
        url,
        data=json.dumps(request).encode("utf-8"),
        headers={"Content-Type": "application/json", "x-api-key": api_key},
        method="POST",
    )
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as response:
            return response.status, _json_body(response.read())
    except urllib.error.HTTPError as error:
        body = _json_body(error.read())
        if error.headers.get("Retry-After"):
            body.setdefault("retry_after_seconds", error.headers["Retry-After"])
        return error.code, body
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError):
            raise ConnectionFailed(
                f"{url} sent no response within {timeout:g} s: raise --timeout, or ask for fewer tokens with "
                "--max-new-tokens"
            ) from None
        raise ConnectionFailed(
            f"could not reach {url}: {reason}. Check the URL (--url, or the ApiUrl output of the API stack) and "
            "that the API is reachable from this machine"
        ) from None


def _json_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {"error": "invalid_response", "message": f"the API returned {len(raw)} bytes that are not JSON"}
    return body if isinstance(body, dict) else {"error": "invalid_response", "message": "the API returned no object"}


def print_result(status: int, body: dict, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"status": status, **body}, indent=2, ensure_ascii=False))
    elif status == 200:
        print(body.get("generated_text", ""))

    if status == 200:
        return EXIT_OK

    if not as_json:
        message = f"bloomctl invoke: HTTP {status} {body.get('error', 'error')}: {body.get('message', '')}"
        if body.get("retry_after_seconds"):
            message += f" (retry after {body['retry_after_seconds']} s)"
        print(message, file=sys.stderr)
    return EXIT_API_ERROR
