"""The reconciler: moves the SageMaker endpoint toward the desired state, from any endpoint state.

A run reads the desired state, the endpoint and its own status record, then makes at most one SageMaker
change (create, delete or update). It is idempotent: running it again with nothing changed makes no call
that changes anything. A DynamoDB lease keeps two runs from acting at once, so two starts within seconds
make one CreateEndpoint. A request that SageMaker cannot carry out yet (a stop while the endpoint is
Creating) stays in the desired state and is carried out by the first run after the endpoint leaves that
state: the SageMaker state-change event, the periodic run or the CLI's wait loop.

``decide`` contains the whole state table and has no side effects. ``Reconciler`` adds the I/O around it.
"""

import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Callable

from botocore.exceptions import ClientError

from control_plane import notify
from control_plane.cleanup import delete_retained
from control_plane.clients import AwsClients
from control_plane.desired import (
    OFF,
    ON,
    SOURCE_IDLE,
    SOURCE_MANUAL,
    DesiredState,
    resolve,
    start_request,
    stop_request,
)
from control_plane.endpoint import (
    ABSENT,
    ALL_STATES,
    TRANSITIONAL_STATES,
    EndpointView,
    describe_endpoint,
    error_text,
    is_already_existing,
    is_in_progress,
    is_not_found,
)
from control_plane.idle import is_idle
from control_plane.settings import DEPLOYMENT_TAG, ControlSettings
from control_plane.store import ControlStore, utc_now
from control_plane.usage import accumulate, month_figures, publish_metrics
from control_plane.weights import WeightsCheck, check_weights

logger = logging.getLogger(__name__)

# Actions of a run.
CREATE = "create"
DELETE = "delete"
UPDATE = "update"
WAIT = "wait"
NOTHING = "none"
BLOCKED = "blocked"
FAILED = "failed"
BUSY = "busy"

# Triggers of a run. Only periodic runs check for idleness, so that a run right after a start does not.
PERIODIC = "periodic"
SCHEDULE = "schedule"
REQUEST = "request"
ENDPOINT_EVENT = "endpoint-event"
DEPLOY = "deploy"
DESTROY = "destroy"
CLI = "cli"

# The lease outlives the longest run (the reconciler function's timeout is 2 minutes).
LEASE_SECONDS = 180
# A run repeats at most this often when a request arrives while it runs.
MAX_PASSES = 3



@dataclass(frozen=True)
class Trigger:
    kind: str
    # Scheduled time of a schedule event: the desired state is evaluated at this time or later.
    at: datetime | None = None


@dataclass(frozen=True)
class Plan:
    action: str
    message: str
    target_config: str | None = None


@dataclass
class ReconcileResult:
    desired: DesiredState
    endpoint_status: str
    action: str
    message: str
    endpoint_config: str | None = None
    notifications: list[tuple[str, str]] = field(default_factory=list)
    # Actions of all passes of the run; ``action`` is the last one.
    actions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "desired": self.desired.to_dict(),
            "endpoint_status": self.endpoint_status,
            "action": self.action,
            "message": self.message,
            "endpoint_config": self.endpoint_config,
        }


def blocking_failure(status: dict, desired: DesiredState) -> dict | None:
    """Return the recorded failure that blocks a new CreateEndpoint for this desired version, if any.

    A failed start is not retried for the same request, so that a quota or capacity error does not turn
    into a CreateEndpoint every few minutes. A new request (a start, the next schedule window) retries.
    """
    failure = status.get("failure")
    if failure and failure.get("blocks") and failure.get("desired_version") == desired.version:
        return failure
    return None


def decide(
    desired: DesiredState,
    endpoint: EndpointView | None,
    current_config: str | None,
    status: dict,
) -> Plan:
    """Return the one action that moves the endpoint toward the desired state, without side effects."""
    want = desired.state
    if endpoint is None:
        if want == OFF:
            return Plan(NOTHING, "The endpoint is stopped.")
        if current_config is None:
            return Plan(BLOCKED, "No endpoint config is published: deploy the hosting stack first.")
        failure = blocking_failure(status, desired)
        if failure:
            return Plan(
                BLOCKED,
                f"The last start failed ({failure['reason']}). It is not retried for the same request: "
                "run `bloomctl start` to try again.",
            )
        return Plan(CREATE, f"Creating the endpoint with config {current_config}.", current_config)

    state = endpoint.status
    if state not in ALL_STATES:
        return Plan(WAIT, f"The endpoint is in the unknown state {state}; no action taken.")
    if state in TRANSITIONAL_STATES:
        if want == OFF:
            return Plan(WAIT, f"The stop waits until the endpoint leaves {state}; it is carried out then.")
        if state == "Deleting":
            return Plan(WAIT, "The endpoint is being deleted; it is created again once the deletion has finished.")
        return Plan(WAIT, f"The endpoint is {state}.")

    if want == OFF:
        return Plan(DELETE, f"Deleting the endpoint ({state}).")

    if state in ("Failed", "OutOfService"):
        return Plan(DELETE, f"Deleting the {state} endpoint, so that it can be created again.")

    # InService or UpdateRollbackFailed: both serve traffic. A rejected UpdateEndpoint is recorded, not retried.
    if current_config and endpoint.config_name != current_config:
        if status.get("update_failed_config") == current_config:
            return Plan(
                NOTHING,
                f"The endpoint stays on {endpoint.config_name}: the update to {current_config} failed. "
                "Stop and start the endpoint, or deploy a corrected config.",
            )
        return Plan(UPDATE, f"Moving the endpoint from {endpoint.config_name} to {current_config}.", current_config)
    if state == "UpdateRollbackFailed":
        return Plan(NOTHING, "The endpoint serves a mix of configs after a failed update; stop and start it.")
    return Plan(NOTHING, "The endpoint is running.")


class Reconciler:
    def __init__(
        self,
        settings: ControlSettings,
        clients: AwsClients,
        *,
        store: ControlStore | None = None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        weights_check: Callable[..., WeightsCheck] = check_weights,
        lease_wait_seconds: float = 10.0,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.store = store or ControlStore(clients.dynamodb, settings.table_name)
        self.clock = clock
        self.sleep = sleep
        self.weights_check = weights_check
        self.lease_wait_seconds = lease_wait_seconds
        self.owner = f"reconciler-{uuid.uuid4()}"
        self.notifier = notify.Notifier(clients.sns, settings.topic_arn, settings.deployment, settings.endpoint_name)

    # Requests

    def start(self, requested_by: str, duration: timedelta | None = None, reason: str | None = None) -> DesiredState:
        desired = start_request(
            requested_by,
            self.clock(),
            duration,
            self.settings.manual_start_max_hours,
            reason,
            current=self.current_desired(),
        )
        return self._write_request(desired)

    def stop(self, requested_by: str, reason: str | None = None, source: str = SOURCE_MANUAL) -> DesiredState:
        desired = stop_request(requested_by, self.clock(), self.settings.schedule, reason, source)
        return self._write_request(desired)

    def _write_request(self, desired: DesiredState) -> DesiredState:
        written = self.store.put_request(desired)
        logger.info("Desired state requested", extra={"desired": written.to_dict()})
        return written

    def current_desired(self) -> DesiredState:
        """Return the desired state in effect now, without writing anything."""
        return resolve(self.store.get_desired(), self.settings.schedule, self.clock())[0]

    # Runs

    def run(self, trigger: Trigger, current_config: str | None = None) -> ReconcileResult:
        """Run the reconciler once, or return BUSY if another run holds the lease.

        ``current_config`` overrides the EndpointConfig name published in SSM. The deploy-time custom
        resource passes it, because it receives the new name in its properties.
        """
        if not self._acquire_lease():
            return ReconcileResult(
                self.current_desired(),
                "unknown",
                BUSY,
                "Another reconciler run is in progress; it runs again when it sees this request.",
            )

        self.notifier.sent.clear()
        actions = []
        try:
            for _ in range(MAX_PASSES):
                result = self._pass(trigger, current_config)
                actions.append(result.action)
                latest = self.store.get_desired()
                if latest is None or latest.version == result.desired.version:
                    break
                logger.info("The desired state changed during the run; running again")
            result.notifications = list(self.notifier.sent)
            result.actions = actions
            return result
        finally:
            self.store.release_lease(self.owner)

    def _acquire_lease(self) -> bool:
        deadline = time.monotonic() + self.lease_wait_seconds
        while True:
            if self.store.acquire_lease(self.owner, self.clock(), LEASE_SECONDS):
                return True
            if time.monotonic() >= deadline:
                logger.info("Lease held by another reconciler run")
                return False
            self.sleep(1.0)

    def _pass(self, trigger: Trigger, config_override: str | None) -> ReconcileResult:
        now = self.clock()
        desired = self._desired(now, trigger)
        endpoint = describe_endpoint(self.clients.sagemaker, self.settings.endpoint_name)
        status = self.store.get_status()
        current_config = config_override or self.read_parameter("endpoint-config-name")

        self._observe(status, endpoint, desired, now)
        if trigger.kind == PERIODIC:
            desired = self._stop_if_idle(desired, endpoint, now)

        plan = decide(desired, endpoint, current_config, status)
        result = self._execute(plan, desired, endpoint, status, now)
        if plan.action == NOTHING:
            self._cleanup(status, endpoint, current_config)

        self._record_usage(status, endpoint, result, now)
        status["last_run"] = {"at": now.isoformat(), "trigger": trigger.kind, "action": result.action,
                              "message": result.message}
        self.store.put_status(status)
        logger.info(
            "Reconciled",
            extra={"trigger": trigger.kind, "desired_state": desired.state, "desired_version": desired.version,
                   "endpoint_status": endpoint.status if endpoint else ABSENT, "action": result.action,
                   "result_message": result.message},
        )
        return result

    def _desired(self, now: datetime, trigger: Trigger) -> DesiredState:
        record = self.store.get_desired()
        at = max(now, trigger.at) if trigger.at else now
        desired, changed = resolve(record, self.settings.schedule, at)
        if not changed:
            return desired

        if self.store.replace_if_unchanged(desired, record.version if record else None):
            logger.info("Desired state derived from the schedule", extra={"desired": desired.to_dict()})
            return desired
        # A request was written between the read and the write, and the newer request wins.
        return self.store.get_desired()

    def read_parameter(self, name: str) -> str | None:
        try:
            response = self.clients.ssm.get_parameter(Name=self.settings.parameter(name))
        except ClientError as error:
            if error.response["Error"]["Code"] == "ParameterNotFound":
                return None
            raise
        return response["Parameter"]["Value"]

    # Observation: notifications and records of the changes since the previous run.

    def _observe(self, status: dict, endpoint: EndpointView | None, desired: DesiredState, now: datetime) -> None:
        current = endpoint.status if endpoint else ABSENT
        observed = status.get("observed") or {}
        previous = observed.get("status")
        if previous != current:
            status["observed"] = {"status": current, "since": now.isoformat()}
            self._on_transition(previous, current, endpoint, desired, status)
        self._check_update_outcome(status, endpoint)

    def _on_transition(
        self, previous: str | None, current: str, endpoint: EndpointView | None, desired: DesiredState, status: dict
    ) -> None:
        if current == "InService" and previous in (ABSENT, "Creating"):
            started = endpoint.last_modified_time - endpoint.creation_time
            status["last_start_seconds"] = round(started.total_seconds())
            status.pop("failure", None)
            self.notifier.send(
                notify.READY,
                f"The endpoint {endpoint.name} is InService on config {endpoint.config_name} after "
                f"{_minutes(started)}. Desired state: {desired.state} ({desired.reason}).",
            )
        elif current == "Failed":
            created = status.get("created") or {}
            reason = endpoint.failure_reason or "SageMaker gave no failure reason"
            self._record_failure(status, "endpoint", reason, created.get("desired_version", desired.version), True)
            self.notifier.send(
                notify.FAILED,
                f"The endpoint {endpoint.name} failed: {reason}. The control plane deletes it; the same start "
                "is not retried automatically. Run `bloomctl start` to try again.",
            )
        elif current in ("OutOfService", "UpdateRollbackFailed"):
            reason = endpoint.failure_reason or "SageMaker gave no failure reason"
            self._record_failure(status, "endpoint", f"{current}: {reason}", desired.version, False)
            self.notifier.send(notify.FAILED, f"The endpoint {endpoint.name} is {current}: {reason}.")
        elif current == ABSENT and previous not in (None, ABSENT):
            name = self.settings.endpoint_name
            if previous == "Failed":
                self.notifier.send(notify.STOPPED, f"The failed endpoint {name} is deleted and no longer billed.")
                return
            idle = desired.state == OFF and desired.source == SOURCE_IDLE
            kind = notify.IDLE_STOPPED if idle else notify.STOPPED
            self.notifier.send(kind, f"The endpoint {name} is deleted and no longer billed. Reason: {desired.reason}.")

    def _check_update_outcome(self, status: dict, endpoint: EndpointView | None) -> None:
        update = status.get("update")
        if not update:
            return
        if endpoint is None:
            status.pop("update")
            return
        if endpoint.status not in ("InService", "UpdateRollbackFailed"):
            return

        target = update["target"]
        if endpoint.status == "InService" and endpoint.config_name == target:
            logger.info("Endpoint update finished", extra={"endpoint_config": target})
            status.pop("update")
        elif endpoint.last_modified_time > datetime.fromisoformat(update["at"]):
            reason = endpoint.failure_reason or "SageMaker rolled the endpoint back"
            self._fail_update(status, target, reason)
            status.pop("update")

    def _fail_update(self, status: dict, target: str, reason: str) -> None:
        status["update_failed_config"] = target
        self._record_failure(status, "update", f"update to {target} failed: {reason}", None, False)
        self.notifier.send(
            notify.FAILED,
            f"Moving the endpoint {self.settings.endpoint_name} to config {target} failed: {reason}. It keeps "
            "serving its previous config, which is kept; the update is not retried until a new config is deployed.",
        )

    def _record_failure(self, status: dict, kind: str, reason: str, desired_version: int | None, blocks: bool) -> None:
        status["failure"] = {
            "kind": kind,
            "reason": reason,
            "at": self.clock().isoformat(),
            "desired_version": desired_version,
            "blocks": blocks,
        }
        logger.error("Endpoint failure recorded", extra={"failure_kind": kind, "reason": reason})

    def _stop_if_idle(self, desired: DesiredState, endpoint: EndpointView | None, now: datetime) -> DesiredState:
        minutes = self.settings.idle_stop_minutes
        if desired.state != ON or endpoint is None or endpoint.status != "InService" or minutes <= 0:
            return desired

        busy_since = max(endpoint.last_modified_time, desired.requested_at)
        if not is_idle(self.clients.cloudwatch, endpoint, busy_since, now, minutes):
            return desired

        stop = stop_request(
            "idle-check", now, self.settings.schedule, f"no invocations for {minutes} minutes", SOURCE_IDLE
        )
        stop = replace(stop, version=desired.version + 1)
        if not self.store.replace_if_unchanged(stop, desired.version):
            return self.store.get_desired()
        logger.info("Idle endpoint: stop requested", extra={"desired": stop.to_dict()})
        return stop

    # Actions

    def _execute(
        self, plan: Plan, desired: DesiredState, endpoint: EndpointView | None, status: dict, now: datetime
    ) -> ReconcileResult:
        observed = endpoint.status if endpoint else ABSENT
        config = endpoint.config_name if endpoint else None
        if plan.action == CREATE:
            return self._create(plan, desired, status, now)
        if plan.action == DELETE:
            return self._delete(plan, desired, endpoint, status, now)
        if plan.action == UPDATE:
            return self._update(plan, desired, endpoint, status, now)
        return ReconcileResult(desired, observed, plan.action, plan.message, config)

    def _create(self, plan: Plan, desired: DesiredState, status: dict, now: datetime) -> ReconcileResult:
        config = plan.target_config
        checked = self._check_before_create(desired, config, status)
        if isinstance(checked, ReconcileResult):
            return checked

        sagemaker = self.clients.sagemaker
        try:
            sagemaker.create_endpoint(
                EndpointName=self.settings.endpoint_name,
                EndpointConfigName=config,
                Tags=[{"Key": DEPLOYMENT_TAG, "Value": self.settings.deployment}],
            )
        except ClientError as error:
            if is_already_existing(error):
                # Another client created it between the describe and the create, so nothing is left to do.
                return ReconcileResult(desired, "Creating", NOTHING, "The endpoint already exists.", config)
            reason = error_text(error)
            self._record_failure(status, "create", reason, desired.version, True)
            self.notifier.send(
                notify.FAILED,
                f"CreateEndpoint for {self.settings.endpoint_name} failed: {reason}. It is not retried for the "
                "same request; run `bloomctl start` to try again.",
            )
            return ReconcileResult(desired, ABSENT, FAILED, f"CreateEndpoint failed: {reason}", config)

        status["created"] = {
            "at": now.isoformat(),
            "desired_version": desired.version,
            "config": config,
            "instances": checked,
        }
        status.pop("failure", None)
        return ReconcileResult(desired, "Creating", CREATE, plan.message, config)

    def _check_before_create(self, desired: DesiredState, config: str, status: dict) -> ReconcileResult | int:
        """Check the weights and the config before a CreateEndpoint.

        Return a BLOCKED result if one of them is missing, else the config's instance count.
        """
        bucket = self.read_parameter("model-bucket")
        prefix = self.read_parameter("weights-prefix")
        if bucket is None or prefix is None:
            message = "The model bucket or weights prefix is not published in SSM: deploy the storage and hosting stacks."
            return ReconcileResult(desired, ABSENT, BLOCKED, message, config)

        check = self.weights_check(self.clients.s3, bucket, prefix)
        if not check.ok:
            message = f"Not starting: {check.message}"
            notified = status.get("weights_notified")
            if notified != desired.version:
                status["weights_notified"] = desired.version
                self.notifier.send(notify.FAILED, message)
            return ReconcileResult(desired, ABSENT, BLOCKED, message, config)

        try:
            # SageMaker recommends reading the config before CreateEndpoint, which can otherwise fail on a
            # config created moments ago.
            response = self.clients.sagemaker.describe_endpoint_config(EndpointConfigName=config)
        except ClientError as error:
            if is_not_found(error):
                message = f"Endpoint config {config} does not exist yet; the start is tried again on the next run."
                return ReconcileResult(desired, ABSENT, BLOCKED, message, config)
            raise
        variants = response.get("ProductionVariants", [])
        return sum(variant.get("InitialInstanceCount", 1) for variant in variants) or 1

    def _delete(
        self, plan: Plan, desired: DesiredState, endpoint: EndpointView, status: dict, now: datetime
    ) -> ReconcileResult:
        try:
            self.clients.sagemaker.delete_endpoint(EndpointName=endpoint.name)
        except ClientError as error:
            if is_not_found(error):
                return ReconcileResult(desired, ABSENT, NOTHING, "The endpoint is already deleted.")
            if is_in_progress(error):
                logger.info("DeleteEndpoint rejected as in progress", extra={"error": error_text(error)})
                message = "The endpoint changed state before the delete; the stop is carried out on the next run."
                return ReconcileResult(desired, endpoint.status, WAIT, message, endpoint.config_name)
            raise

        status["deleted"] = {"at": now.isoformat(), "from_status": endpoint.status, "reason": desired.reason}
        return ReconcileResult(desired, "Deleting", DELETE, plan.message, endpoint.config_name)

    def _update(
        self, plan: Plan, desired: DesiredState, endpoint: EndpointView, status: dict, now: datetime
    ) -> ReconcileResult:
        target = plan.target_config
        try:
            self.clients.sagemaker.update_endpoint(EndpointName=endpoint.name, EndpointConfigName=target)
        except ClientError as error:
            if is_in_progress(error):
                logger.info("UpdateEndpoint rejected as in progress", extra={"error": error_text(error)})
                message = "The endpoint changed state before the update; it is moved on the next run."
                return ReconcileResult(desired, endpoint.status, WAIT, message, endpoint.config_name)
            self._fail_update(status, target, error_text(error))
            return ReconcileResult(desired, endpoint.status, FAILED, f"UpdateEndpoint failed: {error_text(error)}",
                                   endpoint.config_name)

        status["update"] = {"target": target, "from": endpoint.config_name, "at": now.isoformat()}
        return ReconcileResult(desired, "Updating", UPDATE, plan.message, target)

    # Housekeeping

    def _cleanup(self, status: dict, endpoint: EndpointView | None, current_config: str | None) -> None:
        """Delete retained configs and models once per deployed config, when nothing can still use them."""
        if current_config is None or status.get("cleaned_for_config") == current_config:
            return
        result = delete_retained(
            self.clients.sagemaker,
            self.clients.cloudformation,
            deployment=self.settings.deployment,
            hosting_stack_name=self.settings.hosting_stack_name,
            current_config=current_config,
            endpoint=endpoint,
        )
        if result.skipped_reason:
            logger.info("Retained configs kept", extra={"reason": result.skipped_reason})
            return
        status["cleaned_for_config"] = current_config

    def _record_usage(self, status: dict, endpoint: EndpointView | None, result: ReconcileResult, now: datetime) -> None:
        """Add the time since the previous run to this month's usage and publish the dashboard metrics."""
        instances = endpoint.instance_count if endpoint is not None and endpoint.billed else 0
        if result.action == CREATE:
            # Instances are billed from CreateEndpoint on, not from the next run that observes them.
            instances = status["created"]["instances"]
        status["usage"] = accumulate(status.get("usage"), now, instances)
        hours, cost = month_figures(status["usage"], now, self.settings.hourly_price_usd)
        publish_metrics(self.clients.cloudwatch, self.settings.deployment, instances > 0, hours, cost, now)


def _minutes(duration: timedelta) -> str:
    return f"{duration.total_seconds() / 60:.0f} minutes"
