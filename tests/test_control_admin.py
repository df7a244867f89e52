"""Admin routes: the template requires IAM authorization, and the handler records who asked."""

import json

import pytest
from botocore.stub import ANY, Stubber

from control_plane import admin_handler
from control_plane.desired import OFF, ON
from tests.control_plane_support import (
    aws,  # noqa: F401 - fixture
    clock,  # noqa: F401 - fixture
    create_deployment,
    make_reconciler,
    make_settings,
    shared_session,
)
from tests.invoke_fakes import LambdaContext, proxy_event

ADMIN_ROUTES = {("admin/start", "POST"), ("admin/stop", "POST"), ("admin/state", "GET")}
CALLER = "arn:aws:iam::123456789012:user/operator"


def admin_methods(template: dict) -> dict:
    """Return the admin methods by (path, HTTP method), resolving each method's resource path."""
    resources = {key: value for key, value in template["Resources"].items()
                 if value["Type"] == "AWS::ApiGateway::Resource"}

    def path_of(resource_id: str) -> str:
        resource = resources[resource_id]["Properties"]
        parent = resource["ParentId"]
        prefix = path_of(parent["Ref"]) + "/" if isinstance(parent, dict) and "Ref" in parent else ""
        return prefix + resource["PathPart"]

    methods = {}
    for logical_id, value in template["Resources"].items():
        if value["Type"] != "AWS::ApiGateway::Method":
            continue
        resource_id = value["Properties"]["ResourceId"].get("Ref")
        if resource_id and path_of(resource_id).startswith("admin"):
            methods[(path_of(resource_id), value["Properties"]["HttpMethod"])] = value
    return methods


@pytest.mark.synth
def test_admin_routes_require_iam_authorization(default_synth):
    methods = admin_methods(default_synth.templates["ApiStack"])

    assert set(methods) == ADMIN_ROUTES
    for route, method in methods.items():
        # API Gateway rejects a request without a valid SigV4 signature with 403 before it reaches the
        # function; an API key alone gets the caller nowhere.
        assert method["Properties"]["AuthorizationType"] == "AWS_IAM", route
        assert method["Properties"]["ApiKeyRequired"] is False, route
        assert method["Properties"]["Integration"]["Type"] == "AWS_PROXY", route


@pytest.mark.synth
def test_admin_function_invoked_by_routes(default_synth):
    template = default_synth.templates["ApiStack"]
    permissions = [
        value["Properties"] for value in template["Resources"].values()
        if value["Type"] == "AWS::Lambda::Permission" and "bloom-control-admin" in json.dumps(value["Properties"])
    ]

    assert len(permissions) == 3
    for permission in permissions:
        assert permission["Principal"] == "apigateway.amazonaws.com"
        source = json.dumps(permission["SourceArn"])
        assert "/admin/" in source
        assert "test-invoke-stage" not in source


@pytest.mark.synth
def test_admin_integration_timeouts_ordered(default_synth):
    methods = admin_methods(default_synth.templates["ApiStack"])
    (function,) = [
        value["Properties"] for value in default_synth.templates["ControlStack"]["Resources"].values()
        if value["Type"] == "AWS::Lambda::Function" and value["Properties"]["FunctionName"] == "bloom-control-admin"
    ]

    for method in methods.values():
        assert function["Timeout"] * 1000 < method["Properties"]["Integration"]["TimeoutInMillis"] <= 29000


# Handler


ADMIN_CONTEXT = LambdaContext(
    function_name="bloom-control-admin",
    invoked_function_arn="arn:aws:lambda:eu-west-1:123456789012:function:bloom-control-admin",
)


def api_event(method: str, path: str, body: dict | str | None = None) -> dict:
    """Build an IAM-authorized proxy event: API Gateway puts the signer's ARN in the identity."""
    event = proxy_event(method, path, body if isinstance(body, str) or body is None else json.dumps(body))
    event["requestContext"]["identity"] = {"userArn": CALLER, "caller": "AIDAEXAMPLE", "sourceIp": "127.0.0.1"}
    return event


@pytest.fixture
def admin(aws, clock, monkeypatch):
    """The admin handler on moto, with a stubbed Lambda client that expects the reconciler's async invoke."""
    settings = make_settings()
    create_deployment(settings)
    lambda_client = shared_session().client("lambda")
    stubber = Stubber(lambda_client)
    stubber.activate()
    reconciler = make_reconciler(settings, clock)
    reconciler.clients.lambda_ = lambda_client
    monkeypatch.setattr(admin_handler, "reconciler", reconciler)
    return reconciler, stubber


def expect_reconciler_invoke(stubber: Stubber) -> None:
    stubber.add_response(
        "invoke",
        {"StatusCode": 202},
        {"FunctionName": "bloom-reconciler", "InvocationType": "Event", "Payload": ANY},
    )


def test_start_records_iam_caller(admin):
    reconciler, stubber = admin
    expect_reconciler_invoke(stubber)

    response = admin_handler.lambda_handler(api_event("POST", "/admin/start", {"hours": 2, "reason": "demo"}),
                                            ADMIN_CONTEXT)

    stubber.assert_no_pending_responses()
    body = json.loads(response["body"])
    assert response["statusCode"] == 202
    assert body["desired"]["state"] == ON
    assert body["desired"]["requested_by"] == CALLER
    assert body["desired"]["until"] == "2025-06-02T10:00:00+00:00"
    assert reconciler.store.get_desired().reason == "demo"


def test_stop_records_iam_caller(admin):
    reconciler, stubber = admin
    expect_reconciler_invoke(stubber)

    response = admin_handler.lambda_handler(api_event("POST", "/admin/stop"), ADMIN_CONTEXT)

    stubber.assert_no_pending_responses()
    assert response["statusCode"] == 202
    assert reconciler.store.get_desired().state == OFF
    assert reconciler.store.get_desired().requested_by == CALLER


def test_state_returns_report(admin):
    response = admin_handler.lambda_handler(api_event("GET", "/admin/state"), ADMIN_CONTEXT)

    body = json.loads(response["body"])
    assert response["statusCode"] == 200
    assert body["endpoint"]["status"] == "absent"
    assert body["desired"]["state"] == OFF


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ({"hours": "four"}, "hours='four' is invalid"),
        ({"hours": 100}, "manualStartMaxHours=8"),
        ({"reason": "x" * 201}, "at most 200 characters"),
    ],
)
def test_invalid_start_rejected(admin, body, fragment):
    reconciler, stubber = admin

    response = admin_handler.lambda_handler(api_event("POST", "/admin/start", body), ADMIN_CONTEXT)

    stubber.assert_no_pending_responses()
    assert response["statusCode"] == 400
    assert fragment in json.loads(response["body"])["message"]
    assert reconciler.store.get_desired() is None
