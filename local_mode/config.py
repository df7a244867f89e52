"""Configuration of local mode: the deployment's cdk.json context, read by the same code as ``cdk synth``.

``stacks.config.load_config`` and ``stacks.api_config.load_api_config`` validate it, so the usage plans, the
stage throttles and the function's bounds are the ones that the deployed API would get for the chosen profile.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from stacks.api_config import ApiConfig, load_api_config
from stacks.config import ConfigError, DeploymentConfig, load_config

CDK_JSON_NAME = "cdk.json"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Context keys that shape the API: names, usage plans and capacity. The hosting keys (instanceType, imageTag,
# tensorParallelDegree, ...) describe the deployed profile's GPU instance, not the profile that runs here.
API_CONTEXT_KEYS = ("namePrefix", "usagePlans", "invokeConcurrency", "instanceCount")


@dataclass(frozen=True)
class LocalConfig:
    deployment: DeploymentConfig
    api: ApiConfig
    # The cdk.json that the context came from, None when none was found.
    source: Path | None


def find_cdk_json() -> Path | None:
    """Return cdk.json of the working directory, else the repository's, else None."""
    for folder in (Path.cwd(), REPO_ROOT):
        path = folder / CDK_JSON_NAME
        if path.is_file():
            return path
    return None


def read_api_context(path: Path | None) -> dict[str, Any]:
    """Return the API's context keys from a cdk.json file."""
    if path is None:
        return {}
    try:
        context = json.loads(path.read_text()).get("context", {})
    except (OSError, ValueError, AttributeError) as error:
        raise ConfigError(f"{path} could not be read as a cdk.json file with a context object: {error}") from None
    return {key: context[key] for key in API_CONTEXT_KEYS if key in context}


def parse_context_option(text: str) -> tuple[str, str]:
    """Split a ``-c key=value`` option as the CDK CLI does. The value stays a string, as from the CDK CLI."""
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise ConfigError(f"context option {text!r} is invalid: expected key=value, for example -c namePrefix=trial")
    return key.strip(), value


def load_local_config(
    profile: str,
    overrides: Mapping[str, Any] | None = None,
    cdk_json: Path | None = None,
) -> LocalConfig:
    """Validate the API's context from cdk.json (found by ``find_cdk_json`` unless given), the profile and the
    overrides, or raise ``ConfigError`` naming the key and the value."""
    source = cdk_json if cdk_json is not None else find_cdk_json()
    context = {**read_api_context(source), "profile": profile, **(overrides or {})}
    deployment = load_config(context.get)
    return LocalConfig(deployment=deployment, api=load_api_config(deployment), source=source)
