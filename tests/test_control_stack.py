"""Template tests of the control stack and of the lifecycle resource it adds to the hosting stack."""

import json

import pytest
from aws_cdk.assertions import Match, Template

from stacks.config import ConfigError, load_config
from stacks.control_config import load_control_options
from tests.conftest import CDK_JSON_CONTEXT

pytestmark = pytest.mark.synth

OFFICE_HOURS = [{"name": "office-hours", "days": "MON-FRI", "start": "08:00", "stop": "18:00"}]


def control_template(result) -> Template:
    return Template.from_json(result.templates["ControlStack"])


def resources(template: dict, resource_type: str) -> dict:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == resource_type}


def test_desired_state_table_is_durable(default_synth):
    template = control_template(default_synth)

    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": Match.object_like(
                {
                    "TableName": "bloom-control",
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    "SSESpecification": {"SSEEnabled": True},
                }
            ),
            "DeletionPolicy": "Delete",
        },
    )


def test_topic_encrypted_and_tls_only(default_synth):
    template = control_template(default_synth)

    template.has_resource_properties(
        "AWS::SNS::Topic", {"TopicName": "bloom-endpoint-events", "KmsMasterKeyId": Match.any_value()}
    )
    template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": Match.object_like(
                {
                    "Statement": Match.array_with(
                        [
                            Match.object_like(
                                {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                            )
                        ]
                    )
                }
            )
        },
    )
    template.resource_count_is("AWS::SNS::Subscription", 0)


def test_email_subscription_from_config(synth):
    template = control_template(synth(notificationEmail="ops@example.com"))

    template.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"})


def test_functions_have_deterministic_names(default_synth):
    template = control_template(default_synth)

    for name, handler in (
        ("bloom-reconciler", "control_plane.reconcile_handler.lambda_handler"),
        ("bloom-endpoint-lifecycle", "control_plane.lifecycle_handler.lambda_handler"),
        ("bloom-control-admin", "control_plane.admin_handler.lambda_handler"),
    ):
        template.has_resource_properties(
            "AWS::Lambda::Function",
            {
                "FunctionName": name,
                "Handler": handler,
                "Environment": {"Variables": Match.object_like({"CONTROL_SETTINGS": Match.any_value()})},
            },
        )


def test_endpoint_state_changes_trigger_reconciler(default_synth):
    template = control_template(default_synth)

    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker Endpoint State Change"],
                "detail": {"EndpointName": ["bloom-endpoint"]},
            },
            "Targets": [Match.object_like({"RetryPolicy": {"MaximumRetryAttempts": 2}})],
        },
    )


def test_scheduler_role_invokes_only_reconciler(default_synth):
    template = default_synth.templates["ControlStack"]
    (role_id,) = [key for key, value in resources(template, "AWS::IAM::Role").items()
                  if "SchedulerRole" in key]
    policies = [value for value in resources(template, "AWS::IAM::Policy").values()
                if {"Ref": role_id} in value["Properties"]["Roles"]]

    (statement,) = policies[0]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Resource"]["Fn::GetAtt"][0].startswith("ControlPlaneReconcilerFunction")


def test_retained_configs_deleted_only_by_tag(default_synth):
    template = default_synth.templates["ControlStack"]
    statements = [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]

    deletes = [s for s in statements if "sagemaker:DeleteEndpointConfig" in json.dumps(s["Action"])]
    assert deletes, "no statement allows the cleanup of retained configs"
    for statement in deletes:
        assert statement["Condition"] == {"StringEquals": {"aws:ResourceTag/bloom:deployment": "bloom"}}


def test_guard_deletes_endpoint_with_control_stack(default_synth):
    template = control_template(default_synth)

    template.has_resource(
        "Custom::BloomEndpointLifecycle",
        {
            "Properties": Match.object_like({"Scope": "control", "EndpointName": "bloom-endpoint", "ServiceTimeout": "3600"}),
            "DependsOn": Match.array_with([Match.string_like_regexp("ControlPlaneTable")]),
        },
    )


def test_dashboard_shows_running_traffic_gpu_and_cost(default_synth):
    (dashboard,) = resources(default_synth.templates["ControlStack"], "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])

    for metric in ("EndpointRunning", "Invocations", "ModelLatency", "Invocation4XXErrors", "Invocation5XXErrors",
                   "GPUUtilization", "HoursRunningThisMonth", "EstimatedCostThisMonthUsd"):
        assert metric in body, metric


# The lifecycle resource in the hosting stack


def test_lifecycle_resource_follows_endpoint_config(default_synth):
    hosting = default_synth.templates["HostingStack"]
    (config_id,) = resources(hosting, "AWS::SageMaker::EndpointConfig")
    (model_id,) = resources(hosting, "AWS::SageMaker::Model")
    parameters = sorted(resources(hosting, "AWS::SSM::Parameter"))

    Template.from_json(hosting).has_resource(
        "Custom::BloomEndpointLifecycle",
        {
            "Properties": Match.object_like(
                {
                    "ServiceToken": {"Fn::Join": ["", Match.array_with([":function:bloom-endpoint-lifecycle"])]},
                    "EndpointConfigName": {"Fn::GetAtt": [config_id, "EndpointConfigName"]},
                    "ModelName": {"Fn::GetAtt": [model_id, "ModelName"]},
                    "Scope": "hosting",
                    "ServiceTimeout": "3600",
                }
            ),
            "DependsOn": parameters,
        },
    )


@pytest.mark.parametrize("instance_type", ["ml.p4de.24xlarge", "ml.p5.48xlarge"])
def test_config_change_replaces_config_for_lifecycle(synth, instance_type):
    """Changing a variant setting gives a new generated config name, which the lifecycle resource receives."""
    hosting = synth(instanceType=instance_type).templates["HostingStack"]
    ((config_id, config),) = resources(hosting, "AWS::SageMaker::EndpointConfig").items()
    (lifecycle,) = resources(hosting, "Custom::BloomEndpointLifecycle").values()

    assert "EndpointConfigName" not in config["Properties"]
    assert config["UpdateReplacePolicy"] == "Retain"
    assert config["Properties"]["ProductionVariants"][0]["InstanceType"] == instance_type
    assert lifecycle["Properties"]["EndpointConfigName"] == {"Fn::GetAtt": [config_id, "EndpointConfigName"]}


def test_no_cross_stack_exports(default_synth):
    for stack_id, template in default_synth.templates.items():
        assert "Fn::ImportValue" not in json.dumps(template), stack_id


def test_control_stack_deployed_first(default_synth):
    app = default_synth.app

    assert app.control in app.hosting.dependencies
    assert app.control in app.api.dependencies


def test_nag_clean_with_schedules_and_email(synth):
    report = synth(schedules=OFFICE_HOURS, scheduleTimezone="Europe/Berlin", notificationEmail="ops@example.com")

    (nag,) = [plugin for plugin in report.validation_report["pluginReports"] if plugin["pluginName"] == "AwsSolutions"]
    assert nag["violations"] == []


# Configuration checks


def config_with(**context):
    values = {**CDK_JSON_CONTEXT, **context}
    return load_config(values.get)


@pytest.mark.parametrize(
    ("context", "fragment"),
    [
        ({"scheduleTimezone": "Berlin"}, "scheduleTimezone: 'Berlin' is not an IANA time zone"),
        ({"schedules": [{"name": "x", "days": "MON", "start": "8", "stop": "18:00"}]}, "schedules[0].start: '8'"),
        ({"schedules": "[not json"}, "schedules='[not json' is not valid JSON"),
        ({"idleStopMinutes": 5}, "idleStopMinutes=5 is out of range: allowed 0 (no idle stop) or 10..1440"),
        ({"idleStopMinutes": "often"}, "idleStopMinutes='often' is invalid"),
        ({"manualStartMaxHours": 100}, "manualStartMaxHours=100 is out of range: allowed 1..72"),
        ({"notificationEmail": "ops"}, "notificationEmail='ops' is invalid"),
    ],
)
def test_invalid_control_config_rejected(context, fragment):
    with pytest.raises(ConfigError) as raised:
        load_control_options(config_with(**context))

    assert fragment in str(raised.value)


def test_control_config_defaults():
    options = load_control_options(config_with())

    assert options.schedule is None
    assert options.schedule_timezone == "UTC"
    assert options.idle_stop_minutes == 60
    assert options.manual_start_max_hours == 8
    assert options.notification_email is None


def test_schedules_given_as_json_string():
    options = load_control_options(config_with(schedules=json.dumps(OFFICE_HOURS), idleStopMinutes="0"))

    assert options.schedule.windows[0].name == "office-hours"
    assert options.idle_stop_minutes == 0
