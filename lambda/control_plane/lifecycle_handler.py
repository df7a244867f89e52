"""Lambda handler of the endpoint lifecycle custom resource (see ``lifecycle`` for what each event does).

A plain Lambda-backed custom resource: the function sends its response to CloudFormation itself, as a PUT
of the result to the pre-signed ``ResponseURL``. A Delete can wait longer than one invocation may run (an endpoint can sit
in Creating for 20 minutes and more), so the function polls until shortly before its own timeout and then
invokes itself asynchronously with the same event. CloudFormation waits up to the resource's service
timeout (one hour) for the response. An Update that moves a running endpoint waits the same way.
"""

import json
import time
import urllib.request
from datetime import datetime, timezone

from control_plane.clients import AwsClients
from control_plane.lifecycle import HOSTING_SCOPE, LifecycleOutcome, LifecycleRequest, deploy, destroy_step
from control_plane.runtime import build_reconciler, configure_logging

logger = configure_logging()

POLL_SECONDS = 20
# Time reserved at the end of an invocation to hand over to the next one.
HANDOVER_MARGIN_SECONDS = 40
# CloudFormation gives up on a custom resource after its service timeout; chaining beyond it is useless.
MAX_WAIT_SECONDS = 3600
STARTED_AT_KEY = "BloomLifecycleStartedAt"
ATTEMPT_KEY = "BloomLifecycleAttempt"


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> None:
    started_at = event.get(STARTED_AT_KEY) or datetime.now(timezone.utc).isoformat()
    logger.append_keys(
        request_type=event.get("RequestType"),
        logical_resource_id=event.get("LogicalResourceId"),
        attempt=event.get(ATTEMPT_KEY, 1),
    )

    try:
        request = LifecycleRequest.from_event(event)
        outcome = run_until_done_or_handover(request, context, started_at)
    except Exception as error:  # noqa: BLE001 - without a response, CloudFormation waits an hour
        logger.exception("Lifecycle event failed")
        send_response(event, "FAILED", f"{type(error).__name__}: {error}"[:1000])
        return

    if outcome is None:
        hand_over(event, context, started_at)
        return
    send_response(event, "FAILED" if outcome.failed else "SUCCESS", outcome.message[:1000], outcome.data)


def run_until_done_or_handover(request: LifecycleRequest, context, started_at: str) -> LifecycleOutcome | None:
    """Return the finished outcome, or None when the next invocation must continue."""
    reconciler = build_reconciler()
    step = destroy_step if request.request_type == "Delete" else deploy

    while True:
        outcome = step(reconciler, request)
        logger.info("Lifecycle step", extra={"done": outcome.done, "step_message": outcome.message})
        if outcome.done:
            return outcome

        waited = (datetime.now(timezone.utc) - datetime.fromisoformat(started_at)).total_seconds()
        if waited > MAX_WAIT_SECONDS:
            raise TimeoutError(f"gave up after {waited:.0f} s: {outcome.message}")
        if context.get_remaining_time_in_millis() < (POLL_SECONDS + HANDOVER_MARGIN_SECONDS) * 1000:
            return None
        time.sleep(POLL_SECONDS)


def hand_over(event: dict, context, started_at: str) -> None:
    attempt = int(event.get(ATTEMPT_KEY, 1)) + 1
    payload = {**event, STARTED_AT_KEY: started_at, ATTEMPT_KEY: attempt}
    AwsClients().lambda_.invoke(
        FunctionName=context.invoked_function_arn, InvocationType="Event", Payload=json.dumps(payload).encode()
    )
    logger.info("Handed the lifecycle event over to the next invocation", extra={"next_attempt": attempt})


def response_body(event: dict, status: str, reason: str, data: dict | None = None) -> dict:
    properties = event.get("ResourceProperties") or {}
    # A fixed physical id: a changed id would make CloudFormation delete the "old" resource after an
    # update, and that Delete would delete the endpoint.
    scope = properties.get("Scope", HOSTING_SCOPE)
    physical_id = event.get("PhysicalResourceId") or f"{properties.get('EndpointName', 'endpoint')}-{scope}-lifecycle"
    return {
        "Status": status,
        "Reason": reason,
        "PhysicalResourceId": physical_id,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": False,
        "Data": data or {},
    }


def send_response(event: dict, status: str, reason: str, data: dict | None = None, timeout: float = 30) -> None:
    body = json.dumps(response_body(event, status, reason, data)).encode()
    # The pre-signed S3 URL was signed without a content type, so none may be sent.
    request = urllib.request.Request(
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - URL from CloudFormation
        logger.info("Response sent to CloudFormation", extra={"response_status": status, "http_status": response.status})
