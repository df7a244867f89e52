"""Idle check: has the endpoint served no invocation for the configured number of minutes?"""

import logging
from datetime import datetime, timedelta

from control_plane.endpoint import EndpointView

logger = logging.getLogger(__name__)

SAGEMAKER_NAMESPACE = "AWS/SageMaker"
# SageMaker publishes endpoint metrics per minute.
METRIC_PERIOD_SECONDS = 60


def invocations_since(cloudwatch, endpoint: EndpointView, start: datetime, end: datetime) -> float:
    """Return the sum of the Invocations metric over all variants of the endpoint between two instants."""
    total = 0.0
    for variant in endpoint.variant_names:
        response = cloudwatch.get_metric_statistics(
            Namespace=SAGEMAKER_NAMESPACE,
            MetricName="Invocations",
            Dimensions=[
                {"Name": "EndpointName", "Value": endpoint.name},
                {"Name": "VariantName", "Value": variant},
            ],
            StartTime=start,
            EndTime=end,
            Period=METRIC_PERIOD_SECONDS,
            Statistics=["Sum"],
        )
        total += sum(point["Sum"] for point in response.get("Datapoints", []))
    return total


def is_idle(cloudwatch, endpoint: EndpointView, busy_since: datetime, now: datetime, minutes: int) -> bool:
    """Return whether the endpoint has served nothing for ``minutes``.

    ``busy_since`` is when the endpoint became ready or was last asked to start: an endpoint is never idle
    before it has been available for the whole window. Minutes without a datapoint count as zero
    invocations, because SageMaker publishes no datapoint for a minute without traffic.
    NOTE: CloudWatch shows a minute's datapoint a minute or two late, so a call in the last two minutes of
    the window may not be seen yet.
    """
    window = timedelta(minutes=minutes)
    if minutes <= 0 or now - busy_since < window:
        return False

    count = invocations_since(cloudwatch, endpoint, now - window, now)
    logger.info("Idle check", extra={"invocations": count, "window_minutes": minutes})
    return count == 0
