"""Settings of the weight staging job, read from the deployment configuration.

Kept apart from the construct (``stacks/weight_staging.py``) because it does not import aws_cdk, so the CLI
reads the same settings without starting jsii.
"""

from dataclasses import dataclass
from typing import Any, Callable

from stacks.config import ConfigError, DeploymentConfig
from weights_staging.validation import validate_endpoint, validate_revision, validate_secret_name


@dataclass(frozen=True)
class StagingSettings:
    """The staging job's repository, revision, Hub endpoint and token secret."""

    project_name: str
    repository: str
    # Commit hash (or branch or tag) to stage. No profile has a default: a commit hash cannot be checked
    # here without contacting the Hub, and a branch such as "main" can move between two runs.
    revision: str | None
    # Base URL of the Hub. It has no default, so that nothing points at a remote host unless configured.
    hub_endpoint: str | None
    hub_token_secret_name: str | None


def staging_project_name(config: DeploymentConfig) -> str:
    return f"{config.name_prefix}-weights-staging"


def load_staging_settings(config: DeploymentConfig) -> StagingSettings:
    """Validate the staging context values; raises ConfigError naming the key and what is allowed."""
    extra = config.extra
    return StagingSettings(
        project_name=staging_project_name(config),
        repository=config.profile.hub_repository,
        revision=_optional("weightsRevision", extra.get("weightsRevision"), validate_revision),
        hub_endpoint=_optional("hubEndpoint", extra.get("hubEndpoint"), validate_endpoint),
        hub_token_secret_name=_optional(
            "hubTokenSecretName", extra.get("hubTokenSecretName"), validate_secret_name
        ),
    )


def _optional(key: str, value: Any, check: Callable[[object], str]) -> str | None:
    if value is None or value == "":
        return None
    try:
        return check(value)
    except ValueError as error:
        raise ConfigError(f"{key}={value!r} is invalid: {error}") from None
