"""Configuration of the on/off control plane, read from cdk.json and validated at synth time.

Keys (all optional): ``schedules`` (list of windows, see ``lambda/control_plane/schedule.py``),
``scheduleTimezone`` (IANA name, default UTC), ``idleStopMinutes`` (default 60, 0 turns the idle stop off),
``manualStartMaxHours`` (default 8) and ``notificationEmail``. The schedule parser is the Lambda package's
own, so that synth rejects exactly what the reconciler could not evaluate.
"""

import re
import sys
from dataclasses import dataclass
from typing import Any

from stacks.config import ConfigError, DeploymentConfig, _parse_int, parse_json_context
from stacks.profiles import ModelProfile
from stacks.invoke_api_package import LAMBDA_CODE_DIR

if str(LAMBDA_CODE_DIR) not in sys.path:
    sys.path.append(str(LAMBDA_CODE_DIR))

from control_plane.schedule import Schedule, ScheduleError, parse_schedule  # noqa: E402
from control_plane.settings import ControlSettings  # noqa: E402

DEFAULT_IDLE_STOP_MINUTES = 60
# Below 10 minutes CloudWatch's publishing delay of one to two minutes is a large part of the window.
IDLE_STOP_MINUTES_RANGE = (10, 1440)
DEFAULT_MANUAL_START_MAX_HOURS = 8
MANUAL_START_MAX_HOURS_RANGE = (1, 72)
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# How often the periodic reconcile runs; it also bounds how late a missed schedule event is healed.
RECONCILE_EVERY_MINUTES = 5


@dataclass(frozen=True)
class ControlOptions:
    schedule: Schedule | None
    schedule_windows: list[dict[str, str]]
    schedule_timezone: str
    idle_stop_minutes: int
    manual_start_max_hours: int
    notification_email: str | None


def load_control_options(config: DeploymentConfig) -> ControlOptions:
    extra = config.extra
    windows = parse_json_context("schedules", extra.get("schedules"))
    timezone_name = extra.get("scheduleTimezone") or "UTC"
    try:
        schedule = parse_schedule(windows, timezone_name)
    except ScheduleError as error:
        raise ConfigError(str(error)) from None

    return ControlOptions(
        schedule=schedule,
        schedule_windows=list(windows or []),
        schedule_timezone=timezone_name,
        idle_stop_minutes=_parse_idle_minutes(extra.get("idleStopMinutes", DEFAULT_IDLE_STOP_MINUTES)),
        manual_start_max_hours=_parse_int(
            "manualStartMaxHours",
            extra.get("manualStartMaxHours", DEFAULT_MANUAL_START_MAX_HOURS),
            *MANUAL_START_MAX_HOURS_RANGE,
        ),
        notification_email=_parse_email(extra.get("notificationEmail")),
    )


def _parse_idle_minutes(value: Any) -> int:
    number = _parse_int("idleStopMinutes", value)
    low, high = IDLE_STOP_MINUTES_RANGE
    if number != 0 and not low <= number <= high:
        raise ConfigError(f"idleStopMinutes={value!r} is out of range: allowed 0 (no idle stop) or {low}..{high}")
    return number


def _parse_email(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not EMAIL_PATTERN.match(value):
        raise ConfigError(f"notificationEmail={value!r} is invalid: expected one email address such as ops@example.com")
    return value


def estimated_start_minutes(profile: ModelProfile) -> int:
    """Estimate the minutes from CreateEndpoint to InService, for the CLI's ETA before a start was measured.

    Five minutes for the instance plus about a minute per 15 GB of weights to copy and load, which gives
    17 minutes for the 180 GB INT8 checkpoint, close to the 18 minutes of the original BLOOM-176B write-up.
    The reconciler records the real duration of each start, and the CLI uses that once there is one.
    """
    return 5 + round(profile.weights_size_gb / 15)


def function_name(config: DeploymentConfig, role: str) -> str:
    """Return the deterministic name of one of the control plane's functions, for references without exports."""
    return f"{config.name_prefix}-{role}"


RECONCILER = "reconciler"
ADMIN = "control-admin"
LIFECYCLE = "endpoint-lifecycle"


def control_settings(config: DeploymentConfig, options: ControlOptions, topic_arn: str | None) -> ControlSettings:
    return ControlSettings(
        deployment=config.name_prefix,
        endpoint_name=config.endpoint_name,
        table_name=f"{config.name_prefix}-control",
        ssm_prefix=config.ssm_prefix,
        hosting_stack_name=config.stack_name("hosting"),
        reconciler_function_name=function_name(config, RECONCILER),
        # NOTE: the profile's price is for its default instance type; an instanceType override is not priced.
        hourly_price_usd=config.hourly_price_usd,
        expected_start_minutes=estimated_start_minutes(config.profile),
        idle_stop_minutes=options.idle_stop_minutes,
        manual_start_max_hours=options.manual_start_max_hours,
        topic_arn=topic_arn,
        schedule_windows=options.schedule_windows,
        schedule_timezone=options.schedule_timezone,
    )
