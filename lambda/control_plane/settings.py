"""Settings of one deployment's control plane, shared by the Lambda functions and the CLI.

The CDK app builds them from cdk.json, passes them to the functions as the ``CONTROL_SETTINGS`` environment
variable and publishes the same JSON as the SSM parameter ``<ssm prefix>/control/settings``, where the CLI
reads them. Both directions live here, so the field names cannot drift apart.
"""

import json
import os
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Mapping

from control_plane.schedule import Schedule, ScheduleError, parse_schedule

ENVIRONMENT_VARIABLE = "CONTROL_SETTINGS"
SETTINGS_PARAMETER_SUFFIX = "/control/settings"
METRICS_NAMESPACE = "Bloom/ControlPlane"
# Tag that the hosting stack puts on every Model and EndpointConfig of a deployment.
DEPLOYMENT_TAG = "bloom:deployment"


class SettingsError(ValueError):
    """The control settings are missing or invalid; the message names the value."""


@dataclass(frozen=True)
class ControlSettings:
    deployment: str
    endpoint_name: str
    table_name: str
    ssm_prefix: str
    hosting_stack_name: str
    reconciler_function_name: str
    # Price of one instance hour, from the model profile; cost figures are estimates from it.
    hourly_price_usd: float
    # Time from CreateEndpoint to InService when no start has been measured yet, for the CLI's ETA.
    expected_start_minutes: int
    idle_stop_minutes: int = 60
    manual_start_max_hours: float = 8.0
    topic_arn: str | None = None
    schedule_windows: list[dict[str, str]] = field(default_factory=list)
    schedule_timezone: str = "UTC"

    @cached_property
    def schedule(self) -> Schedule | None:
        return parse_schedule(self.schedule_windows, self.schedule_timezone)

    def parameter(self, name: str) -> str:
        """Return the full SSM parameter name of one of the hosting or storage stack's parameters."""
        return f"{self.ssm_prefix}/{name}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> "ControlSettings":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SettingsError(f"{source} is not valid JSON: {error.msg}") from None
        return cls.from_mapping(data, source)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str) -> "ControlSettings":
        known = set(cls.__dataclass_fields__)
        try:
            settings = cls(**{key: value for key, value in data.items() if key in known})
        except TypeError as error:
            raise SettingsError(f"{source} is incomplete: {error}") from None

        try:
            settings.schedule  # noqa: B018 - parsing validates the windows
        except ScheduleError as error:
            raise SettingsError(f"{source} has an invalid schedule: {error}") from None
        return settings

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> "ControlSettings":
        text = environ.get(ENVIRONMENT_VARIABLE)
        if not text:
            raise SettingsError(f"environment variable {ENVIRONMENT_VARIABLE} is missing")
        return cls.from_json(text, f"environment variable {ENVIRONMENT_VARIABLE}")


def settings_parameter_name(ssm_prefix: str) -> str:
    return f"{ssm_prefix}{SETTINGS_PARAMETER_SUFFIX}"
