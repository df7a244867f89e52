"""Deploy-time lifecycle of the endpoint: what the CloudFormation custom resource does on each event.

Placement and ordering:

- The custom resource sits in the hosting stack, next to the EndpointConfig and Model, and its properties
  contain the EndpointConfig's name. A deploy that replaces the config therefore sends it an Update with the
  new name. A cross-stack export of that name could not change while another stack imports it.
- Its provider is a Lambda function of the control stack, found by its deterministic name. The hosting
  stack depends on the control stack, so the function exists before the first Create and is deleted only
  after the hosting stack's Delete.
- The resource refers to the EndpointConfig, the Model and the SSM parameters, so CloudFormation creates and
  updates it after them and deletes it before them. On Delete it removes the endpoint and waits until
  SageMaker no longer lists it, so the config and model are deleted only once no endpoint uses them.
- A second resource of the same kind in the control stack ("control" scope) does the same Delete for a
  control stack that is destroyed on its own, so that no endpoint is left without a control plane.

Create and Update run the reconciler with the new config name. A running endpoint is moved to the new
config (UpdateEndpoint). The old config stays, because the hosting stack retains it on replacement, and the
reconciler deletes it only once the endpoint is InService on the new one. A stopped endpoint is left
alone, and the next start reads the new config.

When the resource has started an UpdateEndpoint, it responds only once SageMaker has finished it, for two
reasons. A failed update fails the deploy, so CloudFormation rolls back to the config that works instead of
leaving a broken one as the config of the next start. And in a rollback, CloudFormation deletes the new
config only after the endpoint has moved back off it. A blue/green update of a large model takes about as
long as a start, so such a deploy takes that long too.
"""

import logging
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from control_plane.cleanup import delete_all_retained
from control_plane.desired import OFF, SOURCE_CLOUDFORMATION, DesiredState, from_schedule
from control_plane.endpoint import describe_endpoint, is_not_found
from control_plane.reconciler import BUSY, DEPLOY, DESTROY, Reconciler, Trigger

logger = logging.getLogger(__name__)

HOSTING_SCOPE = "hosting"
CONTROL_SCOPE = "control"


class LifecycleError(ValueError):
    """The custom resource event is invalid; the message names the property."""


@dataclass(frozen=True)
class LifecycleRequest:
    request_type: str
    scope: str
    stack_id: str
    endpoint_config_name: str | None = None
    model_name: str | None = None

    @classmethod
    def from_event(cls, event: dict) -> "LifecycleRequest":
        properties = event.get("ResourceProperties") or {}
        request_type = event.get("RequestType")
        if request_type not in ("Create", "Update", "Delete"):
            raise LifecycleError(f"RequestType={request_type!r} is invalid: expected Create, Update or Delete")

        scope = properties.get("Scope", HOSTING_SCOPE)
        if scope not in (HOSTING_SCOPE, CONTROL_SCOPE):
            raise LifecycleError(f"Scope={scope!r} is invalid: expected {HOSTING_SCOPE} or {CONTROL_SCOPE}")
        if scope == HOSTING_SCOPE and not properties.get("EndpointConfigName"):
            raise LifecycleError("EndpointConfigName is missing from the resource properties")

        return cls(
            request_type=request_type,
            scope=scope,
            stack_id=event.get("StackId", "unknown-stack"),
            endpoint_config_name=properties.get("EndpointConfigName"),
            model_name=properties.get("ModelName"),
        )


@dataclass
class LifecycleOutcome:
    done: bool
    message: str
    data: dict = field(default_factory=dict)
    # The event failed: CloudFormation gets FAILED with the message.
    failed: bool = False


def deploy(reconciler: Reconciler, request: LifecycleRequest) -> LifecycleOutcome:
    """Create or Update: move a running endpoint to the deployed config; leave a stopped one alone."""
    if request.scope == CONTROL_SCOPE:
        return LifecycleOutcome(True, "The control stack's guard acts on Delete only.")

    record = reconciler.store.get_desired()
    if record is not None and record.source == SOURCE_CLOUDFORMATION and request.request_type == "Create":
        # The stop written when the hosting stack was last deleted has no expiry; a new hosting stack
        # hands control back to the schedule.
        now = reconciler.clock()
        reconciler.store.put_request(from_schedule(reconciler.settings.schedule, now))

    target = request.endpoint_config_name
    result = reconciler.run(Trigger(DEPLOY), current_config=target)
    if result.action == BUSY:
        return LifecycleOutcome(False, result.message)

    status = reconciler.store.get_status()
    if status.get("update_failed_config") == target:
        failure = (status.get("failure") or {}).get("reason", "SageMaker rolled the endpoint back")
        return LifecycleOutcome(True, f"The endpoint could not be moved to {target}: {failure}", failed=True)
    if (status.get("update") or {}).get("target") == target:
        return LifecycleOutcome(False, f"Waiting for the endpoint to move to {target}: {result.message}")
    return LifecycleOutcome(True, result.message, {"EndpointStatus": result.endpoint_status, "Action": result.action})


def destroy_step(reconciler: Reconciler, request: LifecycleRequest) -> LifecycleOutcome:
    """Delete: one step toward "no endpoint and no retained leftovers"; ``done`` once the endpoint is gone.

    Call it until it returns done. Each step asserts the stop again, so a schedule or a request that
    arrives during the wait cannot start the endpoint again.
    """
    record = reconciler.store.get_desired()
    if record is None or record.state != OFF or record.source != SOURCE_CLOUDFORMATION:
        stop = DesiredState(
            OFF,
            SOURCE_CLOUDFORMATION,
            f"cloudformation:{request.stack_id}",
            reconciler.clock(),
            None,
            f"the {request.scope} stack is being deleted",
        )
        reconciler.store.put_request(stop)

    result = reconciler.run(Trigger(DESTROY), current_config=request.endpoint_config_name)
    endpoint = describe_endpoint(reconciler.clients.sagemaker, reconciler.settings.endpoint_name)
    if endpoint is not None:
        return LifecycleOutcome(False, f"Waiting for the endpoint to be deleted: it is {endpoint.status}. {result.message}")

    keep_configs = {request.endpoint_config_name} if request.endpoint_config_name else set()
    keep_models = {request.model_name} if request.model_name else set()
    if request.scope == CONTROL_SCOPE:
        # The hosting stack may still exist: keep what it owns.
        current = reconciler.read_parameter("endpoint-config-name")
        if current:
            keep_configs.add(current)
            keep_models.update(_models_of(reconciler, current))

    cleanup = delete_all_retained(
        reconciler.clients.sagemaker,
        deployment=reconciler.settings.deployment,
        keep_configs=keep_configs,
        keep_models=keep_models,
    )
    return LifecycleOutcome(
        True,
        "The endpoint is deleted.",
        {
            "DeletedEndpointConfigs": ",".join(cleanup.deleted_configs),
            "DeletedModels": ",".join(cleanup.deleted_models),
        },
    )


def _models_of(reconciler: Reconciler, config_name: str) -> set[str]:
    try:
        response = reconciler.clients.sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
    except ClientError as error:
        if is_not_found(error):
            return set()
        raise
    return {variant["ModelName"] for variant in response.get("ProductionVariants", [])}
