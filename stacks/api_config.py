"""Configuration of the inference API: usage plans and keys, capacity, and the bounds of the invoke function.

The usage plans come from the ``usagePlans`` context key, a list such as::

    [{"name": "default", "rateLimit": 1, "burstLimit": 2, "quota": {"limit": 1000, "period": "DAY"},
      "keys": ["team"]}]

``rateLimit`` is in requests per second, ``burstLimit`` in requests, and ``quota`` is optional. Every key
belongs to exactly one plan, because API Gateway rejects a key in two plans of the same stage.
"""

import math
import re
from dataclasses import dataclass
from typing import Any

from stacks.config import ConfigError, DeploymentConfig, parse_bool, parse_json_context
from stacks.invoke_api_package import bounds as invoke_bounds
from stacks.invoke_api_package import timeouts as invoke_timeouts
from stacks.profiles import ModelProfile
from stacks.serving_properties import render_serving_properties

PLAN_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
QUOTA_PERIODS = ("DAY", "WEEK", "MONTH")

# Function instances kept for GET /status on top of the generation slots, so that a client can read the
# endpoint's state while every slot is busy.
STATUS_CONCURRENCY = 2

# GET /status costs one DescribeEndpoint call, so it gets its own, more generous throttle.
STATUS_RATE_LIMIT = 5
STATUS_BURST_LIMIT = 10

# Stage of the REST API: the first path segment of every URL of the API.
STAGE_NAME = "v1"

# Responses that API Gateway sends itself, rewritten into the API's error body: (error code, status, message
# or None for API Gateway's own message, Retry-After seconds or None).
GATEWAY_RESPONSES = {
    "INVALID_API_KEY": ("forbidden", "403", "Missing or invalid API key: send a key of this stage's usage plans in "
                        "the x-api-key header.", None),
    "MISSING_AUTHENTICATION_TOKEN": ("forbidden", "403", "No such route, or the route needs credentials that the "
                                     "request did not carry. Routes: POST /generate, GET /status.", None),
    "THROTTLED": ("throttled", "429", None, 5),
    "QUOTA_EXCEEDED": ("quota_exceeded", "429", None, 3600),
    "REQUEST_TOO_LARGE": ("payload_too_large", "413", None, None),
    "INTEGRATION_TIMEOUT": ("generation_timeout", "504", "The generation did not finish in time. Ask for fewer "
                            "max_new_tokens.", None),
    # API Gateway reports a throttled Lambda invocation (all reserved concurrency in use) as an integration
    # failure. NOTE: other integration failures, such as a missing invoke permission, get this response too.
    "INTEGRATION_FAILURE": ("throttled", "429", "Every generation slot of the model is busy. Retry after the "
                            "Retry-After header's seconds.", 5),
    "DEFAULT_4XX": ("invalid_request", None, None, None),
    "DEFAULT_5XX": ("internal_error", None, None, None),
}


@dataclass(frozen=True)
class UsagePlanConfig:
    name: str
    rate_limit: float
    burst_limit: int
    quota_limit: int | None
    quota_period: str | None
    keys: tuple[str, ...]


@dataclass(frozen=True)
class ApiConfig:
    """Everything the inference API construct needs beyond the deployment configuration."""

    usage_plans: tuple[UsagePlanConfig, ...]
    bounds: invoke_bounds.GenerationBounds
    # Generations that the endpoint runs at once, over all instances.
    generation_slots: int
    # None when reserveInvokeConcurrency is false: accounts whose Lambda concurrency quota is still 10 cannot
    # reserve any, because Lambda keeps 10 unreserved.
    reserved_concurrency: int | None
    # Stage-wide throttle, sized to the endpoint.
    rate_limit: float
    burst_limit: int

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(key for plan in self.usage_plans for key in plan.keys)


def profile_bounds(profile: ModelProfile) -> invoke_bounds.GenerationBounds:
    """Return the invoke function's generation bounds for a model profile."""
    return invoke_bounds.bounds_for_profile(
        profile=profile.name,
        max_new_tokens=profile.max_new_tokens,
        max_total_tokens=profile.max_total_tokens,
        max_num_beams=profile.max_num_beams,
        supported_parameters=profile.supported_parameters,
        seconds_per_token=profile.seconds_per_token,
    )


def load_api_config(config: DeploymentConfig) -> ApiConfig:
    """Validate the API's context keys and derive its capacity from the profile and the instance count."""
    bounds = profile_bounds(config.profile)
    slots = _generation_slots(config)

    # A request with the default max_new_tokens occupies a slot this long. More requests per second than the
    # slots can finish in that time only queue up in the container and then time out.
    typical_seconds = bounds.default_max_new_tokens * bounds.seconds_per_token
    return ApiConfig(
        usage_plans=parse_usage_plans(config.extra.get("usagePlans")),
        bounds=bounds,
        generation_slots=slots,
        reserved_concurrency=slots + STATUS_CONCURRENCY if _reserve_concurrency(config) else None,
        rate_limit=max(1, math.ceil(slots / typical_seconds)),
        burst_limit=slots + STATUS_CONCURRENCY,
    )


def invoke_function_environment(config: DeploymentConfig, api_config: ApiConfig) -> dict[str, str]:
    """Return the invoke function's environment: the endpoint name, the read timeout and the profile's bounds."""
    return {
        "ENDPOINT_NAME": config.endpoint_name,
        "SAGEMAKER_READ_TIMEOUT_SECONDS": str(invoke_timeouts.SAGEMAKER_READ_TIMEOUT_SECONDS),
        "POWERTOOLS_SERVICE_NAME": "invoke-api",
        **api_config.bounds.to_environment(),
    }


def _reserve_concurrency(config: DeploymentConfig) -> bool:
    return parse_bool("reserveInvokeConcurrency", config.extra.get("reserveInvokeConcurrency", True))


def _generation_slots(config: DeploymentConfig) -> int:
    """Return the concurrent generations of the endpoint: ``invokeConcurrency`` if set, else the rolling batch
    size of the profile's serving.properties (1 without rolling batch) times the instance count."""
    override = config.extra.get("invokeConcurrency")
    if override is not None:
        return _parse_positive_int("invokeConcurrency", override, maximum=1000)

    per_instance = 1
    for line in render_serving_properties(config).splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "option.max_rolling_batch_size":
            per_instance = int(value.strip())
    return per_instance * config.instance_count


def parse_usage_plans(value: Any) -> tuple[UsagePlanConfig, ...]:
    """Validate the ``usagePlans`` context value, or raise ``ConfigError`` naming the plan, the field and the value."""
    plans = parse_json_context("usagePlans", value)
    if not isinstance(plans, list) or not plans:
        raise ConfigError(
            f"usagePlans={value!r} is invalid: expected a non-empty list of plans such as "
            '[{"name": "default", "rateLimit": 1, "burstLimit": 2, "quota": {"limit": 1000, "period": "DAY"}, '
            '"keys": ["team"]}]'
        )

    parsed = tuple(_parse_plan(index, plan) for index, plan in enumerate(plans))
    _check_unique("usage plan name", [plan.name for plan in parsed], reason="each plan needs its own name")
    _check_unique(
        "API key name",
        [key for plan in parsed for key in plan.keys],
        reason="API Gateway rejects a key in two usage plans of the same stage",
    )
    return parsed


def _parse_plan(index: int, plan: Any) -> UsagePlanConfig:
    where = f"usagePlans[{index}]"
    if not isinstance(plan, dict):
        raise ConfigError(f"{where}={plan!r} is invalid: expected an object with name, rateLimit, burstLimit and keys")

    allowed = {"name", "rateLimit", "burstLimit", "quota", "keys"}
    unknown = sorted(set(plan) - allowed)
    if unknown:
        raise ConfigError(f"{where} has unknown field(s) {', '.join(unknown)}: allowed {', '.join(sorted(allowed))}")

    name = _parse_name(f"{where}.name", plan.get("name"))
    where = f"usagePlans[{name}]"
    quota_limit, quota_period = _parse_quota(where, plan.get("quota"))
    keys = plan.get("keys")
    if not isinstance(keys, list) or not keys:
        raise ConfigError(f"{where}.keys={keys!r} is invalid: expected a non-empty list of key names such as [\"team\"]")

    return UsagePlanConfig(
        name=name,
        rate_limit=_parse_rate(f"{where}.rateLimit", plan.get("rateLimit")),
        burst_limit=_parse_positive_int(f"{where}.burstLimit", plan.get("burstLimit"), maximum=5000),
        quota_limit=quota_limit,
        quota_period=quota_period,
        keys=tuple(_parse_name(f"{where}.keys[{position}]", key) for position, key in enumerate(keys)),
    )


def _parse_quota(where: str, quota: Any) -> tuple[int | None, str | None]:
    if quota is None:
        return None, None
    if not isinstance(quota, dict) or set(quota) != {"limit", "period"}:
        raise ConfigError(
            f"{where}.quota={quota!r} is invalid: expected {{\"limit\": <requests>, \"period\": \"DAY\" or \"MONTH\"}}"
        )

    period = quota["period"]
    if period not in QUOTA_PERIODS:
        raise ConfigError(f"{where}.quota.period={period!r} is invalid: allowed {', '.join(QUOTA_PERIODS)}")
    return _parse_positive_int(f"{where}.quota.limit", quota["limit"], maximum=None), period


def _parse_name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not PLAN_NAME_PATTERN.match(value):
        raise ConfigError(
            f"{key}={value!r} is invalid: use 2-32 lowercase letters, digits and hyphens, starting with a letter "
            "and not ending with a hyphen"
        )
    return value


def _parse_rate(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key}={value!r} is invalid: expected requests per second, a number above 0")
    return float(value)


def _parse_positive_int(key: str, value: Any, maximum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, str) and value.isdigit()):
        raise ConfigError(f"{key}={value!r} is invalid: expected a whole number of at least 1")

    number = int(value)
    if number < 1 or maximum is not None and number > maximum:
        allowed = f"1..{maximum}" if maximum is not None else "at least 1"
        raise ConfigError(f"{key}={value!r} is out of range: allowed {allowed}")
    return number


def _check_unique(what: str, names: list[str], reason: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"usagePlans: {what} {name!r} appears more than once, but {reason}")
        seen.add(name)
