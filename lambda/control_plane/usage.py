"""Running time and estimated cost of the endpoint this month, accumulated by each reconciler run.

Each run adds the time since the previous run if the endpoint was billed then, so the figure is an
estimate with the resolution of the run interval (a few minutes). Instance hours are multiplied by the
profile's on-demand price; the AWS bill is the authority.
"""

import logging
from datetime import datetime, timezone

from botocore.exceptions import ClientError

from control_plane.settings import METRICS_NAMESPACE

logger = logging.getLogger(__name__)


def month_start(now: datetime) -> datetime:
    return datetime(now.year, now.month, 1, tzinfo=timezone.utc)


def accumulate(usage: dict | None, now: datetime, instances: int) -> dict:
    """Return the usage record after a run at ``now`` that left ``instances`` billed instances."""
    month = f"{now:%Y-%m}"
    if not usage:
        return {"month": month, "seconds": 0.0, "instance_seconds": 0.0, "last_at": now.isoformat(),
                "instances": instances}

    last_at = datetime.fromisoformat(usage["last_at"])
    seconds = usage["seconds"] if usage["month"] == month else 0.0
    instance_seconds = usage["instance_seconds"] if usage["month"] == month else 0.0

    # The endpoint is assumed to have kept the state of the previous run until this one.
    previous_instances = usage.get("instances", 0)
    if previous_instances:
        counted_from = max(last_at, month_start(now))
        elapsed = max((now - counted_from).total_seconds(), 0.0)
        seconds += elapsed
        instance_seconds += elapsed * previous_instances

    return {"month": month, "seconds": seconds, "instance_seconds": instance_seconds,
            "last_at": now.isoformat(), "instances": instances}


def month_figures(usage: dict | None, now: datetime, hourly_price_usd: float) -> tuple[float, float]:
    """Return (hours running, estimated cost in USD) this month, counting up to ``now``."""
    if not usage:
        return 0.0, 0.0
    projected = accumulate(usage, now, 0)
    return projected["seconds"] / 3600, projected["instance_seconds"] / 3600 * hourly_price_usd


def publish_metrics(cloudwatch, deployment: str, running: bool, hours: float, cost: float, now: datetime) -> None:
    """Publish the dashboard's running flag, hours this month and estimated cost this month."""
    dimensions = [{"Name": "Deployment", "Value": deployment}]
    metrics = [
        ("EndpointRunning", 1.0 if running else 0.0, "None"),
        ("HoursRunningThisMonth", round(hours, 3), "None"),
        ("EstimatedCostThisMonthUsd", round(cost, 2), "None"),
    ]
    try:
        cloudwatch.put_metric_data(
            Namespace=METRICS_NAMESPACE,
            MetricData=[
                {"MetricName": name, "Dimensions": dimensions, "Timestamp": now, "Value": value, "Unit": unit}
                for name, value, unit in metrics
            ],
        )
    except ClientError as error:
        logger.warning("Publishing the usage metrics failed", extra={"error": str(error)})
