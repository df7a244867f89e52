"""Schedule windows: parsing, evaluation in an IANA time zone across daylight-saving changes, the desired
state derived from them, and the synthesized EventBridge Scheduler schedules."""

import json
from datetime import datetime, timedelta, timezone

import pytest
from aws_cdk.assertions import Match, Template

from control_plane.desired import OFF, ON, SOURCE_SCHEDULE, DesiredState, from_schedule, next_change, resolve
from control_plane.schedule import ScheduleError, parse_days, parse_schedule

UTC = timezone.utc
OFFICE_HOURS = [{"name": "office-hours", "days": "MON-FRI", "start": "08:00", "stop": "18:00"}]


def berlin_office_hours():
    return parse_schedule(OFFICE_HOURS, "Europe/Berlin")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# Parsing


def test_no_windows_means_no_schedule():
    assert parse_schedule(None, "Europe/Berlin") is None
    assert parse_schedule([], None) is None


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ("MON-FRI", {0, 1, 2, 3, 4}),
        ("sat,sun", {5, 6}),
        ("FRI-MON", {4, 5, 6, 0}),
        ("*", set(range(7))),
        ("WED", {2}),
    ],
)
def test_days_parse(days, expected):
    assert parse_days("days", days) == frozenset(expected)


@pytest.mark.parametrize(
    ("windows", "timezone_name", "key", "fragment"),
    [
        (OFFICE_HOURS, "Mars/Olympus", "scheduleTimezone", "IANA"),
        (OFFICE_HOURS, "../etc/passwd", "scheduleTimezone", "IANA"),
        ([{**OFFICE_HOURS[0], "start": "8am"}], "UTC", "schedules[0].start", "HH:MM"),
        ([{**OFFICE_HOURS[0], "stop": "24:00"}], "UTC", "schedules[0].stop", "HH:MM"),
        ([{**OFFICE_HOURS[0], "stop": "08:00"}], "UTC", "schedules[0].stop", "equals the start"),
        ([{**OFFICE_HOURS[0], "days": "MON-FRY"}], "UTC", "schedules[0].days", "MON-FRI"),
        ([{**OFFICE_HOURS[0], "name": "Office Hours"}], "UTC", "schedules[0].name", "lowercase"),
        ([{"name": "x", "days": "MON", "start": "08:00"}], "UTC", "schedules[0]", "missing field(s) stop"),
        ([{**OFFICE_HOURS[0], "timezone": "UTC"}], "UTC", "schedules[0]", "unknown field(s) timezone"),
        (OFFICE_HOURS * 2, "UTC", "schedules", "repeated: office-hours"),
        ({"name": "x"}, "UTC", "schedules", "list of windows"),
    ],
)
def test_invalid_schedule_names_key(windows, timezone_name, key, fragment):
    with pytest.raises(ScheduleError) as raised:
        parse_schedule(windows, timezone_name)

    assert raised.value.key == key
    assert fragment in str(raised.value)


def test_cron_expressions_of_windows():
    schedule = parse_schedule(
        OFFICE_HOURS + [{"name": "night", "days": "FRI,SAT", "start": "22:30", "stop": "06:00"}], "Europe/Berlin"
    )
    office, night = schedule.windows

    assert office.start_cron() == "cron(0 8 ? * MON,TUE,WED,THU,FRI *)"
    assert office.stop_cron() == "cron(0 18 ? * MON,TUE,WED,THU,FRI *)"
    assert night.start_cron() == "cron(30 22 ? * FRI,SAT *)"
    # An overnight window stops on the day after each start day.
    assert night.stop_cron() == "cron(0 6 ? * SAT,SUN *)"


# Evaluation across daylight-saving changes


def test_window_across_spring_change():
    schedule = berlin_office_hours()

    # Friday 28 March 2025 is CET (UTC+1): 08:00 local is 07:00 UTC.
    assert not schedule.is_on(utc(2025, 3, 28, 6, 30))
    assert schedule.is_on(utc(2025, 3, 28, 7, 0))
    assert schedule.is_on(utc(2025, 3, 28, 16, 59))
    assert not schedule.is_on(utc(2025, 3, 28, 17, 0))
    # Monday 31 March 2025 is CEST (UTC+2) after the change on Sunday: 08:00 local is 06:00 UTC.
    assert schedule.is_on(utc(2025, 3, 31, 6, 30))
    assert not schedule.is_on(utc(2025, 3, 31, 5, 59))
    assert not schedule.is_on(utc(2025, 3, 31, 16, 0))


def test_next_change_across_spring_change():
    schedule = berlin_office_hours()

    change = schedule.next_change(utc(2025, 3, 28, 17, 0))

    assert change.on is True
    assert change.at == utc(2025, 3, 31, 6, 0)
    assert change.window.name == "office-hours"


def test_next_change_across_autumn_change():
    schedule = berlin_office_hours()

    # Friday 24 October 2025 is CEST; Monday 27 October is CET after the change on Sunday 26 October.
    stop = schedule.next_change(utc(2025, 10, 24, 12, 0))
    start = schedule.next_change(stop.at)

    assert stop.at == utc(2025, 10, 24, 16, 0)
    assert stop.on is False
    assert start.at == utc(2025, 10, 27, 7, 0)
    assert start.on is True


def test_night_window_over_the_skipped_hour():
    # 02:30 does not exist in Berlin on 30 March 2025; the window still covers the night.
    schedule = parse_schedule([{"name": "night", "days": "SAT", "start": "23:00", "stop": "04:00"}], "Europe/Berlin")

    assert schedule.is_on(utc(2025, 3, 29, 22, 30))  # Saturday 23:30 CET
    assert schedule.is_on(utc(2025, 3, 30, 1, 30))  # Sunday 03:30 CEST
    assert not schedule.is_on(utc(2025, 3, 30, 2, 0))  # Sunday 04:00 CEST
    assert schedule.next_change(utc(2025, 3, 30, 0, 0)).at == utc(2025, 3, 30, 2, 0)


def test_night_window_over_the_repeated_hour():
    # 02:00-03:00 happens twice in Berlin on 26 October 2025; a window until 02:30 ends at its first 02:30.
    schedule = parse_schedule([{"name": "night", "days": "SAT", "start": "23:00", "stop": "02:30"}], "Europe/Berlin")

    assert schedule.is_on(utc(2025, 10, 26, 0, 15))  # Sunday 02:15 CEST
    assert not schedule.is_on(utc(2025, 10, 26, 0, 45))  # Sunday 02:45 CEST
    assert schedule.next_change(utc(2025, 10, 25, 23, 0)).at == utc(2025, 10, 26, 0, 30)


def test_next_start_skips_the_current_window_end():
    schedule = berlin_office_hours()

    start = schedule.next_start(utc(2025, 6, 2, 10, 0))  # Monday, inside the window

    assert start.on is True
    assert start.at == utc(2025, 6, 3, 6, 0)  # Tuesday 08:00 CEST


# Desired state derived from the schedule


def test_desired_state_across_spring_change():
    schedule = berlin_office_hours()

    friday_before = from_schedule(schedule, utc(2025, 3, 28, 6, 30))
    monday_after = from_schedule(schedule, utc(2025, 3, 31, 6, 30))

    assert friday_before.state == OFF
    assert friday_before.until == utc(2025, 3, 28, 7, 0)
    assert monday_after.state == ON
    assert monday_after.source == SOURCE_SCHEDULE
    assert monday_after.requested_by == "schedule:office-hours"
    assert monday_after.until == utc(2025, 3, 31, 16, 0)
    assert "Europe/Berlin" in monday_after.reason


def test_expired_request_falls_back_to_schedule():
    schedule = berlin_office_hours()
    start = utc(2025, 3, 28, 15, 0)
    manual = DesiredState(ON, "manual", "alice", start, start + timedelta(hours=4), "demo", version=7)

    during, changed_during = resolve(manual, schedule, utc(2025, 3, 28, 18, 0))
    after, changed_after = resolve(manual, schedule, utc(2025, 3, 28, 19, 0))

    assert during is manual
    assert changed_during is False
    assert changed_after is True
    assert after.state == OFF
    assert after.version == 8
    assert after.until == utc(2025, 3, 31, 6, 0)


def test_expired_request_without_schedule_is_off():
    start = utc(2025, 6, 2, 8, 0)
    manual = DesiredState(ON, "manual", "alice", start, start + timedelta(hours=1), "demo", version=2)

    after, changed = resolve(manual, None, start + timedelta(hours=1))

    assert changed is True
    assert after.state == OFF
    assert after.until is None
    assert "expired" in after.reason


def test_next_change_names_schedule_window():
    schedule = berlin_office_hours()
    outside = from_schedule(schedule, utc(2025, 6, 2, 5, 0))  # Monday 07:00 CEST

    when, state, cause = next_change(outside, schedule)

    assert when == utc(2025, 6, 2, 6, 0)
    assert state == ON
    assert cause == "schedule window office-hours starts"


def test_next_change_of_manual_stop():
    schedule = berlin_office_hours()
    stop = DesiredState(OFF, "manual", "alice", utc(2025, 6, 2, 8, 0), utc(2025, 6, 3, 6, 0), "lunch")

    when, state, cause = next_change(stop, schedule)

    assert when == utc(2025, 6, 3, 6, 0)
    assert state == ON
    assert cause == "the manual stop expires"


def test_next_change_of_manual_start_inside_window():
    schedule = berlin_office_hours()
    start = utc(2025, 6, 2, 7, 0)  # Monday 09:00 CEST
    manual = DesiredState(ON, "manual", "alice", start, start + timedelta(hours=2), "demo")

    # The start expires at 11:00 CEST, inside the window, so the state changes only at the window's end.
    when, state, cause = next_change(manual, schedule)

    assert when == utc(2025, 6, 2, 16, 0)
    assert state == OFF
    assert "office-hours ends" in cause


# Synthesized schedules


def _schedules(result):
    template = Template.from_json(result.templates["ControlStack"])
    return template, template.find_resources("AWS::Scheduler::Schedule")


@pytest.mark.synth
def test_no_schedules_only_periodic(default_synth):
    template, schedules = _schedules(default_synth)

    assert len(schedules) == 1
    template.has_resource_properties(
        "AWS::Scheduler::Schedule",
        {"ScheduleExpression": "rate(5 minutes)", "Target": Match.object_like({"Input": json.dumps({"trigger": "periodic"})})},
    )


@pytest.mark.synth
def test_synthesized_schedules_carry_timezone(synth):
    result = synth(schedules=OFFICE_HOURS, scheduleTimezone="Europe/Berlin")
    template, schedules = _schedules(result)

    window_schedules = [s for s in schedules.values() if s["Properties"]["ScheduleExpression"].startswith("cron(")]
    assert len(window_schedules) == 2
    for schedule in window_schedules:
        assert schedule["Properties"]["ScheduleExpressionTimezone"] == "Europe/Berlin"
        assert schedule["Properties"]["FlexibleTimeWindow"] == {"Mode": "OFF"}

    template.has_resource_properties(
        "AWS::Scheduler::Schedule",
        {
            "Name": "bloom-office-hours-start",
            "ScheduleExpression": "cron(0 8 ? * MON,TUE,WED,THU,FRI *)",
            "ScheduleExpressionTimezone": "Europe/Berlin",
            "Target": Match.object_like({"Input": Match.string_like_regexp("aws.scheduler.scheduled-time")}),
        },
    )
    template.has_resource_properties(
        "AWS::Scheduler::Schedule",
        {"Name": "bloom-office-hours-stop", "ScheduleExpression": "cron(0 18 ? * MON,TUE,WED,THU,FRI *)"},
    )


@pytest.mark.synth
def test_synthesized_settings_carry_windows(synth):
    result = synth(schedules=OFFICE_HOURS, scheduleTimezone="Europe/Berlin")
    template = Template.from_json(result.templates["ControlStack"])
    parameter = next(
        resource for resource in template.find_resources("AWS::SSM::Parameter").values()
        if resource["Properties"]["Name"] == "/bloom/control/settings"
    )

    value = parameter["Properties"]["Value"]
    text = value if isinstance(value, str) else "".join(p for p in value["Fn::Join"][1] if isinstance(p, str))
    assert '"schedule_timezone": "Europe/Berlin"' in text
    assert '"name": "office-hours"' in text

