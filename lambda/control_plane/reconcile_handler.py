"""Lambda handler of the reconciler: periodic runs, schedule events, SageMaker state changes, admin requests.

Every trigger runs the same reconciler. A schedule event carries its scheduled time, so a retried or late
event evaluates the schedule at that time or later, never earlier.
"""

from datetime import datetime

from control_plane.reconciler import ENDPOINT_EVENT, PERIODIC, REQUEST, SCHEDULE, Trigger
from control_plane.runtime import build_reconciler, configure_logging

logger = configure_logging()
reconciler = None


def parse_trigger(event: dict) -> Trigger:
    if event.get("source") == "aws.sagemaker":
        return Trigger(ENDPOINT_EVENT)

    kind = event.get("trigger")
    if kind == SCHEDULE:
        scheduled = event.get("scheduled_time")
        return Trigger(SCHEDULE, _parse_time(scheduled))
    if kind in (PERIODIC, REQUEST):
        return Trigger(kind)
    raise ValueError(f"unknown trigger {kind!r}: expected {PERIODIC}, {SCHEDULE}, {REQUEST} or a SageMaker event")


def _parse_time(value) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        logger.warning("Schedule event without a valid scheduled_time", extra={"scheduled_time": value})
        return None


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> dict:
    global reconciler
    if reconciler is None:
        reconciler = build_reconciler()

    trigger = parse_trigger(event)
    logger.append_keys(trigger=trigger.kind, window=event.get("window"))
    return reconciler.run(trigger).to_dict()
