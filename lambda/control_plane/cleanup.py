"""Deletion of the Models and EndpointConfigs that the hosting stack left behind on replacement.

The hosting stack keeps an old EndpointConfig and Model when a deploy replaces them, because an endpoint
may still run on them or be moving away from them: SageMaker fails an update with "Could not find endpoint
configuration" when the old config disappears mid-update. They are deleted here, and only when all of the
following hold:

- the endpoint is absent, or InService on the current config (never Creating, Updating, RollingBack or
  another state in which it may still read the old config);
- the hosting stack is in a completed state, so no deploy or rollback can still need the old config;
- the resource carries the deployment's tag, is not the current config or one of its models, and is
  older than the current config (a config that a running deploy is creating right now is newer).
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime

from botocore.exceptions import ClientError

from control_plane.endpoint import EndpointView, error_text, is_not_found
from control_plane.settings import DEPLOYMENT_TAG

logger = logging.getLogger(__name__)

STABLE_STACK_STATES = frozenset(
    {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"}
)


@dataclass
class CleanupResult:
    deleted_configs: list[str] = field(default_factory=list)
    deleted_models: list[str] = field(default_factory=list)
    skipped_reason: str | None = None


def stack_is_stable(cloudformation, stack_name: str) -> bool:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error):
            return False
        raise
    return bool(stacks) and stacks[0]["StackStatus"] in STABLE_STACK_STATES


def delete_retained(
    sagemaker,
    cloudformation,
    *,
    deployment: str,
    hosting_stack_name: str,
    current_config: str | None,
    endpoint: EndpointView | None,
) -> CleanupResult:
    """Delete the retained configs and models that no endpoint uses or is moving away from."""
    if current_config is None:
        return CleanupResult(skipped_reason="no current endpoint config is published")
    if endpoint is not None and (endpoint.status != "InService" or endpoint.config_name != current_config):
        return CleanupResult(skipped_reason=f"the endpoint is {endpoint.status} on {endpoint.config_name}")
    if not stack_is_stable(cloudformation, hosting_stack_name):
        return CleanupResult(skipped_reason=f"stack {hosting_stack_name} is missing or not in a completed state")

    try:
        current = sagemaker.describe_endpoint_config(EndpointConfigName=current_config)
    except ClientError as error:
        if is_not_found(error):
            return CleanupResult(skipped_reason=f"the current endpoint config {current_config} does not exist")
        raise

    keep_models = {variant["ModelName"] for variant in current.get("ProductionVariants", [])}
    return _delete_tagged(
        sagemaker,
        deployment,
        keep_configs={current_config},
        keep_models=keep_models,
        created_before=current["CreationTime"],
    )


def delete_all_retained(sagemaker, *, deployment: str, keep_configs: set[str], keep_models: set[str]) -> CleanupResult:
    """Delete every tagged config and model except the ones given, once the endpoint is gone for good."""
    return _delete_tagged(sagemaker, deployment, keep_configs=keep_configs, keep_models=keep_models)


def _delete_tagged(
    sagemaker,
    deployment: str,
    *,
    keep_configs: set[str],
    keep_models: set[str],
    created_before: datetime | None = None,
) -> CleanupResult:
    result = CleanupResult()
    for summary in _list(sagemaker, "list_endpoint_configs", "EndpointConfigs"):
        name = summary["EndpointConfigName"]
        if name in keep_configs or not _older(summary, created_before):
            continue
        if _tagged(sagemaker, summary["EndpointConfigArn"], deployment) and _delete(
            sagemaker.delete_endpoint_config, EndpointConfigName=name
        ):
            result.deleted_configs.append(name)

    for summary in _list(sagemaker, "list_models", "Models"):
        name = summary["ModelName"]
        if name in keep_models or not _older(summary, created_before):
            continue
        if _tagged(sagemaker, summary["ModelArn"], deployment) and _delete(sagemaker.delete_model, ModelName=name):
            result.deleted_models.append(name)

    if result.deleted_configs or result.deleted_models:
        logger.info(
            "Deleted retained endpoint configs and models",
            extra={"endpoint_configs": result.deleted_configs, "models": result.deleted_models},
        )
    return result


def _list(sagemaker, operation: str, key: str):
    paginator = sagemaker.get_paginator(operation)
    for page in paginator.paginate():
        yield from page.get(key, [])


def _older(summary: dict, created_before: datetime | None) -> bool:
    return created_before is None or summary["CreationTime"] < created_before


def _tagged(sagemaker, arn: str, deployment: str) -> bool:
    tags = sagemaker.list_tags(ResourceArn=arn).get("Tags", [])
    return any(tag["Key"] == DEPLOYMENT_TAG and tag["Value"] == deployment for tag in tags)


def _delete(operation, **kwargs) -> bool:
    try:
        operation(**kwargs)
    except ClientError as error:
        if is_not_found(error):
            return False
        # A model still used by a config, for example, is left for the next run.
        logger.warning("Deleting a retained resource failed", extra={**kwargs, "error": error_text(error)})
        return False
    return True
