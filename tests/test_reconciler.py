"""Reconciler behaviour over several runs: repeated and concurrent requests, failures, idle stop, expiry,
notifications and usage. moto provides the services; SageMaker is stubbed where moto cannot model a state."""

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from control_plane.desired import OFF, ON, SOURCE_IDLE
from control_plane.notify import FAILED as FAILED_NOTICE
from control_plane.notify import IDLE_STOPPED, READY, STOPPED
from control_plane.reconciler import (
    BLOCKED,
    BUSY,
    CREATE,
    DELETE,
    FAILED,
    NOTHING,
    PERIODIC,
    REQUEST,
    SCHEDULE,
    WAIT,
    Trigger,
)
from control_plane.report import build_report
from control_plane.usage import accumulate, month_figures
from weights_manifest.check import WeightsCheck
from weights_manifest.check import check_weights
from tests.control_plane_support import (
    CONFIG_A,
    ENDPOINT,
    REGION,
    FakeClock,
    aws,  # noqa: F401 - fixture
    clock,  # noqa: F401 - fixture
    create_deployment,
    expect_create,
    expect_create_error,
    expect_delete,
    expect_describe,
    make_reconciler,
    make_settings,
    shared_session,
    stage_weights,
    stubbed_reconciler,
)

OFFICE_HOURS = [{"name": "office-hours", "days": "MON-FRI", "start": "08:00", "stop": "18:00"}]


def count_calls(client, operation: str) -> list:
    """Record every call of one operation made through a client."""
    calls = []
    client.meta.events.register(f"provide-client-params.sagemaker.{operation}", lambda **kwargs: calls.append(kwargs["params"]))
    return calls


# The same request twice


def test_two_starts_make_one_create(aws, clock):
    settings = make_settings()
    create_deployment(settings)
    reconciler = make_reconciler(settings, clock)
    creates = count_calls(reconciler.clients.sagemaker, "CreateEndpoint")

    reconciler.start("alice")
    first = reconciler.run(Trigger(REQUEST))
    reconciler.clock.advance(seconds=3)
    reconciler.start("alice")
    second = reconciler.run(Trigger(REQUEST))

    assert len(creates) == 1
    assert first.action == CREATE
    # The second start is a no-op that reports the current state.
    assert second.action == NOTHING
    assert second.endpoint_status == "InService"


def test_concurrent_starts_make_one_create(aws, clock):
    settings = make_settings()
    create_deployment(settings)
    reconcilers = [make_reconciler(settings, clock, lease_wait_seconds=5, sleep=time.sleep) for _ in range(2)]
    creates = []
    for reconciler in reconcilers:
        creates_of_one = count_calls(reconciler.clients.sagemaker, "CreateEndpoint")
        creates.append(creates_of_one)
        for service in ("sagemaker", "dynamodb", "ssm", "cloudwatch", "cloudformation", "s3", "sns"):
            getattr(reconciler.clients, service)  # create the clients before the threads share the session

    barrier = threading.Barrier(2)
    results = [None, None]

    def start(index: int) -> None:
        barrier.wait()
        reconcilers[index].start(f"caller-{index}")
        results[index] = reconcilers[index].run(Trigger(REQUEST))

    threads = [threading.Thread(target=start, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sum(len(calls) for calls in creates) == 1
    # The run that created the endpoint may have run a second pass for the other start request.
    assert [action for result in results for action in result.actions].count(CREATE) == 1
    assert all(result.endpoint_status in ("InService", "Creating", "unknown") for result in results)


def test_two_stops_make_one_delete(aws):
    reconciler, stubber = stubbed_reconciler()

    expect_describe(stubber, "InService")
    expect_delete(stubber)
    expect_describe(stubber, "Deleting")
    reconciler.stop("alice")
    first = reconciler.run(Trigger(REQUEST))
    reconciler.clock.advance(seconds=2)
    reconciler.stop("alice")
    second = reconciler.run(Trigger(REQUEST))

    stubber.assert_no_pending_responses()
    assert first.action == DELETE
    assert second.action == WAIT
    assert second.endpoint_status == "Deleting"


def test_create_race_is_no_op(aws):
    reconciler, stubber = stubbed_reconciler()

    expect_describe(stubber, None)
    expect_create_error(
        stubber,
        CONFIG_A,
        "ValidationException",
        f"Cannot create already existing endpoint \"arn:aws:sagemaker:eu-west-1:1:endpoint/{ENDPOINT}\".",
    )
    reconciler.start("alice")
    result = reconciler.run(Trigger(REQUEST))

    stubber.assert_no_pending_responses()
    assert result.action == NOTHING
    assert reconciler.store.get_status().get("failure") is None


def test_lease_held_elsewhere_makes_no_call(aws):
    clock = FakeClock()
    reconciler, stubber = stubbed_reconciler(clock)
    assert reconciler.store.acquire_lease("someone-else", clock(), 180)

    reconciler.start("alice")
    result = reconciler.run(Trigger(REQUEST))

    stubber.assert_no_pending_responses()
    assert result.action == BUSY
    assert result.desired.state == ON


def test_expired_lease_is_taken_over(aws, clock):
    settings = make_settings()
    create_deployment(settings)
    reconciler = make_reconciler(settings, clock)
    assert reconciler.store.acquire_lease("crashed-run", clock(), 180)

    clock.advance(seconds=181)
    reconciler.start("alice")
    result = reconciler.run(Trigger(REQUEST))

    assert result.action == CREATE


def test_stop_during_run_carried_out(aws, clock):
    settings = make_settings(idle_stop_minutes=0)
    create_deployment(settings)
    reconciler = None

    def weights_check_with_stop(*_args):
        # A stop arrives while the run is about to create the endpoint.
        reconciler.stop("bob", "changed my mind")
        return check_ok

    check_ok = WeightsCheck(True, "ok")
    reconciler = make_reconciler(settings, clock, weights_check=weights_check_with_stop)
    deletes = count_calls(reconciler.clients.sagemaker, "DeleteEndpoint")

    reconciler.start("alice")
    result = reconciler.run(Trigger(REQUEST))

    assert len(deletes) == 1
    assert result.desired.state == OFF
    assert result.action == DELETE


# Failures


def test_create_error_recorded_notified_not_retried(aws):
    clock = FakeClock()
    reconciler, stubber = stubbed_reconciler(clock)

    expect_describe(stubber, None)
    expect_create_error(
        stubber,
        CONFIG_A,
        "ResourceLimitExceeded",
        "The account-level service limit 'ml.g5.xlarge for endpoint usage' is 0 Instances.",
    )
    reconciler.start("alice")
    failed = reconciler.run(Trigger(REQUEST))

    # Ten periodic runs later there has been no other CreateEndpoint.
    for _ in range(10):
        clock.advance(minutes=5)
        expect_describe(stubber, None)
        blocked = reconciler.run(Trigger(PERIODIC))
        assert blocked.action == BLOCKED

    stubber.assert_no_pending_responses()
    assert failed.action == FAILED
    assert "ResourceLimitExceeded" in failed.message
    assert [kind for kind, _ in failed.notifications] == [FAILED_NOTICE]
    failure = reconciler.store.get_status()["failure"]
    assert failure["kind"] == "create"
    assert "service limit" in failure["reason"]
    assert "bloomctl start" in blocked.message

    # A new start is a new request, and is tried again.
    expect_describe(stubber, None)
    expect_create(stubber, CONFIG_A)
    reconciler.start("alice")
    retried = reconciler.run(Trigger(REQUEST))
    stubber.assert_no_pending_responses()
    assert retried.action == CREATE


def test_failed_endpoint_cleaned_up_and_reported(aws):
    clock = FakeClock()
    reconciler, stubber = stubbed_reconciler(clock)

    expect_describe(stubber, None)
    expect_create(stubber, CONFIG_A)
    reconciler.start("alice")
    reconciler.run(Trigger(REQUEST))

    clock.advance(minutes=5)
    expect_describe(stubber, "Creating", created=clock() - timedelta(minutes=5))
    reconciler.run(Trigger(PERIODIC))

    clock.advance(minutes=60)
    reason = "The primary container for production variant AllTraffic did not pass the ping health check."
    expect_describe(stubber, "Failed", failure_reason=reason)
    expect_delete(stubber)
    cleaned = reconciler.run(Trigger(PERIODIC))

    clock.advance(minutes=5)
    expect_describe(stubber, None)
    after = reconciler.run(Trigger(PERIODIC))

    expect_describe(stubber, None)
    report = build_report(reconciler)
    stubber.assert_no_pending_responses()

    assert cleaned.action == DELETE
    assert [kind for kind, _ in cleaned.notifications] == [FAILED_NOTICE]
    assert reason in cleaned.notifications[0][1]
    assert after.action == BLOCKED
    assert [kind for kind, _ in after.notifications] == [STOPPED]
    assert report["failure"]["reason"] == reason
    assert report["start_blocked"] is True


def test_missing_weights_block_start(aws):
    settings = make_settings()
    create_deployment(settings)
    shared_session().client("s3").create_bucket(
        Bucket="bloom-models-123456789012-eu-west-1", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    reconciler = make_reconciler(settings, FakeClock(), weights_check=check_weights)
    creates = count_calls(reconciler.clients.sagemaker, "CreateEndpoint")

    reconciler.start("alice")
    first = reconciler.run(Trigger(REQUEST))
    second = reconciler.run(Trigger(PERIODIC))

    assert creates == []
    assert first.action == BLOCKED
    assert "bloomctl weights stage" in first.message
    # Notified once per request, not on every run.
    assert [kind for kind, _ in first.notifications] == [FAILED_NOTICE]
    assert second.notifications == []


def test_missing_weights_reported_as_blocked_start(aws):
    settings = make_settings()
    create_deployment(settings)
    shared_session().client("s3").create_bucket(
        Bucket="bloom-models-123456789012-eu-west-1", CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    reconciler = make_reconciler(settings, FakeClock(), weights_check=check_weights)

    reconciler.start("alice")
    reconciler.run(Trigger(REQUEST))
    report = build_report(reconciler)

    assert report["start_blocked"] is True
    assert report["last_run"]["action"] == BLOCKED


def test_staged_weights_allow_start(aws):
    settings = make_settings()
    create_deployment(settings)
    stage_weights()
    reconciler = make_reconciler(settings, FakeClock(), weights_check=check_weights)

    reconciler.start("alice")
    result = reconciler.run(Trigger(REQUEST))

    assert result.action == CREATE


# Idle stop and expiry


def put_invocations(clock: FakeClock, minutes_ago: int, count: float) -> None:
    shared_session().client("cloudwatch").put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[{
            "MetricName": "Invocations",
            "Dimensions": [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": "AllTraffic"}],
            "Timestamp": clock() - timedelta(minutes=minutes_ago),
            "Value": count,
            "Unit": "None",
        }],
    )


def test_idle_endpoint_stops_and_notifies(aws, clock):
    settings = make_settings(idle_stop_minutes=60)
    create_deployment(settings)
    reconciler = make_reconciler(settings, clock)
    reconciler.start("alice", timedelta(hours=8))
    reconciler.run(Trigger(REQUEST))

    clock.advance(minutes=30)
    early = reconciler.run(Trigger(PERIODIC))
    clock.advance(minutes=31)
    idle = reconciler.run(Trigger(PERIODIC))
    clock.advance(minutes=5)
    after = reconciler.run(Trigger(PERIODIC))

    assert early.action == NOTHING
    assert idle.action == DELETE
    assert idle.desired.source == SOURCE_IDLE
    assert idle.desired.reason == "no invocations for 60 minutes"
    assert [kind for kind, _ in after.notifications] == [IDLE_STOPPED]


def test_endpoint_with_traffic_is_not_idle(aws, clock):
    settings = make_settings(idle_stop_minutes=60)
    create_deployment(settings)
    reconciler = make_reconciler(settings, clock)
    reconciler.start("alice", timedelta(hours=8))
    reconciler.run(Trigger(REQUEST))

    clock.advance(minutes=90)
    put_invocations(clock, minutes_ago=20, count=3)
    result = reconciler.run(Trigger(PERIODIC))

    assert result.action == NOTHING
    assert result.desired.state == ON


def test_idle_stop_holds_until_next_window(aws, clock):
    settings = make_settings(idle_stop_minutes=60, schedule_windows=OFFICE_HOURS, schedule_timezone="Europe/Berlin")
    create_deployment(settings)
    reconciler = make_reconciler(settings, clock)
    reconciler.run(Trigger(PERIODIC))

    clock.advance(minutes=61)
    stopped = reconciler.run(Trigger(PERIODIC))
    clock.advance(minutes=30)
    later = reconciler.run(Trigger(PERIODIC))

    assert stopped.action == DELETE
    assert stopped.desired.until == datetime(2025, 6, 3, 6, 0, tzinfo=timezone.utc)  # Tuesday 08:00 CEST
    assert later.action == NOTHING
    assert later.desired.state == OFF


def test_forgotten_manual_start_stops_itself(aws, clock):
    settings = make_settings(idle_stop_minutes=0)
    create_deployment(settings)
    reconciler = make_reconciler(settings, clock)
    reconciler.start("alice", timedelta(hours=2))
    reconciler.run(Trigger(REQUEST))

    clock.advance(hours=2, minutes=1)
    result = reconciler.run(Trigger(PERIODIC))

    assert result.action == DELETE
    assert result.desired.state == OFF
    assert "expired" in result.desired.reason


def test_missed_schedule_event_heals(aws):
    settings = make_settings(idle_stop_minutes=0, schedule_windows=OFFICE_HOURS, schedule_timezone="Europe/Berlin")
    create_deployment(settings)
    clock = FakeClock(datetime(2025, 6, 2, 5, 0, tzinfo=timezone.utc))  # Monday 07:00 Berlin
    reconciler = make_reconciler(settings, clock)
    before = reconciler.run(Trigger(PERIODIC))

    # The 08:00 start event never arrives; the periodic run at 08:04 starts the endpoint.
    clock.advance(hours=1, minutes=4)
    healed = reconciler.run(Trigger(PERIODIC))

    assert before.action == NOTHING
    assert healed.action == CREATE
    assert healed.desired.requested_by == "schedule:office-hours"


def test_early_schedule_event_uses_scheduled_time(aws):
    settings = make_settings(idle_stop_minutes=0, schedule_windows=OFFICE_HOURS, schedule_timezone="Europe/Berlin")
    create_deployment(settings)
    scheduled = datetime(2025, 6, 2, 6, 0, tzinfo=timezone.utc)  # Monday 08:00 Berlin
    clock = FakeClock(scheduled - timedelta(seconds=2))
    reconciler = make_reconciler(settings, clock)

    result = reconciler.run(Trigger(SCHEDULE, at=scheduled))

    assert result.action == CREATE
    assert result.desired.state == ON


def test_start_beyond_maximum_rejected(aws):
    from control_plane.desired import RequestError

    settings = make_settings(manual_start_max_hours=4)
    create_deployment(settings)
    reconciler = make_reconciler(settings, FakeClock())

    with pytest.raises(RequestError, match="manualStartMaxHours=4"):
        reconciler.start("alice", timedelta(hours=5))


# Notifications and usage


def test_ready_notification_published(aws, clock):
    session = shared_session()
    sns = session.client("sns")
    sqs = session.client("sqs")
    topic_arn = sns.create_topic(Name="bloom-endpoint-events")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    settings = make_settings(topic_arn=topic_arn)
    create_deployment(settings)
    reconciler = make_reconciler(settings, clock)

    reconciler.start("alice")
    reconciler.run(Trigger(REQUEST))
    clock.advance(minutes=1)
    reconciler.run(Trigger(PERIODIC))

    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(message["Body"]) for message in messages]
    assert len(bodies) == 1
    assert bodies[0]["Subject"] == "[bloom] SageMaker endpoint bloom-endpoint is ready"
    assert bodies[0]["MessageAttributes"]["kind"]["Value"] == READY


def test_usage_across_month_end():
    start = datetime(2025, 5, 31, 23, 0, tzinfo=timezone.utc)

    usage = accumulate(None, start, 2)
    usage = accumulate(usage, start + timedelta(minutes=30), 2)
    june = accumulate(usage, start + timedelta(minutes=90), 0)

    assert usage["month"] == "2025-05"
    assert usage["seconds"] == 1800
    assert usage["instance_seconds"] == 3600
    # Only the 30 minutes after midnight count for June.
    assert june["month"] == "2025-06"
    assert june["seconds"] == 1800
    assert june["instances"] == 0
    hours, cost = month_figures(june, start + timedelta(hours=5), hourly_price_usd=10.0)
    assert hours == 0.5
    assert cost == 10.0


def test_report_shows_cost_and_next_change(aws, clock):
    settings = make_settings(idle_stop_minutes=0, hourly_price_usd=10.0)
    create_deployment(settings)
    reconciler = make_reconciler(settings, clock)
    reconciler.start("alice", timedelta(hours=4), "demo for the team")
    reconciler.run(Trigger(REQUEST))

    clock.advance(minutes=30)
    reconciler.run(Trigger(PERIODIC))
    clock.advance(minutes=30)
    report = build_report(reconciler)

    assert report["endpoint"]["status"] == "InService"
    assert report["desired"]["reason"] == "demo for the team"
    assert report["next_change"]["state"] == OFF
    assert report["next_change"]["at"] == "2025-06-02T12:00:00+00:00"
    # moto creates the endpoint at the real time, not the fake clock's, so only the month figure is exact.
    assert report["cost"]["run_hours"] == 1.0
    assert report["cost"]["run_cost_usd"] == 10.0
    assert report["cost"]["month_hours"] == 1.0
    assert report["cost"]["month_cost_usd"] == 10.0



def test_plain_second_start_keeps_manual_expiry():
    """Asking to start again without a duration reports the running start instead of extending it."""
    from datetime import datetime, timedelta, timezone

    from control_plane.desired import ON, SOURCE_MANUAL, DesiredState, start_request

    now = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    first = DesiredState(ON, SOURCE_MANUAL, "cli:alice", now, now + timedelta(hours=2), "manual start for 2 h")

    second = start_request("cli:bob", now + timedelta(minutes=10), None, 8, current=first)

    assert second.until == first.until
    assert second.reason == first.reason
    assert second.state == ON


def test_plain_start_after_expiry_gets_default_duration():
    from datetime import datetime, timedelta, timezone

    from control_plane.desired import ON, SOURCE_MANUAL, DesiredState, start_request

    now = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    expired = DesiredState(ON, SOURCE_MANUAL, "cli:alice", now - timedelta(hours=3), now - timedelta(hours=1), "old")

    started = start_request("cli:bob", now, None, 8, current=expired)

    assert started.until == now + timedelta(hours=8)
