"""``bloomctl status``, ``start`` and ``stop``: the endpoint's on/off control plane, run on this machine.

The commands run the same reconciler as the control stack's Lambda functions, with your AWS credentials.
A start or stop writes the desired state and runs the reconciler once. With ``--wait`` the command keeps
running it until the endpoint reaches the requested state. The settings come from the SSM parameter that the control
stack publishes, so only the deployment's name prefix and the region are needed.
"""

import argparse
import getpass
import json
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from bloomctl.context import aws_session, error_text, name_prefix

LAMBDA_CODE_DIR = Path(__file__).resolve().parents[2] / "lambda"
if LAMBDA_CODE_DIR.is_dir() and str(LAMBDA_CODE_DIR) not in sys.path:
    sys.path.append(str(LAMBDA_CODE_DIR))

from control_plane.clients import AwsClients  # noqa: E402
from control_plane.desired import OFF, ON, DesiredState, RequestError  # noqa: E402
from control_plane.endpoint import ABSENT, describe_endpoint  # noqa: E402
from control_plane.reconciler import BLOCKED, BUSY, CLI, FAILED, Reconciler, Trigger, blocking_failure  # noqa: E402
from control_plane.report import build_report, expected_start_seconds  # noqa: E402
from control_plane.settings import ControlSettings, SettingsError, settings_parameter_name  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMED_OUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DURATION_PATTERN = re.compile(r"^(\d+(?:\.\d+)?)\s*([hm])$")
PROGRESS_BAR_WIDTH = 30
# Without a terminal, --wait prints a line on each state change and at least this often.
PLAIN_OUTPUT_INTERVAL_SECONDS = 60


class CommandError(Exception):
    """A problem the user can fix; the message explains how."""


def parse_duration(text: str) -> timedelta:
    """Parse ``4h``, ``1.5h`` or ``90m``."""
    match = DURATION_PATTERN.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: use hours or minutes, such as 4h or 90m")
    amount = float(match.group(1))
    return timedelta(hours=amount) if match.group(2) == "h" else timedelta(minutes=amount)


def register(subparsers: argparse._SubParsersAction) -> None:
    status = subparsers.add_parser(
        "status",
        help="show the endpoint's state, desired state, next scheduled change and cost so far",
        description="Show the endpoint's state, the desired state and who requested it, why a start is blocked, "
        "the next scheduled change, and the cost of this run and this month. Reads AWS and changes nothing.",
    )
    status.add_argument("--json", action="store_true", help="print the report as JSON")
    status.set_defaults(func=run_status)

    start = subparsers.add_parser("start", help="start the endpoint (it stops again after --for)")
    start.add_argument(
        "--for", dest="duration", type=parse_duration, default=None,
        help="how long the endpoint stays on, such as 4h or 90m (default and maximum: manualStartMaxHours)",
    )
    start.add_argument("--reason", help="why, shown by bloomctl status")
    _add_wait_options(start, "until the endpoint is InService, with progress and ETA")
    start.set_defaults(func=run_start)

    stop = subparsers.add_parser("stop", help="stop the endpoint (a stop during a start is carried out after it)")
    stop.add_argument("--reason", help="why, shown by bloomctl status")
    _add_wait_options(stop, "until the endpoint is deleted")
    stop.set_defaults(func=run_stop)


def _add_wait_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--wait", action="store_true", help=f"wait {what}")
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=15.0,
        help="seconds between two status checks with --wait (default: %(default)g s)",
    )
    parser.add_argument(
        "--timeout-minutes",
        type=float,
        default=90.0,
        help="with --wait, give up waiting after this many minutes and exit with 3 (default: %(default)g min)",
    )


# Command handlers


def run_status(args: argparse.Namespace) -> int:
    try:
        control = connect(args)
        report = build_report(control)
    except CommandError as error:
        return _fail(str(error), EXIT_USAGE)
    except (ClientError, BotoCoreError) as error:
        return _fail(f"reading the endpoint state failed: {error_text(error)}", EXIT_FAILED)

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report, control.settings.schedule_timezone))
    return EXIT_OK


def run_start(args: argparse.Namespace) -> int:
    return _request(args, start=True)


def run_stop(args: argparse.Namespace) -> int:
    return _request(args, start=False)


def _request(args: argparse.Namespace, start: bool) -> int:
    try:
        control = connect(args)
        who = caller_identity(control.clients.session)
        if start:
            desired = control.start(who, args.duration, args.reason)
        else:
            desired = control.stop(who, args.reason)
        result = control.run(Trigger(CLI))
    except CommandError as error:
        return _fail(str(error), EXIT_USAGE)
    except RequestError as error:
        return _fail(str(error), EXIT_USAGE)
    except (ClientError, BotoCoreError) as error:
        return _fail(f"the request failed: {error_text(error)}", EXIT_FAILED)

    until = f" until {_format_time(desired.until, control.settings.schedule_timezone)}" if desired.until else ""
    print(f"Desired state: {desired.state}{until} ({desired.reason}).")
    print(f"Endpoint {control.settings.endpoint_name}: {result.endpoint_status}. {result.message}")
    if result.action in (BLOCKED, FAILED):
        return EXIT_FAILED
    if not args.wait:
        return EXIT_OK

    try:
        return wait_for(control, start, args.poll_seconds, args.timeout_minutes * 60, sys.stdout)
    except KeyboardInterrupt:
        print("\nStopped waiting; the request stays in place.", file=sys.stderr)
        return EXIT_INTERRUPTED


def _fail(message: str, code: int) -> int:
    print(f"bloomctl: {message}", file=sys.stderr)
    return code


# AWS access


def connect(args: argparse.Namespace) -> Reconciler:
    """Build a reconciler from the control stack's settings parameter."""
    prefix = name_prefix(args)
    session = aws_session(args)
    parameter = settings_parameter_name(f"/{prefix}")
    try:
        value = session.client("ssm").get_parameter(Name=parameter)["Parameter"]["Value"]
    except ClientError as error:
        if error.response["Error"]["Code"] == "ParameterNotFound":
            raise CommandError(
                f"SSM parameter {parameter} not found: deploy the control stack ({prefix}-control) first, "
                "or pass the deployment's --prefix and --region"
            ) from None
        raise
    except BotoCoreError as error:
        raise CommandError(
            f"reading SSM parameter {parameter} failed: {error_text(error)}. Check --region and your credentials"
        ) from None

    try:
        settings = ControlSettings.from_json(value, f"SSM parameter {parameter}")
    except SettingsError as error:
        raise CommandError(str(error)) from None
    return Reconciler(settings, AwsClients(session), lease_wait_seconds=30)


def caller_identity(session: boto3.Session) -> str:
    """Return the caller's IAM ARN, recorded as who asked; the local user name if STS is not reachable."""
    try:
        return f"cli:{session.client('sts').get_caller_identity()['Arn']}"
    except (ClientError, BotoCoreError):
        return f"cli:{getpass.getuser()}"


# Waiting with progress


def wait_for(control: Reconciler, start: bool, poll_seconds: float, timeout_seconds: float, out: TextIO) -> int:
    """Run the reconciler until the endpoint is InService (start) or gone (stop), showing progress.

    Each round runs the reconciler, so a step that had to wait (a stop during Creating, a start while the
    previous endpoint is still Deleting) happens as soon as SageMaker allows it.
    """
    display = ProgressDisplay(out)
    expected = expected_start_seconds(control)
    began = time.monotonic()
    while True:
        result = control.run(Trigger(CLI))
        endpoint = describe_endpoint(control.clients.sagemaker, control.settings.endpoint_name)
        state = endpoint.status if endpoint else ABSENT
        now = control.clock()

        if start and state == "InService":
            display.finish(f"Endpoint {control.settings.endpoint_name} is InService.")
            return EXIT_OK
        if not start and state == ABSENT:
            display.finish(f"Endpoint {control.settings.endpoint_name} is deleted.")
            return EXIT_OK
        if result.action in (BLOCKED, FAILED) or (start and state == "Failed"):
            reason = endpoint.failure_reason if endpoint and endpoint.failure_reason else result.message
            display.finish(f"The start did not succeed: {reason}")
            return EXIT_FAILED
        if result.desired.state != (ON if start else OFF) and result.action != BUSY:
            display.finish(f"The desired state changed to {result.desired.state} ({result.desired.reason}); stopped waiting.")
            return EXIT_FAILED

        waited = time.monotonic() - began
        if waited > timeout_seconds:
            display.finish(f"Timed out after {waited / 60:.0f} minutes; the endpoint is {state}. The request stays in place.")
            return EXIT_TIMED_OUT

        display.show(progress_line(state, endpoint.creation_time if endpoint else None, now, expected, start),
                     state)
        control.sleep(poll_seconds)


def progress_line(state: str, created_at: datetime | None, now: datetime, expected_seconds: int, start: bool) -> str:
    """Return one status line: state, elapsed time, and for a start a progress bar with an ETA."""
    if not start or state != "Creating" or created_at is None:
        return f"{state:<14} {_clock()} waiting for the endpoint to {'start' if start else 'be deleted'}"

    elapsed = max((now - created_at).total_seconds(), 0.0)
    fraction = min(elapsed / expected_seconds, 0.99) if expected_seconds > 0 else 0.0
    filled = int(fraction * PROGRESS_BAR_WIDTH)
    bar = "#" * filled + "." * (PROGRESS_BAR_WIDTH - filled)
    remaining = expected_seconds - elapsed
    if remaining > 0:
        eta = f"about {_duration(remaining)} left (estimate)"
    else:
        eta = f"taking longer than the usual {_duration(expected_seconds)}"
    return f"{state:<14} [{bar}] {fraction:4.0%}  {_duration(elapsed)} elapsed, {eta}"


class ProgressDisplay:
    """Progress output: one rewritten line on a terminal, elsewhere a line per state change and per minute."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.interactive = out.isatty()
        self.last_state: str | None = None
        self.last_printed = 0.0
        self.width = 0

    def show(self, line: str, state: str) -> None:
        if self.interactive:
            padding = " " * max(self.width - len(line), 0)
            self.out.write(f"\r{line}{padding}")
            self.width = len(line)
        elif state != self.last_state or time.monotonic() - self.last_printed >= PLAIN_OUTPUT_INTERVAL_SECONDS:
            self.out.write(line + "\n")
            self.last_printed = time.monotonic()
        self.last_state = state
        self.out.flush()

    def finish(self, message: str) -> None:
        if self.interactive and self.width:
            self.out.write("\n")
        self.out.write(message + "\n")
        self.out.flush()


# Report formatting


def format_report(report: dict, timezone_name: str) -> str:
    endpoint = report["endpoint"]
    desired = report["desired"]
    cost = report["cost"]
    since = _parse(endpoint["since"])
    generated = _parse(report["generated_at"])

    lines = []
    state = endpoint["status"]
    if since:
        state += f" since {_format_time(since, timezone_name)} ({_duration((generated - since).total_seconds())})"
    lines.append(("Endpoint", f"{endpoint['name']}: {state}"))
    if endpoint["config"]:
        lines.append(("Config", endpoint["config"]))
    if endpoint["failure_reason"]:
        lines.append(("SageMaker says", endpoint["failure_reason"]))

    until = _parse(desired["until"])
    lines.append((
        "Desired",
        f"{desired['state']} ({desired['source']}), requested by {desired['requested_by']} at "
        f"{_format_time(_parse(desired['requested_at']), timezone_name)}"
        + (f", until {_format_time(until, timezone_name)}" if until else ""),
    ))
    lines.append(("Why", desired["reason"]))

    change = report["next_change"]
    if change:
        lines.append(("Next change", f"{change['state']} at {_format_time(_parse(change['at']), timezone_name)} "
                                     f"({change['cause']})"))
    else:
        lines.append(("Next change", "none scheduled"))

    lines.append((
        "Cost so far",
        f"this run {cost['run_hours']:.1f} h, about {cost['run_cost_usd']:.2f} USD; this month "
        f"{cost['month_hours']:.1f} h, about {cost['month_cost_usd']:.2f} USD "
        f"(estimates at {cost['hourly_price_usd']:.2f} USD per instance hour)",
    ))
    failure = report.get("failure")
    failure_blocks = bool(failure) and blocking_failure(report, DesiredState.from_dict(desired)) is not None
    if failure:
        blocked = " (blocks automatic retries; run bloomctl start to try again)" if failure_blocks else ""
        lines.append(("Last failure", f"{failure['reason']} at {_format_time(_parse(failure['at']), timezone_name)}{blocked}"))
    lines.extend(_blocked_start_lines(report, failure_blocks, timezone_name))

    width = max(len(label) for label, _ in lines) + 2
    return "\n".join(f"{label:<{width}}{value}" for label, value in lines)


def _blocked_start_lines(report: dict, failure_blocks: bool, timezone_name: str) -> list[tuple[str, str]]:
    """Return the lines that explain why the endpoint is off although the desired state is on.

    The reason is the message of the last reconciler run, such as missing weights, because the report's
    ``start_blocked`` is true only for a failed start. Such a failure waits for a new start request, and
    every reconciler run checks any other cause again.
    """
    last_run = report.get("last_run") or {}
    if last_run.get("action") != BLOCKED or report["desired"]["state"] != ON or report["endpoint"]["status"] != ABSENT:
        return []

    checked = _format_time(_parse(last_run.get("at")), timezone_name)
    lines = [("Start blocked", f"{last_run.get('message', 'no reason recorded')} (last checked {checked})")]
    if not failure_blocks:
        lines.append((
            "Next step",
            "fix the cause above; the next reconciler run then starts the endpoint, "
            "and bloomctl start --wait checks at once",
        ))
    return lines


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _format_time(moment: datetime | None, timezone_name: str) -> str:
    if moment is None:
        return "-"
    text = f"{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"
    if timezone_name and timezone_name != "UTC":
        text += f" ({moment.astimezone(ZoneInfo(timezone_name)):%H:%M} {timezone_name})"
    return text


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def _clock() -> str:
    return datetime.now(timezone.utc).strftime("%H:%M:%S UTC")
