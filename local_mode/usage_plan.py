"""API keys, usage plans and stage throttles of the local API front, as API Gateway applies them.

The plans come from the same ``usagePlans`` configuration as the deployed API (parsed by
``stacks.api_config.parse_usage_plans``). Each key gets a token bucket (``rateLimit`` tokens per second, at
most ``burstLimit`` of them) and, if its plan has one, a quota of requests per calendar period in UTC.

API Gateway applies the throttles in this order: the usage plan's, then the stage's or method's. Both only
shape traffic: API Gateway calls them best-effort, and so are they here.
"""

import enum
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Mapping

from stacks.api_config import UsagePlanConfig

Clock = Callable[[], float]
WallClock = Callable[[], datetime]

# Length of a generated development key, in bytes of randomness (43 characters in base64url).
GENERATED_KEY_BYTES = 32


class Outcome(enum.Enum):
    ALLOWED = "allowed"
    THROTTLED = "throttled"
    QUOTA_EXCEEDED = "quota_exceeded"


class TokenBucket:
    """Token bucket of API Gateway's throttles: ``rate`` tokens per second, at most ``capacity`` (the burst)."""

    def __init__(self, rate: float, capacity: int, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError(f"rate={rate!r} and capacity={capacity!r} are invalid: expected rate > 0, capacity >= 1")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = float(capacity)
        self._updated = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Take one token if there is one, and return whether the request may pass."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


def quota_period_start(period: str, moment: datetime) -> datetime:
    """Return the start of the quota period that contains ``moment``, in UTC.

    Periods are calendar periods, as for a usage plan without an offset: a day from midnight UTC, a week from
    Sunday (the AWS SDKs document offset 0 as Sunday), a month from its first day.
    """
    day = moment.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "DAY":
        return day
    if period == "WEEK":
        # weekday() counts from Monday = 0, so Sunday is 6.
        return day - timedelta(days=(day.weekday() + 1) % 7)
    if period == "MONTH":
        return day.replace(day=1)
    raise ValueError(f"quota period {period!r} is invalid: expected DAY, WEEK or MONTH")


class QuotaCounter:
    """Requests left of one key's quota in the current calendar period."""

    def __init__(self, limit: int, period: str, wall_clock: WallClock) -> None:
        self.limit = limit
        self.period = period
        self._wall_clock = wall_clock
        self._period_start = quota_period_start(period, wall_clock())
        self._used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Count one request if the quota allows it, and return whether the request may pass."""
        with self._lock:
            start = quota_period_start(self.period, self._wall_clock())
            if start != self._period_start:
                self._period_start, self._used = start, 0
            if self._used >= self.limit:
                return False
            self._used += 1
            return True

    @property
    def remaining(self) -> int:
        with self._lock:
            return self.limit - self._used


@dataclass(frozen=True)
class ApiKey:
    """One key of a usage plan: its configured name, its value and the id that the proxy event carries."""

    name: str
    plan: str
    value: str

    @property
    def key_id(self) -> str:
        # API Gateway key ids are random. A stable local id keeps the function's logs readable across runs.
        return f"local-{self.name}"


def build_api_keys(plans: Iterable[UsagePlanConfig], values: Mapping[str, str] | None = None) -> tuple[ApiKey, ...]:
    """Give every key of the plans a value: the one in ``values`` (by key name), else a new random one."""
    values = dict(values or {})
    keys = []
    for plan in plans:
        for name in plan.keys:
            value = values.pop(name, None) or secrets.token_urlsafe(GENERATED_KEY_BYTES)
            keys.append(ApiKey(name=name, plan=plan.name, value=value))

    if values:
        known = ", ".join(key.name for key in keys)
        raise ValueError(f"API key name(s) {', '.join(sorted(values))} are not in usagePlans: known keys are {known}")
    return tuple(keys)


class UsagePlans:
    """The keys of the stage and, per key, its plan's throttle and quota."""

    def __init__(
        self,
        plans: Iterable[UsagePlanConfig],
        keys: Iterable[ApiKey],
        clock: Clock = time.monotonic,
        wall_clock: WallClock | None = None,
    ) -> None:
        wall_clock = wall_clock or (lambda: datetime.now(timezone.utc))
        plans_by_name = {plan.name: plan for plan in plans}
        self.keys = tuple(keys)
        self._buckets: dict[str, TokenBucket] = {}
        self._quotas: dict[str, QuotaCounter] = {}
        for key in self.keys:
            plan = plans_by_name[key.plan]
            self._buckets[key.name] = TokenBucket(plan.rate_limit, plan.burst_limit, clock)
            if plan.quota_limit is not None:
                self._quotas[key.name] = QuotaCounter(plan.quota_limit, plan.quota_period, wall_clock)

    def find_key(self, value: str | None) -> ApiKey | None:
        """Return the key with this value, or None for a missing or unknown value."""
        if not value:
            return None
        found = None
        for key in self.keys:
            # Compare every key in constant time, so the response time does not reveal a matching prefix.
            if hmac.compare_digest(key.value.encode(), value.encode()):
                found = key
        return found

    def admit(self, key: ApiKey) -> Outcome:
        """Apply the key's throttle, then its quota. A throttled request does not count against the quota."""
        if not self._buckets[key.name].take():
            return Outcome.THROTTLED
        quota = self._quotas.get(key.name)
        if quota is not None and not quota.take():
            return Outcome.QUOTA_EXCEEDED
        return Outcome.ALLOWED

    def quota_remaining(self, key: ApiKey) -> int | None:
        quota = self._quotas.get(key.name)
        return None if quota is None else quota.remaining


class StageThrottle:
    """The stage's throttle for every method, with per-method throttles that replace it for some methods."""

    def __init__(
        self,
        rate_limit: float,
        burst_limit: int,
        method_limits: Mapping[tuple[str, str], tuple[float, int]] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._default = TokenBucket(rate_limit, burst_limit, clock)
        self._methods = {
            method: TokenBucket(rate, burst, clock) for method, (rate, burst) in (method_limits or {}).items()
        }

    def admit(self, resource: str, http_method: str) -> bool:
        """Take a token from the method's bucket, or from the stage's bucket for methods without their own."""
        return self._methods.get((resource, http_method), self._default).take()
