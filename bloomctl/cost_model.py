"""Running hours and cost of a deployment: schedule windows, manual starts under the idle policy, the instance
price, and the weights kept in S3.

Conventions:

- A week of the schedule is its wall-clock length: 08:00-18:00 counts 10 hours on every day, which is what the
  windows state. A week whose daylight-saving change falls inside a window runs an hour more or less; the real
  calendar walk (``weekly_hours``, ``irregular_weeks``) finds those weeks.
- A month is 365.25 / 12 / 7 = 4.348 weeks, the mean month of the Gregorian calendar, so always-on is 730.5 h.
- Scheduled hours are an upper bound: the idle stop also stops an idle endpoint inside a window, until the
  schedule's next start, which only lowers them.
- A manual start outside the windows runs until its requests end plus the idle stop's window and at most one
  more check interval, and never longer than ``manualStartMaxHours``, when it expires. With the idle stop off,
  it runs for the whole ``manualStartMaxHours``.

The functions are pure: no AWS call, no clock. Prices are passed in with their sources.
"""

import math
import sys
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

# The schedule model is the control plane's own (lambda/control_plane), so the estimate reads windows exactly as
# the reconciler evaluates them.
LAMBDA_CODE_DIR = Path(__file__).resolve().parents[1] / "lambda"
if str(LAMBDA_CODE_DIR) not in sys.path:
    sys.path.append(str(LAMBDA_CODE_DIR))

from control_plane.schedule import Schedule  # noqa: E402

HOURS_PER_WEEK = 7 * 24
# The mean Gregorian month (365.25 days / 12) in weeks.
WEEKS_PER_MONTH = 365.25 / 12 / 7

# S3 Standard in us-east-1, first 50 TB per month. Other regions differ.
S3_STANDARD_USD_PER_GB_MONTH = 0.023
S3_STANDARD_PRICE_SOURCE = "Amazon S3 pricing, S3 Standard, first 50 TB per month, us-east-1, as quoted in March 2026"

# Any Monday: the nominal week is walked in UTC, where no daylight-saving change moves the wall clock.
NOMINAL_WEEK_START = datetime(2024, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class HourlyPrice:
    usd: float
    source: str


@dataclass(frozen=True)
class IdlePolicy:
    """The control plane's stop rules that bound a manual start."""

    # Minutes without invocations before the endpoint stops; 0 turns the idle stop off.
    idle_stop_minutes: int
    # A manual start expires after this many hours.
    manual_start_max_hours: float
    # The idle check runs with the periodic reconcile, so a stop comes up to one interval after the idle window.
    check_interval_minutes: int

    def manual_start_hours(self, use_hours: float) -> float:
        """Return the upper bound of running hours of one manual start whose requests span ``use_hours``."""
        if use_hours < 0:
            raise ValueError(f"use_hours={use_hours} is negative")
        if self.idle_stop_minutes == 0:
            return self.manual_start_max_hours
        tail_hours = (self.idle_stop_minutes + self.check_interval_minutes) / 60
        return min(self.manual_start_max_hours, use_hours + tail_hours)


@dataclass(frozen=True)
class ScheduleHours:
    """Hours per week of a schedule in wall-clock time, and the starts that they take."""

    hours_per_week: float
    starts_per_week: int


@dataclass(frozen=True)
class IrregularWeek:
    """A week (from Monday 00:00 local time) whose real running hours differ from the nominal week's."""

    monday: date
    hours: float


@dataclass(frozen=True)
class CostEstimate:
    """The estimate for one deployment. Hours are per instance, and costs count every instance."""

    scheduled: ScheduleHours
    manual_starts_per_week: float
    manual_hours_per_start: float
    instance_count: int
    price: HourlyPrice
    weights_gb: float
    storage_usd_per_gb_month: float = S3_STANDARD_USD_PER_GB_MONTH

    @property
    def manual_hours_per_week(self) -> float:
        return self.manual_starts_per_week * self.manual_hours_per_start

    @property
    def running_hours_per_week(self) -> float:
        # Manual starts are assumed to fall outside the windows, and a week has 168 hours.
        return min(HOURS_PER_WEEK, self.scheduled.hours_per_week + self.manual_hours_per_week)

    @property
    def running_hours_per_month(self) -> float:
        return self.running_hours_per_week * WEEKS_PER_MONTH

    @property
    def always_on_hours_per_month(self) -> float:
        return HOURS_PER_WEEK * WEEKS_PER_MONTH

    @property
    def instance_usd_per_month(self) -> float:
        return self.running_hours_per_month * self.instance_count * self.price.usd

    @property
    def always_on_usd_per_month(self) -> float:
        return self.always_on_hours_per_month * self.instance_count * self.price.usd

    @property
    def saving_usd_per_month(self) -> float:
        return self.always_on_usd_per_month - self.instance_usd_per_month

    @property
    def saving_fraction(self) -> float:
        return 1 - self.running_hours_per_week / HOURS_PER_WEEK

    @property
    def storage_usd_per_month(self) -> float:
        return self.weights_gb * self.storage_usd_per_gb_month

    def to_dict(self) -> dict:
        return {
            "hours_per_week": {
                "scheduled": round(self.scheduled.hours_per_week, 3),
                "manual": round(self.manual_hours_per_week, 3),
                "running": round(self.running_hours_per_week, 3),
                "always_on": HOURS_PER_WEEK,
            },
            "hours_per_month": {
                "running": round(self.running_hours_per_month, 3),
                "always_on": round(self.always_on_hours_per_month, 3),
            },
            "weeks_per_month": round(WEEKS_PER_MONTH, 6),
            "starts_per_week": {"scheduled": self.scheduled.starts_per_week, "manual": self.manual_starts_per_week},
            "instance_count": self.instance_count,
            "hourly_price_usd": self.price.usd,
            "hourly_price_source": self.price.source,
            "usd_per_month": {
                "instances": round(self.instance_usd_per_month, 2),
                "always_on": round(self.always_on_usd_per_month, 2),
                "saving": round(self.saving_usd_per_month, 2),
                "storage": round(self.storage_usd_per_month, 2),
                "total": round(self.instance_usd_per_month + self.storage_usd_per_month, 2),
                "always_on_total": round(self.always_on_usd_per_month + self.storage_usd_per_month, 2),
            },
            "saving_fraction": round(self.saving_fraction, 6),
            "storage": {
                "weights_gb": self.weights_gb,
                "usd_per_gb_month": self.storage_usd_per_gb_month,
                "source": S3_STANDARD_PRICE_SOURCE,
            },
        }


def on_hours(schedule: Schedule | None, start: datetime, end: datetime) -> tuple[float, int]:
    """Walk real time from ``start`` to ``end``; return the hours that the schedule is on and its starts.

    A start is a change from off to on after ``start``. Both instants must be timezone-aware.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware datetimes")
    if schedule is None or end <= start:
        return 0.0, 0

    seconds = 0.0
    starts = 0
    at = start
    while at < end:
        is_on = schedule.is_on(at)
        change = schedule.next_change(at)
        segment_end = end if change is None else min(change.at, end)
        if is_on:
            seconds += (segment_end - at).total_seconds()
        if change is not None and change.on and change.at < end:
            starts += 1
        at = segment_end
    return seconds / 3600, starts


def nominal_week(schedule: Schedule | None) -> ScheduleHours:
    """Return the schedule's hours and starts in a week of wall-clock time, without daylight-saving changes."""
    if schedule is None:
        return ScheduleHours(hours_per_week=0.0, starts_per_week=0)

    in_utc = replace(schedule, timezone="UTC")
    hours, starts = on_hours(in_utc, NOMINAL_WEEK_START, NOMINAL_WEEK_START + timedelta(days=7))
    return ScheduleHours(hours_per_week=hours, starts_per_week=starts + _starts_at(in_utc, NOMINAL_WEEK_START))


def _starts_at(schedule: Schedule, instant: datetime) -> int:
    """Return 1 if the schedule turns on exactly at ``instant``, which ``on_hours`` does not count."""
    just_before = instant - timedelta(seconds=1)
    return int(schedule.is_on(instant) and not schedule.is_on(just_before))


def weekly_hours(schedule: Schedule | None, monday: date) -> float:
    """Return the real hours that the schedule is on in the week from ``monday`` 00:00 in its time zone."""
    if schedule is None:
        return 0.0
    zone = schedule.zone
    start = datetime.combine(monday, time(0), tzinfo=zone).astimezone(timezone.utc)
    end = datetime.combine(monday + timedelta(days=7), time(0), tzinfo=zone).astimezone(timezone.utc)
    return on_hours(schedule, start, end)[0]


def irregular_weeks(schedule: Schedule | None, first_monday: date, weeks: int = 53) -> list[IrregularWeek]:
    """Return the weeks from ``first_monday`` on whose real hours differ from the nominal week's.

    They are the weeks in which a daylight-saving change falls inside a window.
    """
    if first_monday.weekday() != 0:
        raise ValueError(f"{first_monday} is not a Monday")
    nominal = nominal_week(schedule).hours_per_week
    found = []
    for offset in range(weeks):
        monday = first_monday + timedelta(weeks=offset)
        hours = weekly_hours(schedule, monday)
        if not math.isclose(hours, nominal, abs_tol=1e-6):
            found.append(IrregularWeek(monday=monday, hours=hours))
    return found


def estimate_cost(
    schedule: Schedule | None,
    idle: IdlePolicy,
    price: HourlyPrice,
    *,
    instance_count: int,
    weights_gb: float,
    manual_starts_per_week: float = 0.0,
    manual_use_hours: float = 0.0,
) -> CostEstimate:
    """Estimate the running hours and the monthly cost of a deployment against always-on."""
    if manual_starts_per_week < 0:
        raise ValueError(f"manual_starts_per_week={manual_starts_per_week} is negative")
    return CostEstimate(
        scheduled=nominal_week(schedule),
        manual_starts_per_week=manual_starts_per_week,
        manual_hours_per_start=idle.manual_start_hours(manual_use_hours),
        instance_count=instance_count,
        price=price,
        weights_gb=weights_gb,
    )
