"""``bloomctl status``, ``start`` and ``stop``: argument parsing, progress display, and a run end to end
against ``moto_server`` on 127.0.0.1.

Adaptations to moto (5.2):

- its SageMaker puts a new endpoint straight into InService and deletes one at once, so ``start --wait``
  and ``stop --wait`` finish on their first check (the progress display is tested with a Stubber);
- it rejects g5 and p4d instance types in an EndpointConfig, so the test config uses ml.g4dn.xlarge;
- no hosting stack exists in its CloudFormation, so the reconciler skips the cleanup of retained configs.
"""

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
import requests
from moto import mock_aws

from bloomctl import cli
from bloomctl.cli import build_parser
from bloomctl.commands import control
from tests.control_plane_support import (
    BUCKET,
    REGION,
    WEIGHTS_PREFIX,
    FakeClock,
    create_deployment,
    expect_describe,
    make_settings,
    shared_session,
    stage_weights,
    stubbed_reconciler,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


# Arguments and display


@pytest.mark.parametrize(("text", "expected"), [("4h", timedelta(hours=4)), ("1.5h", timedelta(minutes=90)),
                                                ("90m", timedelta(minutes=90)), (" 2H ", timedelta(hours=2))])
def test_duration_parsed(text, expected):
    assert control.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["4", "four hours", "-1h", "1d"])
def test_invalid_duration_rejected(text):
    with pytest.raises(argparse.ArgumentTypeError, match="use hours or minutes"):
        control.parse_duration(text)


def test_commands_registered():
    parser = build_parser()

    start = parser.parse_args(["start", "--for", "4h", "--wait", "--poll-seconds", "0.5"])
    stop = parser.parse_args(["stop", "--reason", "lunch"])
    status = parser.parse_args(["status", "--json"])

    assert start.duration == timedelta(hours=4)
    assert start.wait is True
    assert start.poll_seconds == 0.5
    assert start.func is control.run_start
    assert stop.reason == "lunch"
    assert stop.func is control.run_stop
    assert status.json is True


def test_progress_line_shows_bar_and_eta():
    created = datetime(2025, 6, 2, 8, 0, tzinfo=timezone.utc)

    line = control.progress_line("Creating", created, created + timedelta(minutes=6), 18 * 60, start=True)

    assert line.startswith("Creating")
    assert "[##########" in line
    assert "33%" in line
    assert "6 min elapsed" in line
    assert "about 12 min left (estimate)" in line


def test_progress_line_past_estimate():
    created = datetime(2025, 6, 2, 8, 0, tzinfo=timezone.utc)

    line = control.progress_line("Creating", created, created + timedelta(minutes=25), 18 * 60, start=True)

    assert "99%" in line
    assert "taking longer than the usual 18 min" in line


def test_wait_for_start_shows_progress(monkeypatch):
    with mock_aws():
        clock = FakeClock()
        reconciler, stubber = stubbed_reconciler(clock)
        reconciler.start("alice")
        created = clock()
        # Each round: the reconciler's describe, then the wait loop's own.
        for minutes, state in ((3, "Creating"), (6, "Creating"), (9, "InService")):
            expect_describe(stubber, state, created=created, modified=created + timedelta(minutes=minutes))
            expect_describe(stubber, state, created=created, modified=created + timedelta(minutes=minutes))
        reconciler.sleep = lambda _seconds: clock.advance(minutes=3)
        clock.advance(minutes=3)
        out = io.StringIO()

        code = control.wait_for(reconciler, start=True, poll_seconds=180, timeout_seconds=3600, out=out)

        stubber.assert_no_pending_responses()
        lines = out.getvalue().splitlines()
        assert code == control.EXIT_OK
        assert "about 2 min left (estimate)" in lines[0]  # 3 of the 5 expected minutes have passed
        assert lines[-1] == "Endpoint bloom-endpoint is InService."


def people_report(**changes) -> dict:
    """A status report of a running endpoint, as build_report returns it, with top-level changes."""
    report = {
        "endpoint": {"name": "bloom-endpoint", "status": "InService", "since": "2025-06-02T08:20:00+00:00",
                     "config": "EndpointConfig-aaaa", "created_at": "2025-06-02T08:00:00+00:00",
                     "failure_reason": None, "instances": 1},
        "desired": {"state": "on", "source": "manual", "requested_by": "cli:arn:aws:iam::1:user/alice",
                    "requested_at": "2025-06-02T08:00:00+00:00", "until": "2025-06-02T12:00:00+00:00",
                    "reason": "demo", "version": 3},
        "next_change": {"at": "2025-06-02T12:00:00+00:00", "state": "off", "cause": "the manual start expires"},
        "cost": {"hourly_price_usd": 37.69, "run_hours": 2.0, "run_cost_usd": 75.38, "month_hours": 10.5,
                 "month_cost_usd": 395.75, "estimate": True},
        "failure": None,
        "start_blocked": False,
        "generated_at": "2025-06-02T10:20:00+00:00",
    }
    report.update(changes)
    return report


def blocked_report(**changes) -> dict:
    """A report of an endpoint that is absent although the desired state is on, after a blocked run."""
    report = people_report(**changes)
    report["endpoint"].update(status="absent", since=None, config=None, created_at=None, instances=0)
    report.setdefault("last_run", {
        "at": "2025-06-02T10:15:00+00:00", "trigger": "cli", "action": "blocked",
        "message": "Not starting: The weights at s3://b/weights/bloom-1b7/ have no manifest "
                   "(weights/bloom-1b7/weights-manifest.json not found). Stage them with `bloomctl weights stage --wait`.",
    })
    return report


def test_report_formatted_for_people():
    report = people_report()

    text = control.format_report(report, "Europe/Berlin")

    assert "bloom-endpoint: InService since 2025-06-02 08:20 UTC (10:20 Europe/Berlin) (2 h 0 min)" in text
    assert "on (manual), requested by cli:arn:aws:iam::1:user/alice" in text
    assert "off at 2025-06-02 12:00 UTC (14:00 Europe/Berlin) (the manual start expires)" in text
    assert "this run 2.0 h, about 75.38 USD; this month 10.5 h, about 395.75 USD" in text
    assert "Start blocked" not in text


def test_report_shows_blocked_start():
    text = control.format_report(blocked_report(), "UTC")

    assert "Start blocked  Not starting: The weights at s3://b/weights/bloom-1b7/ have no manifest" in text
    assert "Stage them with `bloomctl weights stage --wait`. (last checked 2025-06-02 10:15 UTC)" in text
    assert "Next step      fix the cause above; the next reconciler run then starts the endpoint" in text


def test_report_blocked_by_failure_needs_new_start():
    failure = {"kind": "create", "reason": "ResourceLimitExceeded", "at": "2025-06-02T10:00:00+00:00",
               "desired_version": 3, "blocks": True}
    last_run = {"at": "2025-06-02T10:15:00+00:00", "trigger": "periodic", "action": "blocked",
                "message": "The last start failed (ResourceLimitExceeded). It is not retried for the same request: "
                           "run `bloomctl start` to try again."}

    text = control.format_report(blocked_report(failure=failure, start_blocked=True, last_run=last_run), "UTC")

    assert "Start blocked  The last start failed (ResourceLimitExceeded)" in text
    assert "ResourceLimitExceeded at 2025-06-02 10:00 UTC (blocks automatic retries" in text
    assert "Next step" not in text


@pytest.mark.parametrize(
    ("desired_state", "endpoint_status"), [("off", "absent"), ("on", "Creating")], ids=["stopped", "creating"]
)
def test_report_hides_stale_blocked_run(desired_state, endpoint_status):
    report = blocked_report()
    report["desired"]["state"] = desired_state
    report["endpoint"]["status"] = endpoint_status

    assert "Start blocked" not in control.format_report(report, "UTC")


# Runs in process against moto


@pytest.fixture
def deployment(capsys):
    """A deployed control plane in moto, without staged weights."""
    with mock_aws():
        settings = make_settings()
        create_deployment(settings)
        yield settings


def status_report(capsys) -> dict:
    capsys.readouterr()
    assert cli.main(["status", "--json"]) == control.EXIT_OK
    return json.loads(capsys.readouterr().out)


def test_status_text_explains_blocked_start(deployment, capsys):
    shared_session().client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    assert cli.main(["start", "--for", "2h"]) == control.EXIT_FAILED
    capsys.readouterr()

    code = cli.main(["status"])

    text = capsys.readouterr().out
    assert code == control.EXIT_OK
    assert "Endpoint       bloom-endpoint: absent" in text
    assert f"Start blocked  Not starting: The weights at s3://{BUCKET}/{WEIGHTS_PREFIX} have no manifest" in text
    assert "`bloomctl weights stage --wait`" in text
    assert "Next step" in text


def test_start_for_changes_expiry(deployment, capsys):
    stage_weights()
    assert cli.main(["start", "--for", "2h"]) == control.EXIT_OK
    first = status_report(capsys)["desired"]

    assert cli.main(["start", "--for", "4h"]) == control.EXIT_OK
    second = status_report(capsys)["desired"]

    hours = (datetime.fromisoformat(second["until"]) - datetime.fromisoformat(first["until"])).total_seconds() / 3600
    assert second["state"] == "on"
    assert 1.9 < hours < 2.1


def test_second_start_keeps_expiry(deployment, capsys):
    stage_weights()
    assert cli.main(["start", "--for", "2h"]) == control.EXIT_OK
    first = status_report(capsys)["desired"]

    assert cli.main(["start"]) == control.EXIT_OK
    second = status_report(capsys)["desired"]

    assert second["state"] == "on"
    assert second["until"] == first["until"]


# End to end against moto_server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def moto_server(monkeypatch):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto_server did not start within 30 s") from None
                time.sleep(0.2)
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


class LocalSession:
    """Clients that talk to the moto server only."""

    def __init__(self, url: str) -> None:
        self.session = boto3.Session(region_name=REGION)
        self.url = url

    def client(self, service: str):
        return self.session.client(service, endpoint_url=self.url)


def bloomctl(*args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bloomctl", "--prefix", "bloom", "--region", REGION, *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_status_start_stop_end_to_end(moto_server):
    session = LocalSession(moto_server)
    settings = make_settings(hourly_price_usd=1.41)
    create_deployment(settings, session=session)
    stage_weights(session=session)

    before = bloomctl("status", "--json")
    started = bloomctl("start", "--for", "1h", "--reason", "end-to-end test", "--wait", "--poll-seconds", "0.2")
    running = bloomctl("status")
    again = bloomctl("start", "--for", "1h")
    stopped = bloomctl("stop", "--wait", "--poll-seconds", "0.2")
    after = bloomctl("status", "--json")

    for result in (before, started, running, again, stopped, after):
        assert result.returncode == 0, result.stderr
    assert json.loads(before.stdout)["endpoint"]["status"] == "absent"
    assert "Desired state: on until" in started.stdout
    assert "Endpoint bloom-endpoint is InService." in started.stdout
    assert "bloom-endpoint: InService since" in running.stdout
    assert "end-to-end test" in running.stdout
    assert "off at" in running.stdout
    # A second start is a no-op that reports the running endpoint.
    assert "Endpoint bloom-endpoint: InService. The endpoint is running." in again.stdout
    assert "Endpoint bloom-endpoint is deleted." in stopped.stdout
    report = json.loads(after.stdout)
    assert report["endpoint"]["status"] == "absent"
    assert report["desired"]["state"] == "off"
    assert report["desired"]["requested_by"].startswith("cli:arn:aws:")
    endpoints = session.client("sagemaker").list_endpoints()["Endpoints"]
    assert endpoints == []


@pytest.mark.slow
def test_missing_settings_named_end_to_end(moto_server):
    result = bloomctl("status")

    assert result.returncode == control.EXIT_USAGE
    assert "SSM parameter /bloom/control/settings not found" in result.stderr
