"""The desired state of the endpoint: on or off, who asked, when, until when and why.

One record in the control table stores it. A request (CLI, admin route, idle check, CloudFormation) replaces the record; while
the record is active it wins over the schedule. Once it expires, the schedule decides: the reconciler
writes a record derived from the schedule windows, valid until the schedule's next change. With no
schedule configured, an expired record falls back to off, so a forgotten manual start stops itself.
"""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from control_plane.schedule import Schedule

ON = "on"
OFF = "off"

# Sources of a desired-state change, stored with the record and shown by `bloomctl status`.
SOURCE_MANUAL = "manual"
SOURCE_SCHEDULE = "schedule"
SOURCE_IDLE = "idle"
SOURCE_DEFAULT = "default"
SOURCE_CLOUDFORMATION = "cloudformation"


class RequestError(ValueError):
    """A start or stop request is invalid; the message states what is allowed."""


@dataclass(frozen=True)
class DesiredState:
    state: str
    source: str
    requested_by: str
    requested_at: datetime
    until: datetime | None
    reason: str
    # Incremented on every write. A failed start blocks retries of the same version only.
    version: int = 0

    def active(self, now: datetime) -> bool:
        return self.until is None or now < self.until

    def to_dict(self) -> dict:
        return {
            "state": self.state,
            "source": self.source,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at.isoformat(),
            "until": self.until.isoformat() if self.until else None,
            "reason": self.reason,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "DesiredState":
        return cls(
            state=data["state"],
            source=data["source"],
            requested_by=data["requested_by"],
            requested_at=datetime.fromisoformat(data["requested_at"]),
            until=datetime.fromisoformat(data["until"]) if data.get("until") else None,
            reason=data["reason"],
            version=int(data.get("version", 0)),
        )


def resolve(record: DesiredState | None, schedule: Schedule | None, now: datetime) -> tuple[DesiredState, bool]:
    """Return the desired state at ``now`` and whether it differs from ``record`` and must be written."""
    if record is not None and record.active(now):
        return record, False

    derived = from_schedule(schedule, now, expired=record)
    version = record.version + 1 if record else 1
    return replace(derived, version=version), True


def from_schedule(schedule: Schedule | None, now: datetime, expired: DesiredState | None = None) -> DesiredState:
    """Derive the desired state from the schedule alone, valid until its next change."""
    if schedule is None:
        if expired is None:
            reason = "no start requested and no schedule configured"
        else:
            reason = f"the {expired.source} request by {expired.requested_by} expired at {expired.until:%Y-%m-%d %H:%M} UTC"
        return DesiredState(OFF, SOURCE_DEFAULT, "control-plane", now, None, reason)

    window = schedule.window_at(now)
    change = schedule.next_change(now)
    until = change.at if change else None
    if window is not None:
        reason = f"schedule window {window.name} ({window.describe()} {schedule.timezone})"
        return DesiredState(ON, SOURCE_SCHEDULE, f"schedule:{window.name}", now, until, reason)

    reason = f"outside the schedule windows ({schedule.timezone})"
    return DesiredState(OFF, SOURCE_SCHEDULE, "schedule", now, until, reason)


def start_request(
    requested_by: str,
    now: datetime,
    duration: timedelta | None,
    max_hours: float,
    reason: str | None = None,
    current: DesiredState | None = None,
) -> DesiredState:
    """Build a manual start that expires after ``duration`` (default and maximum: ``max_hours``).

    A start without a duration while a manual start is in effect keeps that start's expiry: asking twice must
    not extend a short start to the maximum. It is still a new request, so a start that failed is tried again.
    """
    limit = timedelta(hours=max_hours)
    if duration is None and _is_running_manual_start(current, now):
        text = reason or current.reason
        return DesiredState(ON, SOURCE_MANUAL, requested_by, now, current.until, text)
    if duration is None:
        duration = limit
    if duration <= timedelta(0):
        raise RequestError(f"the start duration must be positive, got {_hours(duration)} h")
    if duration > limit:
        raise RequestError(
            f"the start duration {_hours(duration)} h is longer than manualStartMaxHours={max_hours:g}; "
            "ask for less, or raise manualStartMaxHours in cdk.json"
        )

    text = reason or f"manual start for {_hours(duration)} h"
    return DesiredState(ON, SOURCE_MANUAL, requested_by, now, now + duration, text)


def _is_running_manual_start(current: DesiredState | None, now: datetime) -> bool:
    return (
        current is not None
        and current.state == ON
        and current.source == SOURCE_MANUAL
        and current.until is not None
        and current.until > now
    )


def stop_request(
    requested_by: str,
    now: datetime,
    schedule: Schedule | None,
    reason: str | None = None,
    source: str = SOURCE_MANUAL,
) -> DesiredState:
    """Build a stop that lasts until the schedule next turns on (or, without a schedule, until a start)."""
    next_start = schedule.next_start(now) if schedule else None
    until = next_start.at if next_start else None
    return DesiredState(OFF, source, requested_by, now, until, reason or "manual stop")


def next_change(desired: DesiredState, schedule: Schedule | None) -> tuple[datetime, str, str] | None:
    """Return (when, new state, cause) of the next change of the desired state, or None if none is planned."""
    at = desired.until
    if desired.source == SOURCE_SCHEDULE and schedule is not None and at is not None:
        cause = _schedule_edge(schedule, at)
    else:
        cause = f"the {desired.source} {'start' if desired.state == ON else 'stop'} expires"
    for _ in range(32):
        if at is None:
            return None
        state = from_schedule(schedule, at).state
        if state != desired.state:
            return at, state, cause

        change = schedule.next_change(at) if schedule else None
        if change is None:
            return None
        at = change.at
        edge = "starts" if change.on else "ends"
        cause = f"schedule window {change.window.name} {edge}"
    return None


def _schedule_edge(schedule: Schedule, at: datetime) -> str:
    starting = schedule.window_at(at)
    if starting is not None:
        return f"schedule window {starting.name} starts"
    ending = schedule.window_at(at - timedelta(seconds=1))
    return f"schedule window {ending.name} ends" if ending else "the schedule changes"


def _hours(duration: timedelta) -> str:
    return f"{duration.total_seconds() / 3600:g}"
