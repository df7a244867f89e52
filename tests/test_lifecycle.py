"""Deploy-time lifecycle: the custom resource's Create, Update and Delete from every relevant endpoint state,
the cleanup of retained configs, and the handler's response to CloudFormation."""

import json
import threading
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from botocore.stub import Stubber

from control_plane import lifecycle_handler
from control_plane.desired import OFF, SOURCE_CLOUDFORMATION
from control_plane.lifecycle import LifecycleError, LifecycleRequest, deploy, destroy_step
from control_plane.reconciler import PERIODIC, Trigger
from control_plane.settings import DEPLOYMENT_TAG
from tests.control_plane_support import (
    CONFIG_A,
    CONFIG_B,
    CONFIG_C,
    DEPLOYMENT,
    ENDPOINT,
    MODEL_A,
    MODEL_B,
    MONDAY_MORNING,
    REGION,
    FakeClock,
    aws,  # noqa: F401 - fixture
    clock,  # noqa: F401 - fixture
    config_response,
    create_deployment,
    create_model_and_config,
    create_stable_hosting_stack,
    expect_delete,
    expect_describe,
    expect_update,
    make_reconciler,
    make_settings,
    put_parameter,
    shared_session,
    stubbed_reconciler,
)
from tests.invoke_fakes import LambdaContext

STACK_ID = "arn:aws:cloudformation:eu-west-1:123456789012:stack/bloom-hosting/1"


def hosting_event(request_type: str, config: str, model: str) -> dict:
    return {
        "RequestType": request_type,
        "StackId": STACK_ID,
        "RequestId": "request-1",
        "LogicalResourceId": "EndpointLifecycle",
        "ResponseURL": "http://127.0.0.1:1/unused",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:bloom-endpoint-lifecycle",
            "Scope": "hosting",
            "EndpointName": ENDPOINT,
            "EndpointConfigName": config,
            "ModelName": model,
        },
    }


def request(request_type: str, config: str = CONFIG_B, model: str = MODEL_B) -> LifecycleRequest:
    return LifecycleRequest.from_event(hosting_event(request_type, config, model))


def sagemaker_names():
    sagemaker = shared_session().client("sagemaker")
    configs = {item["EndpointConfigName"] for item in sagemaker.list_endpoint_configs()["EndpointConfigs"]}
    models = {item["ModelName"] for item in sagemaker.list_models()["Models"]}
    return configs, models


def deploy_config_b(settings, clock) -> None:
    """What a deploy that replaces the model and config does before the lifecycle resource runs."""
    clock.advance(minutes=1)
    create_model_and_config(CONFIG_B, MODEL_B)
    put_parameter(f"{settings.ssm_prefix}/endpoint-config-name", CONFIG_B)


# Deploy


@pytest.mark.parametrize(
    ("running", "deployed", "model"),
    [(CONFIG_A, CONFIG_B, MODEL_B), (CONFIG_B, CONFIG_A, MODEL_A)],
    ids=["deploy", "rollback"],
)
def test_deploy_while_running(aws, clock, running, deployed, model):
    """A deploy (or its rollback) moves the running endpoint and responds once the move has finished.

    In a rollback, CloudFormation deletes the config of the failed deploy right after the response, so the
    response must wait until the endpoint no longer runs on that config.
    """
    reconciler, stubber = stubbed_reconciler(clock)
    reconciler.start("alice")
    update = request("Update", deployed, model)

    # The running endpoint is moved, nothing is deleted, and the resource does not respond yet.
    expect_describe(stubber, "InService", config=running)
    expect_update(stubber, deployed)
    started = deploy(reconciler, update)
    stubber.assert_no_pending_responses()

    # While the endpoint is Updating, neither a periodic run nor the resource deletes anything.
    clock.advance(minutes=5)
    expect_describe(stubber, "Updating", config=running, modified=clock())
    during = reconciler.run(Trigger(PERIODIC))
    expect_describe(stubber, "Updating", config=running, modified=clock())
    waiting = deploy(reconciler, update)
    stubber.assert_no_pending_responses()

    # On the deployed config: the resource responds.
    clock.advance(minutes=15)
    expect_describe(stubber, "InService", config=deployed, modified=clock())
    finished = deploy(reconciler, update)
    stubber.assert_no_pending_responses()

    assert (started.done, waiting.done, finished.done) == (False, False, True)
    assert f"Waiting for the endpoint to move to {deployed}" in started.message
    assert during.action == "wait"
    assert finished.failed is False
    assert finished.data == {"EndpointStatus": "InService", "Action": "none"}


def test_failed_update_fails_deploy(aws, clock):
    reconciler, stubber = stubbed_reconciler(clock)
    reconciler.start("alice")
    update = request("Update")

    expect_describe(stubber, "InService", config=CONFIG_A)
    expect_update(stubber, CONFIG_B)
    deploy(reconciler, update)
    clock.advance(minutes=30)
    expect_describe(stubber, "InService", config=CONFIG_A, modified=clock(), failure_reason="health check failed")
    outcome = deploy(reconciler, update)
    stubber.assert_no_pending_responses()

    assert outcome.done is True
    assert outcome.failed is True
    assert "could not be moved to EndpointConfig-bbbb: update to EndpointConfig-bbbb failed" in outcome.message
    assert "health check failed" in outcome.message


def test_old_config_deleted_after_move(aws, clock):
    settings = make_settings(idle_stop_minutes=0)
    create_deployment(settings)
    create_stable_hosting_stack(settings)
    reconciler = make_reconciler(settings, clock)
    reconciler.start("alice")
    reconciler.run(Trigger(PERIODIC))  # moto: the endpoint is InService on config A at once

    deploy_config_b(settings, clock)
    reconciler.clients.sagemaker.delete_endpoint(EndpointName=ENDPOINT)  # moto has no UpdateEndpoint:
    reconciler.clients.sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=CONFIG_B)  # stand-in
    reconciler.run(Trigger(PERIODIC))
    configs, models = sagemaker_names()

    assert configs == {CONFIG_B}
    assert models == {MODEL_B}


def test_deploy_while_stopped(aws, clock):
    settings = make_settings(idle_stop_minutes=0)
    create_deployment(settings)
    create_stable_hosting_stack(settings)
    reconciler = make_reconciler(settings, clock)
    creates = []
    reconciler.clients.sagemaker.meta.events.register(
        "provide-client-params.sagemaker.CreateEndpoint", lambda **kwargs: creates.append(kwargs["params"])
    )

    deploy_config_b(settings, clock)
    outcome = deploy(reconciler, request("Update"))
    configs_after_deploy, _ = sagemaker_names()
    reconciler.start("alice")
    reconciler.run(Trigger(PERIODIC))

    assert outcome.done is True
    assert outcome.data["EndpointStatus"] == "absent"
    assert creates == [
        {"EndpointName": ENDPOINT, "EndpointConfigName": CONFIG_B, "Tags": [{"Key": DEPLOYMENT_TAG, "Value": DEPLOYMENT}]}
    ]
    # The stopped endpoint used nothing, so the old config went as soon as the stack was complete.
    assert configs_after_deploy == {CONFIG_B}


def test_deploy_during_update_keeps_configs(aws):
    """A deploy that replaces config B with C while the endpoint is still moving from A to B keeps A and B."""
    clock = FakeClock()
    reconciler, stubber = stubbed_reconciler(clock, config_name=CONFIG_C)
    create_stable_hosting_stack(reconciler.settings)
    reconciler.start("alice")

    # Still moving from A to B: no call except the describe, whatever the current config is.
    expect_describe(stubber, "Updating", config=CONFIG_A)
    moving = deploy(reconciler, request("Update", CONFIG_C, MODEL_B))
    stubber.assert_no_pending_responses()

    # On B now: moved on to C; B and A are kept while the endpoint moves away from B.
    clock.advance(minutes=20)
    expect_describe(stubber, "InService", config=CONFIG_B, modified=clock())
    expect_update(stubber, CONFIG_C)
    reconciler.run(Trigger(PERIODIC))
    stubber.assert_no_pending_responses()

    # On C: A and B go, C and its model stay.
    clock.advance(minutes=20)
    created = MONDAY_MORNING
    expect_describe(stubber, "InService", config=CONFIG_C, modified=clock())
    stubber.add_response("describe_endpoint_config", config_response(CONFIG_C, MODEL_B, created),
                         {"EndpointConfigName": CONFIG_C})
    listed = [config_response(name, "unused", created - timedelta(hours=hours)) for name, hours in
              ((CONFIG_A, 2), (CONFIG_B, 1), (CONFIG_C, 0))]
    stubber.add_response("list_endpoint_configs", {"EndpointConfigs": [
        {key: item[key] for key in ("EndpointConfigName", "EndpointConfigArn", "CreationTime")} for item in listed]})
    tagged = {"Tags": [{"Key": DEPLOYMENT_TAG, "Value": DEPLOYMENT}]}
    for name in (CONFIG_A, CONFIG_B):
        stubber.add_response("list_tags", tagged,
                             {"ResourceArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint-config/{name.lower()}"})
        stubber.add_response("delete_endpoint_config", {}, {"EndpointConfigName": name})
    stubber.add_response("list_models", {"Models": [
        {"ModelName": MODEL_A, "ModelArn": "arn:aws:sagemaker:eu-west-1:123456789012:model/a",
         "CreationTime": created - timedelta(hours=3)},
        {"ModelName": MODEL_B, "ModelArn": "arn:aws:sagemaker:eu-west-1:123456789012:model/b",
         "CreationTime": created - timedelta(hours=1)},
    ]})
    stubber.add_response("list_tags", tagged, {"ResourceArn": "arn:aws:sagemaker:eu-west-1:123456789012:model/a"})
    stubber.add_response("delete_model", {}, {"ModelName": MODEL_A})
    final = reconciler.run(Trigger(PERIODIC))
    stubber.assert_no_pending_responses()

    assert moving.data["Action"] == "wait"
    assert final.action == "none"


def test_failed_update_not_retried(aws):
    clock = FakeClock()
    reconciler, stubber = stubbed_reconciler(clock, config_name=CONFIG_B)
    reconciler.start("alice")

    expect_describe(stubber, "InService", config=CONFIG_A)
    expect_update(stubber, CONFIG_B)
    deploy(reconciler, request("Update"))

    # SageMaker rolled the endpoint back to A: recorded and notified once, and B is not tried again.
    clock.advance(minutes=30)
    expect_describe(stubber, "InService", config=CONFIG_A, modified=clock(), failure_reason="health check failed")
    rolled_back = reconciler.run(Trigger(PERIODIC))
    clock.advance(minutes=5)
    expect_describe(stubber, "InService", config=CONFIG_A, modified=clock() - timedelta(minutes=5))
    later = reconciler.run(Trigger(PERIODIC))
    stubber.assert_no_pending_responses()

    assert [kind for kind, _ in rolled_back.notifications] == ["failed"]
    assert "health check failed" in rolled_back.notifications[0][1]
    assert later.action == "none"
    assert "update to EndpointConfig-bbbb failed" in later.message
    assert reconciler.store.get_status()["update_failed_config"] == CONFIG_B


def test_create_after_destroy_resumes_schedule(aws, clock):
    settings = make_settings(idle_stop_minutes=0)
    create_deployment(settings)
    reconciler = make_reconciler(settings, clock)
    destroy_step(reconciler, request("Delete", CONFIG_A, MODEL_A))
    assert reconciler.current_desired().source == SOURCE_CLOUDFORMATION

    deploy(reconciler, request("Create", CONFIG_A, MODEL_A))

    assert reconciler.current_desired().source == "default"


# Destroy


def test_destroy_while_running(aws, clock):
    settings = make_settings(idle_stop_minutes=0)
    create_deployment(settings)
    reconciler = make_reconciler(settings, clock)
    reconciler.start("alice")
    reconciler.run(Trigger(PERIODIC))
    deploy_config_b(settings, clock)
    create_model_and_config("EndpointConfig-other", "Model-other", tagged=False)

    outcome = destroy_step(reconciler, request("Delete", CONFIG_B, MODEL_B))
    configs, models = sagemaker_names()

    assert outcome.done is True
    assert reconciler.clients.sagemaker.list_endpoints()["Endpoints"] == []
    # Config A was retained by an earlier deploy and is gone; B belongs to CloudFormation, which deletes it
    # next. Resources of other deployments are untouched.
    assert configs == {CONFIG_B, "EndpointConfig-other"}
    assert models == {MODEL_B, "Model-other"}
    assert outcome.data["DeletedEndpointConfigs"] == CONFIG_A
    desired = reconciler.current_desired()
    assert desired.state == OFF
    assert desired.until is None


def test_destroy_while_creating(aws):
    clock = FakeClock()
    reconciler, stubber = stubbed_reconciler(clock)
    delete = request("Delete", CONFIG_A, MODEL_A)

    # Creating: DeleteEndpoint would be rejected, so the step only waits.
    expect_describe(stubber, "Creating")
    expect_describe(stubber, "Creating")
    first = destroy_step(reconciler, delete)
    stubber.assert_no_pending_responses()

    # A schedule window opens during the wait: the stop written by the Delete has no expiry and wins.
    clock.advance(minutes=15)
    expect_describe(stubber, "InService")
    expect_delete(stubber)
    expect_describe(stubber, "Deleting")
    second = destroy_step(reconciler, delete)
    stubber.assert_no_pending_responses()

    clock.advance(minutes=2)
    expect_describe(stubber, None)
    expect_describe(stubber, None)
    stubber.add_response("list_endpoint_configs", {"EndpointConfigs": []})
    stubber.add_response("list_models", {"Models": []})
    third = destroy_step(reconciler, delete)
    stubber.assert_no_pending_responses()

    assert (first.done, second.done, third.done) == (False, False, True)
    assert "Creating" in first.message
    assert "Deleting" in second.message


def test_control_stack_destroy_keeps_hosting(aws, clock):
    settings = make_settings(idle_stop_minutes=0)
    create_deployment(settings)
    reconciler = make_reconciler(settings, clock)
    reconciler.start("alice")
    reconciler.run(Trigger(PERIODIC))
    guard = LifecycleRequest.from_event(
        {"RequestType": "Delete", "StackId": STACK_ID, "ResourceProperties": {"Scope": "control", "EndpointName": ENDPOINT}}
    )

    outcome = destroy_step(reconciler, guard)
    configs, models = sagemaker_names()

    assert outcome.done is True
    assert reconciler.clients.sagemaker.list_endpoints()["Endpoints"] == []
    assert configs == {CONFIG_A}
    assert models == {MODEL_A}


def test_invalid_event_names_property():
    with pytest.raises(LifecycleError, match="EndpointConfigName"):
        LifecycleRequest.from_event({"RequestType": "Create", "ResourceProperties": {"Scope": "hosting"}})
    with pytest.raises(LifecycleError, match="RequestType"):
        LifecycleRequest.from_event({"RequestType": "Replace", "ResourceProperties": {}})


# Handler: the response to CloudFormation and the hand-over to the next invocation


class RecordingHandler(BaseHTTPRequestHandler):
    received: list = []

    def do_PUT(self):  # noqa: N802 - http.server's naming
        length = int(self.headers["Content-Length"])
        RecordingHandler.received.append((self.headers.get("Content-Type"), json.loads(self.rfile.read(length))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args):
        pass


@pytest.fixture
def response_server():
    RecordingHandler.received = []
    server = HTTPServer(("127.0.0.1", 0), RecordingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/response", RecordingHandler.received
    server.shutdown()
    server.server_close()


def test_response_sent_to_cloudformation(response_server):
    url, received = response_server
    event = {**hosting_event("Update", CONFIG_B, MODEL_B), "ResponseURL": url,
             "PhysicalResourceId": "bloom-endpoint-hosting-lifecycle"}

    lifecycle_handler.send_response(event, "SUCCESS", "moved", {"Action": "update"})

    content_type, body = received[0]
    assert content_type == ""
    assert body["Status"] == "SUCCESS"
    assert body["PhysicalResourceId"] == "bloom-endpoint-hosting-lifecycle"
    assert body["RequestId"] == "request-1"
    assert body["Data"] == {"Action": "update"}


def test_physical_id_is_fixed_on_create():
    body = lifecycle_handler.response_body(hosting_event("Create", CONFIG_A, MODEL_A), "SUCCESS", "ok")

    assert body["PhysicalResourceId"] == "bloom-endpoint-hosting-lifecycle"


@dataclass
class FakeContext(LambdaContext):
    function_name: str = "bloom-endpoint-lifecycle"
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:bloom-endpoint-lifecycle"
    remaining_ms: int = 900_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_handler_hands_long_delete_over(monkeypatch, response_server):
    url, received = response_server
    event = {**hosting_event("Delete", CONFIG_A, MODEL_A), "ResponseURL": url}
    monkeypatch.setattr(lifecycle_handler, "build_reconciler", lambda: object())
    monkeypatch.setattr(lifecycle_handler, "destroy_step", lambda *_args: lifecycle_handler.LifecycleOutcome(False, "Creating"))
    lambda_client = shared_session().client("lambda")
    stubber = Stubber(lambda_client)
    stubber.add_response("invoke", {"StatusCode": 202}, {
        "FunctionName": FakeContext.invoked_function_arn,
        "InvocationType": "Event",
        "Payload": ANY_PAYLOAD,
    })
    stubber.activate()
    monkeypatch.setattr(lifecycle_handler, "AwsClients", lambda: type("Clients", (), {"lambda_": lambda_client})())

    lifecycle_handler.lambda_handler(event, FakeContext(remaining_ms=30_000))

    stubber.assert_no_pending_responses()
    assert received == []  # no response yet: the next invocation sends it


def test_handler_sends_failed_outcome(monkeypatch, response_server):
    url, received = response_server
    event = {**hosting_event("Update", CONFIG_B, MODEL_B), "ResponseURL": url}
    monkeypatch.setattr(lifecycle_handler, "build_reconciler", lambda: object())
    monkeypatch.setattr(
        lifecycle_handler, "deploy", lambda *_args: lifecycle_handler.LifecycleOutcome(True, "rolled back", failed=True)
    )

    lifecycle_handler.lambda_handler(event, FakeContext())

    assert received[0][1]["Status"] == "FAILED"
    assert received[0][1]["Reason"] == "rolled back"


def test_handler_fails_on_error(monkeypatch, response_server):
    url, received = response_server
    event = {**hosting_event("Update", CONFIG_A, MODEL_A), "ResponseURL": url}

    def broken(*_args):
        raise RuntimeError("SageMaker is unreachable")

    monkeypatch.setattr(lifecycle_handler, "build_reconciler", lambda: object())
    monkeypatch.setattr(lifecycle_handler, "deploy", broken)

    lifecycle_handler.lambda_handler(event, FakeContext(remaining_ms=600_000))

    assert received[0][1]["Status"] == "FAILED"
    assert "SageMaker is unreachable" in received[0][1]["Reason"]


class _AnyPayload:
    def __eq__(self, other):
        payload = json.loads(other)
        return payload["BloomLifecycleAttempt"] == 2 and payload["RequestType"] == "Delete"


ANY_PAYLOAD = _AnyPayload()
