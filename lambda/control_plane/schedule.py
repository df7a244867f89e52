"""Schedule windows in an IANA time zone: parsing, evaluation at an instant, and the next change.

A window such as ``{"name": "office-hours", "days": "MON-FRI", "start": "08:00", "stop": "18:00"}`` is on
from its start (inclusive) to its stop (exclusive), in wall-clock time of the schedule's time zone, so that
08:00 stays 08:00 across a daylight-saving change. A stop earlier than the start makes an overnight window
that ends on the next day. The reconciler evaluates the windows on every run, so a missed or failed
EventBridge Scheduler event heals at the next periodic run. The scheduler events make the change happen on time.
"""

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
WINDOW_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,29}$")
TIME_PATTERN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
WINDOW_KEYS = {"name", "days", "start", "stop"}

# Far enough to pass the longest gap between two changes of a weekly schedule.
SEARCH_DAYS = 8


class ScheduleError(ValueError):
    """A schedule value is invalid; ``key`` names the offending value, such as ``schedules[0].start``."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.detail = message


@dataclass(frozen=True)
class Window:
    """One recurring on-period. ``days`` are the days on which the window starts, Monday = 0."""

    name: str
    days: frozenset[int]
    start: time
    stop: time

    @property
    def overnight(self) -> bool:
        return self.stop <= self.start

    def contains(self, local: datetime) -> bool:
        """Return whether a wall-clock time of the schedule's time zone falls in this window."""
        weekday = local.weekday()
        wall = local.time().replace(tzinfo=None, fold=0)
        if not self.overnight:
            return weekday in self.days and self.start <= wall < self.stop
        started_today = weekday in self.days and wall >= self.start
        started_yesterday = (weekday - 1) % 7 in self.days and wall < self.stop
        return started_today or started_yesterday

    def describe(self) -> str:
        days = ",".join(DAY_NAMES[day] for day in sorted(self.days))
        return f"{days} {self.start:%H:%M}-{self.stop:%H:%M}"

    def start_cron(self) -> str:
        return _cron(self.start, self.days)

    def stop_cron(self) -> str:
        stop_days = {(day + 1) % 7 for day in self.days} if self.overnight else self.days
        return _cron(self.stop, stop_days)


@dataclass(frozen=True)
class Schedule:
    windows: tuple[Window, ...]
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def window_at(self, instant: datetime) -> Window | None:
        """Return the window that is on at ``instant`` (an aware datetime), or None."""
        local = instant.astimezone(self.zone)
        for window in self.windows:
            if window.contains(local):
                return window
        return None

    def is_on(self, instant: datetime) -> bool:
        return self.window_at(instant) is not None

    def boundaries(self, after: datetime) -> Iterator[tuple[datetime, Window, str]]:
        """Yield (instant, window, "start" or "stop") for every window boundary after ``after``, in order."""
        zone = self.zone
        first_day = after.astimezone(zone).date() - timedelta(days=1)
        found = []
        for offset in range(SEARCH_DAYS + 2):
            day = first_day + timedelta(days=offset)
            for window in self.windows:
                if day.weekday() not in window.days:
                    continue
                stop_day = day + timedelta(days=1) if window.overnight else day
                found.append((_to_utc(day, window.start, zone), window, "start"))
                found.append((_to_utc(stop_day, window.stop, zone), window, "stop"))

        for instant, window, edge in sorted(found, key=lambda item: item[0]):
            if instant > after:
                yield instant, window, edge

    def next_change(self, after: datetime) -> "Change | None":
        """Return the first instant after ``after`` at which the schedule turns on or off."""
        state = self.is_on(after)
        for instant, window, edge in self.boundaries(after):
            if self.is_on(instant) != state:
                return Change(instant, not state, window)
        return None

    def next_start(self, after: datetime) -> "Change | None":
        """Return the first instant after ``after`` at which the schedule turns on."""
        change = self.next_change(after)
        if change is not None and not change.on:
            change = self.next_change(change.at)
        return change


@dataclass(frozen=True)
class Change:
    at: datetime
    on: bool
    window: Window


def _to_utc(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """Convert a wall-clock time to UTC.

    A wall time skipped by a spring-forward change (02:30 on the night clocks jump to 03:00) has no exact
    instant. zoneinfo then applies the offset from before the change, so the instant is one hour later in
    wall time.
    """
    return datetime.combine(day, wall, tzinfo=zone).astimezone(timezone.utc)


def _cron(at: time, days: set[int] | frozenset[int]) -> str:
    day_list = ",".join(DAY_NAMES[day] for day in sorted(days))
    return f"cron({at.minute} {at.hour} ? * {day_list} *)"


def parse_schedule(raw_windows: Any, timezone_name: Any) -> Schedule | None:
    """Validate the ``schedules`` and ``scheduleTimezone`` values; return None when no window is configured."""
    zone_name = "UTC" if timezone_name in (None, "") else timezone_name
    _check_timezone(zone_name)

    if raw_windows in (None, []):
        return None
    if not isinstance(raw_windows, list):
        raise ScheduleError("schedules", f"{raw_windows!r} is invalid: expected a list of windows")

    windows = tuple(_parse_window(index, raw) for index, raw in enumerate(raw_windows))
    names = [window.name for window in windows]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ScheduleError("schedules", f"window names must be unique; repeated: {', '.join(duplicates)}")

    return Schedule(windows=windows, timezone=zone_name)


def _check_timezone(zone_name: Any) -> None:
    if not isinstance(zone_name, str) or zone_name.startswith("/") or ".." in zone_name:
        raise ScheduleError("scheduleTimezone", f"{zone_name!r} is not an IANA time zone name such as Europe/Berlin")
    try:
        ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            "scheduleTimezone", f"{zone_name!r} is not an IANA time zone name such as Europe/Berlin"
        ) from None


def _parse_window(index: int, raw: Any) -> Window:
    key = f"schedules[{index}]"
    if not isinstance(raw, dict):
        raise ScheduleError(key, f"{raw!r} is invalid: expected an object with name, days, start and stop")

    unknown = sorted(set(raw) - WINDOW_KEYS)
    missing = sorted(WINDOW_KEYS - set(raw))
    if unknown:
        raise ScheduleError(key, f"unknown field(s) {', '.join(unknown)}: allowed name, days, start, stop")
    if missing:
        raise ScheduleError(key, f"missing field(s) {', '.join(missing)}")

    name = raw["name"]
    if not isinstance(name, str) or not WINDOW_NAME_PATTERN.match(name):
        raise ScheduleError(
            f"{key}.name", f"{name!r} is invalid: use 1-30 lowercase letters, digits and hyphens"
        )

    start = _parse_time(f"{key}.start", raw["start"])
    stop = _parse_time(f"{key}.stop", raw["stop"])
    if start == stop:
        raise ScheduleError(f"{key}.stop", f"{raw['stop']!r} equals the start: a window must have a length")

    return Window(name=name, days=parse_days(f"{key}.days", raw["days"]), start=start, stop=stop)


def _parse_time(key: str, value: Any) -> time:
    match = TIME_PATTERN.match(value) if isinstance(value, str) else None
    if not match:
        raise ScheduleError(key, f"{value!r} is invalid: use HH:MM in 24-hour time, for example 08:00")
    return time(int(match.group(1)), int(match.group(2)))


def parse_days(key: str, value: Any) -> frozenset[int]:
    """Parse ``MON-FRI``, ``SAT,SUN``, ``FRI-MON`` (wraps over the week end) or ``*`` (every day)."""
    if not isinstance(value, str) or not value.strip():
        raise ScheduleError(key, f"{value!r} is invalid: use day names such as MON-FRI, SAT,SUN or *")

    text = value.strip().upper()
    if text == "*":
        return frozenset(range(7))

    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        if first not in DAY_NAMES or (last and last not in DAY_NAMES):
            raise ScheduleError(
                key, f"{value!r} is invalid: use MON, TUE, WED, THU, FRI, SAT, SUN, ranges such as MON-FRI, or *"
            )
        begin = DAY_NAMES.index(first)
        end = DAY_NAMES.index(last) if last else begin
        days.update((begin + step) % 7 for step in range((end - begin) % 7 + 1))
    return frozenset(days)
