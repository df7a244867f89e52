"""The reconciler's Lambda handler: the events it accepts, and a run built from its environment."""

from datetime import datetime, timezone

import pytest
from moto import mock_aws

from control_plane import reconcile_handler
from control_plane.reconciler import CREATE, ENDPOINT_EVENT, PERIODIC, REQUEST, SCHEDULE
from control_plane.settings import ENVIRONMENT_VARIABLE, ControlSettings, SettingsError
from tests.control_plane_support import create_deployment, make_settings, stage_weights
from tests.invoke_fakes import LambdaContext

SCHEDULER_EVENT = {
    "trigger": "schedule",
    "window": "office-hours",
    "action": "start",
    "scheduled_time": "2025-06-02T06:00:00Z",
}
SAGEMAKER_EVENT = {
    "source": "aws.sagemaker",
    "detail-type": "SageMaker Endpoint State Change",
    "detail": {"EndpointName": "bloom-endpoint", "EndpointStatus": "IN_SERVICE"},
}


RECONCILER_CONTEXT = LambdaContext(
    function_name="bloom-reconciler",
    invoked_function_arn="arn:aws:lambda:eu-west-1:123456789012:function:bloom-reconciler",
)


def test_schedule_event_carries_scheduled_time():
    trigger = reconcile_handler.parse_trigger(SCHEDULER_EVENT)

    assert trigger.kind == SCHEDULE
    assert trigger.at == datetime(2025, 6, 2, 6, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("event", "kind"),
    [({"trigger": "periodic"}, PERIODIC), ({"trigger": "request"}, REQUEST), (SAGEMAKER_EVENT, ENDPOINT_EVENT)],
)
def test_trigger_kinds_parsed(event, kind):
    assert reconcile_handler.parse_trigger(event).kind == kind


def test_unknown_trigger_rejected():
    with pytest.raises(ValueError, match="unknown trigger 'reboot'"):
        reconcile_handler.parse_trigger({"trigger": "reboot"})


def test_settings_missing_from_environment():
    with pytest.raises(SettingsError, match="CONTROL_SETTINGS is missing"):
        ControlSettings.from_environment({})


def test_invalid_schedule_in_settings_rejected():
    settings = make_settings(schedule_windows=[{"name": "x", "days": "MON", "start": "8", "stop": "18:00"}])

    with pytest.raises(SettingsError, match=r"schedules\[0\].start"):
        ControlSettings.from_json(settings.to_json(), "test settings")


def test_handler_runs_reconciler_from_environment(monkeypatch):
    with mock_aws():
        settings = make_settings(manual_start_max_hours=2)
        create_deployment(settings)
        stage_weights()
        monkeypatch.setenv(ENVIRONMENT_VARIABLE, settings.to_json())
        monkeypatch.setattr(reconcile_handler, "reconciler", None)
        reconcile_handler.build_reconciler().start("tester")

        result = reconcile_handler.lambda_handler({"trigger": "request"}, RECONCILER_CONTEXT)

    assert result["action"] == CREATE
    assert result["desired"]["requested_by"] == "tester"
    assert result["endpoint_status"] == "Creating"
