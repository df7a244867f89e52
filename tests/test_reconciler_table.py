"""Table-driven reconciler test: start, stop and reconcile from every SageMaker endpoint state.

SageMaker is a botocore Stubber with the exact expected parameters of every call. Any other SageMaker call
fails the test, and ``assert_no_pending_responses`` fails it when an expected call was not made. The rest
(DynamoDB, SSM, CloudWatch, CloudFormation) is moto.
"""

import pytest

from control_plane.desired import OFF, ON
from control_plane.reconciler import CREATE, DELETE, NOTHING, PERIODIC, REQUEST, UPDATE, WAIT, Trigger
from tests.control_plane_support import (
    CONFIG_A,
    CONFIG_B,
    FakeClock,
    aws,  # noqa: F401 - fixture
    expect_create,
    expect_delete,
    expect_describe,
    expect_update,
    stubbed_reconciler,
)

ALWAYS_ON = [{"name": "always", "days": "*", "start": "00:00", "stop": "23:59"}]

# For each endpoint state (None: no endpoint): the action of a start, of a stop, and of a periodic
# reconcile with the schedule on and with it off.
TABLE = {
    None: (CREATE, NOTHING, CREATE, NOTHING),
    "Creating": (WAIT, WAIT, WAIT, WAIT),
    "InService": (NOTHING, DELETE, NOTHING, DELETE),
    "Updating": (WAIT, WAIT, WAIT, WAIT),
    "SystemUpdating": (WAIT, WAIT, WAIT, WAIT),
    "RollingBack": (WAIT, WAIT, WAIT, WAIT),
    "Deleting": (WAIT, WAIT, WAIT, WAIT),
    "Failed": (DELETE, DELETE, DELETE, DELETE),
    "OutOfService": (DELETE, DELETE, DELETE, DELETE),
    "UpdateRollbackFailed": (NOTHING, DELETE, NOTHING, DELETE),
}
COMMANDS = ("start", "stop", "reconcile-on", "reconcile-off")
CASES = [(state, command, actions[index]) for state, actions in TABLE.items() for index, command in enumerate(COMMANDS)]


def _expect_action(stubber, action: str) -> None:
    if action == CREATE:
        expect_create(stubber, CONFIG_A)
    elif action == DELETE:
        expect_delete(stubber)


@pytest.mark.parametrize(("state", "command", "action"), CASES, ids=[f"{s or 'absent'}-{c}" for s, c, _ in CASES])
def test_state_table(aws, state, command, action):
    windows = ALWAYS_ON if command == "reconcile-on" else []
    reconciler, stubber = stubbed_reconciler(schedule_windows=windows)

    expect_describe(stubber, state)
    _expect_action(stubber, action)
    if command == "start":
        reconciler.start("tester")
    elif command == "stop":
        reconciler.stop("tester")
    result = reconciler.run(Trigger(REQUEST if command in ("start", "stop") else PERIODIC))

    stubber.assert_no_pending_responses()
    assert result.action == action
    expected_desired = ON if command in ("start", "reconcile-on") else OFF
    assert result.desired.state == expected_desired


@pytest.mark.parametrize("state", ["InService", "UpdateRollbackFailed"])
def test_new_config_moves_running_endpoint(aws, state):
    reconciler, stubber = stubbed_reconciler(config_name=CONFIG_B)

    expect_describe(stubber, state, config=CONFIG_A)
    expect_update(stubber, CONFIG_B)
    reconciler.start("tester")
    result = reconciler.run(Trigger(REQUEST))

    stubber.assert_no_pending_responses()
    assert result.action == UPDATE
    assert result.endpoint_status == "Updating"


@pytest.mark.parametrize("state", ["Creating", "Updating", "SystemUpdating", "RollingBack"])
def test_stop_during_creating_carried_out(aws, state):
    clock = FakeClock()
    reconciler, stubber = stubbed_reconciler(clock)

    # The stop arrives while the endpoint is in a transitional state: nothing can be called yet.
    expect_describe(stubber, state)
    reconciler.stop("tester")
    first = reconciler.run(Trigger(REQUEST))
    stubber.assert_no_pending_responses()

    # Twenty minutes later, still in that state: the stop is still pending, not dropped.
    clock.advance(minutes=20)
    expect_describe(stubber, state)
    second = reconciler.run(Trigger(PERIODIC))
    stubber.assert_no_pending_responses()

    # The endpoint leaves that state: the next run (the state-change event) deletes it.
    clock.advance(minutes=2)
    expect_describe(stubber, "InService")
    expect_delete(stubber)
    third = reconciler.run(Trigger("endpoint-event"))
    stubber.assert_no_pending_responses()

    clock.advance(minutes=2)
    expect_describe(stubber, None)
    fourth = reconciler.run(Trigger(PERIODIC))
    stubber.assert_no_pending_responses()

    assert [first.action, second.action, third.action, fourth.action] == [WAIT, WAIT, DELETE, NOTHING]
    assert "carried out" in first.message
    assert fourth.endpoint_status == "absent"


def test_stop_during_creating_then_failed(aws):
    clock = FakeClock()
    reconciler, stubber = stubbed_reconciler(clock)

    expect_describe(stubber, "Creating")
    reconciler.stop("tester")
    reconciler.run(Trigger(REQUEST))

    clock.advance(minutes=60)
    expect_describe(stubber, "Failed", failure_reason="health check failed")
    expect_delete(stubber)
    result = reconciler.run(Trigger(PERIODIC))

    stubber.assert_no_pending_responses()
    assert result.action == DELETE


def test_delete_rejected_as_in_progress_waits(aws):
    reconciler, stubber = stubbed_reconciler()

    # The endpoint starts an update between the describe and the delete.
    expect_describe(stubber, "InService")
    stubber.add_client_error(
        "delete_endpoint",
        service_error_code="ValidationException",
        service_message="Cannot update in-progress endpoint \"arn:aws:sagemaker:eu-west-1:123456789012:endpoint/bloom-endpoint\".",
        http_status_code=400,
        expected_params={"EndpointName": "bloom-endpoint"},
    )
    reconciler.stop("tester")
    result = reconciler.run(Trigger(REQUEST))

    stubber.assert_no_pending_responses()
    assert result.action == WAIT
    assert reconciler.current_desired().state == OFF


@pytest.mark.parametrize("command", ["start", "stop"])
def test_unknown_state_makes_no_call(aws, command):
    reconciler, stubber = stubbed_reconciler()

    expect_describe(stubber, "Hibernating")
    getattr(reconciler, command)("tester")
    result = reconciler.run(Trigger(REQUEST))

    stubber.assert_no_pending_responses()
    assert result.action == WAIT
    assert "unknown state Hibernating" in result.message
