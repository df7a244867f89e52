"""The endpoint as the control plane reads it from SageMaker, and the classification of SageMaker errors."""

from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import ClientError

ABSENT = "absent"

# States in which SageMaker rejects DeleteEndpoint and UpdateEndpoint ("Cannot update in-progress
# endpoint"); a request waits until the endpoint leaves them.
TRANSITIONAL_STATES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
# States from which DeleteEndpoint is accepted.
DELETABLE_STATES = frozenset({"InService", "Failed", "OutOfService", "UpdateRollbackFailed"})
ALL_STATES = TRANSITIONAL_STATES | DELETABLE_STATES
# States in which instances are provisioned and billed, as an estimate: a Failed endpoint has none.
BILLED_STATES = ALL_STATES - {"Failed"}


@dataclass(frozen=True)
class EndpointView:
    name: str
    status: str
    config_name: str
    creation_time: datetime
    last_modified_time: datetime
    failure_reason: str | None
    instance_count: int
    variant_names: tuple[str, ...]

    @property
    def billed(self) -> bool:
        return self.status in BILLED_STATES


def describe_endpoint(sagemaker, name: str) -> EndpointView | None:
    """Return the endpoint, or None if it does not exist."""
    try:
        response = sagemaker.describe_endpoint(EndpointName=name)
    except ClientError as error:
        if is_not_found(error):
            return None
        raise

    variants = response.get("ProductionVariants", [])
    instances = sum(variant.get("CurrentInstanceCount", 0) for variant in variants)
    return EndpointView(
        name=response["EndpointName"],
        status=response["EndpointStatus"],
        config_name=response.get("EndpointConfigName", ""),
        creation_time=response["CreationTime"],
        last_modified_time=response["LastModifiedTime"],
        failure_reason=response.get("FailureReason"),
        instance_count=instances or 1,
        variant_names=tuple(variant["VariantName"] for variant in variants),
    )


def _validation_message(error: ClientError) -> str | None:
    details = error.response.get("Error", {})
    if details.get("Code") not in ("ValidationException", "ValidationError"):
        return None
    return details.get("Message", "")


def is_not_found(error: ClientError) -> bool:
    """SageMaker reports a missing endpoint, config or model as a ValidationException "Could not find ..."."""
    message = _validation_message(error)
    return message is not None and "could not find" in message.lower()


def is_in_progress(error: ClientError) -> bool:
    """DeleteEndpoint or UpdateEndpoint during Creating, Updating and similar states."""
    message = _validation_message(error)
    return message is not None and "in-progress" in message.lower()


def is_already_existing(error: ClientError) -> bool:
    """CreateEndpoint for an endpoint name that exists: "Cannot create already existing endpoint"."""
    message = _validation_message(error)
    return message is not None and "already existing" in message.lower()


def error_text(error: ClientError) -> str:
    details = error.response.get("Error", {})
    return f"{details.get('Code', 'Error')}: {details.get('Message', str(error))}"
