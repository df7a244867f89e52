"""Arithmetic of the cost model: schedule hours in wall-clock and real calendar time, the idle policy's bound
on manual starts, months, savings against always-on and the storage of the weights."""

from datetime import date, datetime, timezone

import pytest

from bloomctl.cost_model import (
    HOURS_PER_WEEK,
    S3_STANDARD_USD_PER_GB_MONTH,
    WEEKS_PER_MONTH,
    HourlyPrice,
    IdlePolicy,
    estimate_cost,
    irregular_weeks,
    nominal_week,
    on_hours,
    weekly_hours,
)
from control_plane.schedule import parse_schedule

OFFICE_HOURS = [{"name": "office-hours", "days": "MON-FRI", "start": "08:00", "stop": "18:00"}]
# 00:00-06:00 on Sundays contains the 02:00 daylight-saving change of Europe/Berlin.
SUNDAY_NIGHT = [{"name": "sunday-night", "days": "SUN", "start": "00:00", "stop": "06:00"}]
P4D_PRICE = HourlyPrice(usd=37.69, source="test price")
IDLE_60 = IdlePolicy(idle_stop_minutes=60, manual_start_max_hours=8, check_interval_minutes=5)

# Mondays of the weeks in which Europe/Berlin changes clocks in 2025 (30 March and 26 October), and one without.
BERLIN_SPRING_WEEK = date(2025, 3, 24)
BERLIN_AUTUMN_WEEK = date(2025, 10, 20)
ORDINARY_WEEK = date(2025, 5, 12)


def schedule(windows, zone="UTC"):
    return parse_schedule(windows, zone)


def office_estimate(**overrides):
    arguments = {"instance_count": 1, "weights_gb": 180, **overrides}
    return estimate_cost(schedule(OFFICE_HOURS, "Europe/Berlin"), IDLE_60, P4D_PRICE, **arguments)


def test_month_is_mean_gregorian_month():
    assert WEEKS_PER_MONTH == pytest.approx(4.348214, abs=1e-6)
    assert HOURS_PER_WEEK * WEEKS_PER_MONTH == pytest.approx(730.5)


def test_office_hours_week():
    week = nominal_week(schedule(OFFICE_HOURS, "Europe/Berlin"))

    assert week.hours_per_week == pytest.approx(50)
    assert week.starts_per_week == 5


def test_office_hours_month_and_cost():
    estimate = office_estimate()

    assert estimate.running_hours_per_week == pytest.approx(50)
    # 50 h x 4.348214 weeks = 217.41 h; x 37.69 USD = 8194.21 USD.
    assert estimate.running_hours_per_month == pytest.approx(217.4107, abs=1e-4)
    assert estimate.instance_usd_per_month == pytest.approx(8194.21, abs=0.01)
    # 730.5 h x 37.69 USD.
    assert estimate.always_on_usd_per_month == pytest.approx(27532.545, abs=0.001)


def test_office_hours_saving_against_always_on():
    estimate = office_estimate()

    assert estimate.saving_fraction == pytest.approx(118 / 168)
    assert round(estimate.saving_fraction * 100, 1) == 70.2
    # 118 h a week saved: 513.09 h a month at 37.69 USD.
    assert estimate.saving_usd_per_month == pytest.approx(19338.34, abs=0.01)


def test_weights_storage_cost():
    estimate = office_estimate()

    assert S3_STANDARD_USD_PER_GB_MONTH == 0.023
    assert estimate.storage_usd_per_month == pytest.approx(4.14)


def test_instance_count_multiplies_cost():
    single = office_estimate()
    double = office_estimate(instance_count=2)

    assert double.running_hours_per_week == single.running_hours_per_week
    assert double.instance_usd_per_month == pytest.approx(2 * single.instance_usd_per_month)
    assert double.always_on_usd_per_month == pytest.approx(2 * single.always_on_usd_per_month)


def test_no_schedule_runs_no_hours():
    estimate = estimate_cost(None, IDLE_60, P4D_PRICE, instance_count=1, weights_gb=4)

    assert estimate.running_hours_per_week == 0
    assert estimate.scheduled.starts_per_week == 0
    assert estimate.instance_usd_per_month == 0
    assert estimate.saving_fraction == 1


@pytest.mark.parametrize(
    ("windows", "hours", "starts"),
    [
        ([{"name": "late", "days": "FRI", "start": "22:00", "stop": "02:00"}], 4, 1),
        # Crosses the week's end: Sunday 22:00 to Monday 02:00.
        ([{"name": "late", "days": "SUN", "start": "22:00", "stop": "02:00"}], 4, 1),
        # Starts exactly where the walked week starts.
        ([{"name": "early", "days": "MON", "start": "00:00", "stop": "06:00"}], 6, 1),
        # Overlapping windows count their union, and one start.
        (OFFICE_HOURS + [{"name": "long-monday", "days": "MON", "start": "12:00", "stop": "20:00"}], 52, 5),
        # Touching windows make one run.
        (
            [
                {"name": "morning", "days": "TUE", "start": "08:00", "stop": "12:00"},
                {"name": "afternoon", "days": "TUE", "start": "12:00", "stop": "17:00"},
            ],
            9,
            1,
        ),
        ([{"name": "all-week", "days": "*", "start": "00:00", "stop": "23:30"}], 7 * 23.5, 7),
    ],
    ids=["overnight", "overnight-over-week-end", "monday-midnight", "overlap", "touching", "every-day"],
)
def test_nominal_week_shapes(windows, hours, starts):
    week = nominal_week(schedule(windows))

    assert week.hours_per_week == pytest.approx(hours)
    assert week.starts_per_week == starts


def test_office_hours_unchanged_in_berlin_dst_weeks():
    """Berlin changes clocks on a Sunday at 02:00-03:00, outside weekday office hours."""
    berlin = schedule(OFFICE_HOURS, "Europe/Berlin")

    for monday in (BERLIN_SPRING_WEEK, BERLIN_AUTUMN_WEEK, ORDINARY_WEEK):
        assert weekly_hours(berlin, monday) == pytest.approx(50), monday


def test_window_over_berlin_dst_change():
    """00:00-06:00 lasts 5 real hours on the spring-forward Sunday and 7 on the fall-back Sunday."""
    berlin = schedule(SUNDAY_NIGHT, "Europe/Berlin")

    assert nominal_week(berlin).hours_per_week == pytest.approx(6)
    assert weekly_hours(berlin, ORDINARY_WEEK) == pytest.approx(6)
    assert weekly_hours(berlin, BERLIN_SPRING_WEEK) == pytest.approx(5)
    assert weekly_hours(berlin, BERLIN_AUTUMN_WEEK) == pytest.approx(7)


def test_irregular_weeks_of_a_year():
    berlin_night = schedule(SUNDAY_NIGHT, "Europe/Berlin")
    berlin_office = schedule(OFFICE_HOURS, "Europe/Berlin")
    first_monday = date(2025, 1, 6)

    found = irregular_weeks(berlin_night, first_monday, weeks=52)

    assert [(week.monday, round(week.hours, 6)) for week in found] == [
        (BERLIN_SPRING_WEEK, 5.0),
        (BERLIN_AUTUMN_WEEK, 7.0),
    ]
    assert irregular_weeks(berlin_office, first_monday, weeks=52) == []


def test_irregular_weeks_in_new_york():
    """New York changes clocks at 02:00 on 9 March and 2 November 2025."""
    new_york = schedule([{"name": "night", "days": "SUN", "start": "01:00", "stop": "04:00"}], "America/New_York")

    found = irregular_weeks(new_york, date(2025, 1, 6), weeks=52)

    assert [(week.monday, round(week.hours, 6)) for week in found] == [
        (date(2025, 3, 3), 2.0),
        (date(2025, 10, 27), 4.0),
    ]


def test_irregular_weeks_need_monday():
    with pytest.raises(ValueError, match="not a Monday"):
        irregular_weeks(schedule(OFFICE_HOURS), date(2025, 1, 7))


def test_on_hours_counts_partial_windows():
    office = schedule(OFFICE_HOURS)
    # Monday 2025-05-12 from 12:00 to Tuesday 10:00 UTC: 6 h on Monday, 2 h on Tuesday, one start on Tuesday.
    hours, starts = on_hours(
        office, datetime(2025, 5, 12, 12, tzinfo=timezone.utc), datetime(2025, 5, 13, 10, tzinfo=timezone.utc)
    )

    assert hours == pytest.approx(8)
    assert starts == 1


def test_on_hours_rejects_naive_datetimes():
    with pytest.raises(ValueError, match="timezone-aware"):
        on_hours(schedule(OFFICE_HOURS), datetime(2025, 5, 12), datetime(2025, 5, 13, tzinfo=timezone.utc))


@pytest.mark.parametrize(
    ("use_hours", "expected"),
    [(0, 65 / 60), (2, 2 + 65 / 60), (6.9, 6.9 + 65 / 60), (7, 8), (20, 8)],
    ids=["unused", "two-hours", "under-cap", "reaches-cap", "past-cap"],
)
def test_manual_start_bounded_by_idle_stop(use_hours, expected):
    assert IDLE_60.manual_start_hours(use_hours) == pytest.approx(expected)


def test_manual_start_without_idle_stop_runs_to_expiry():
    policy = IdlePolicy(idle_stop_minutes=0, manual_start_max_hours=8, check_interval_minutes=5)

    assert policy.manual_start_hours(0) == 8
    assert policy.manual_start_hours(1) == 8


def test_manual_start_rejects_negative_use():
    with pytest.raises(ValueError):
        IDLE_60.manual_start_hours(-1)


def test_manual_starts_add_to_schedule():
    estimate = office_estimate(manual_starts_per_week=3, manual_use_hours=1)

    # Each start: 1 h of requests + 60 min idle + 5 min check = 2.0833 h.
    assert estimate.manual_hours_per_start == pytest.approx(2 + 5 / 60)
    assert estimate.manual_hours_per_week == pytest.approx(6.25)
    assert estimate.running_hours_per_week == pytest.approx(56.25)


def test_running_hours_capped_at_week():
    estimate = office_estimate(manual_starts_per_week=30, manual_use_hours=8)

    assert estimate.running_hours_per_week == HOURS_PER_WEEK
    assert estimate.saving_fraction == 0
    assert estimate.saving_usd_per_month == pytest.approx(0)


def test_negative_manual_starts_rejected():
    with pytest.raises(ValueError):
        office_estimate(manual_starts_per_week=-1)


def test_estimate_as_dict():
    document = office_estimate().to_dict()

    assert document["hours_per_week"] == {"scheduled": 50.0, "manual": 0.0, "running": 50.0, "always_on": 168}
    assert document["hours_per_month"] == {"running": 217.411, "always_on": 730.5}
    assert document["usd_per_month"]["storage"] == 4.14
    assert document["usd_per_month"]["total"] == pytest.approx(8194.21 + 4.14, abs=0.011)
    assert document["starts_per_week"] == {"scheduled": 5, "manual": 0.0}
