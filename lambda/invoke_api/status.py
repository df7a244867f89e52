"""The endpoint's state as clients see it: GET /status, and the 503 of POST /generate when it is not running.

The control plane creates and deletes the endpoint, so every SageMaker state, and no endpoint at all, is
normal here. This module maps them to a few client-facing states with a wait and a next step.
"""

from dataclasses import dataclass

from botocore.exceptions import ClientError

START_COMMAND = "bloomctl start --wait"

# SageMaker EndpointStatus values by client-facing state. InvokeEndpoint works while an endpoint is Updating,
# SystemUpdating or RollingBack: the old configuration keeps serving until the new one takes over.
STATES_BY_ENDPOINT_STATUS = {
    "Creating": "starting",
    "InService": "running",
    "Updating": "updating",
    "SystemUpdating": "updating",
    "RollingBack": "updating",
    "Deleting": "stopping",
    "Failed": "failed",
    "UpdateRollbackFailed": "failed",
    "OutOfService": "failed",
}

READY_STATES = ("running", "updating")

# Seconds a client should wait before retrying, by state. A start takes several minutes (BLOOM-176B took about
# 18 minutes from CreateEndpoint to InService in the original write-up), so polling faster only costs requests.
RETRY_AFTER_SECONDS = {"stopped": 300, "starting": 60, "stopping": 30, "failed": 300}


@dataclass(frozen=True)
class EndpointState:
    endpoint_name: str
    state: str
    # SageMaker's EndpointStatus, None when the endpoint does not exist.
    endpoint_status: str | None

    @property
    def ready(self) -> bool:
        return self.state in READY_STATES

    @property
    def retry_after_seconds(self) -> int | None:
        return RETRY_AFTER_SECONDS.get(self.state)

    @property
    def message(self) -> str:
        messages = {
            "stopped": f"The model is stopped. Start it with `{START_COMMAND}`, then retry. Loading takes several minutes.",
            "starting": f"The model is starting. Wait for it with `{START_COMMAND}` or poll GET /status.",
            "running": "The model is running.",
            "updating": "The model is running while its endpoint moves to a new configuration.",
            "stopping": f"The model is stopping. Start it again with `{START_COMMAND}` once it has stopped.",
            "failed": f"The endpoint is in state {self.endpoint_status}. Check the control plane's notifications, "
            f"then start it again with `{START_COMMAND}`.",
        }
        return messages[self.state]

    def to_body(self) -> dict:
        body = {
            "state": self.state,
            "ready": self.ready,
            "endpoint_name": self.endpoint_name,
            "message": self.message,
        }
        if self.endpoint_status is not None:
            body["endpoint_status"] = self.endpoint_status
        if self.retry_after_seconds is not None:
            body["retry_after_seconds"] = self.retry_after_seconds
        return body


def state_from_endpoint_status(endpoint_name: str, endpoint_status: str | None) -> EndpointState:
    """Map SageMaker's EndpointStatus (None when there is no endpoint) to the client-facing state."""
    if endpoint_status is None:
        return EndpointState(endpoint_name, "stopped", None)
    # A status that SageMaker adds later counts as not ready, so that clients wait instead of failing.
    return EndpointState(endpoint_name, STATES_BY_ENDPOINT_STATUS.get(endpoint_status, "starting"), endpoint_status)


def describe_endpoint_state(sagemaker_client, endpoint_name: str) -> EndpointState:
    """Return the endpoint's state from DescribeEndpoint, where a missing endpoint is "stopped"."""
    try:
        response = sagemaker_client.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as error:
        if is_endpoint_not_found(error):
            return state_from_endpoint_status(endpoint_name, None)
        raise
    return state_from_endpoint_status(endpoint_name, response["EndpointStatus"])


def is_endpoint_not_found(error: ClientError) -> bool:
    """Check whether SageMaker reports that the endpoint does not exist ("Could not find endpoint ..." or
    "Endpoint ... not found")."""
    if error.response.get("Error", {}).get("Code") not in ("ValidationException", "ValidationError"):
        return False
    message = error.response.get("Error", {}).get("Message", "").lower()
    return "could not find endpoint" in message or ("endpoint" in message and "not found" in message)
