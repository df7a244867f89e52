"""``bloomctl cost``: running hours per week and per month from the schedule and the idle policy, their cost at
the configured hourly price against always-on, and the S3 storage cost of the weights.

The schedule, the time zone, the idle stop and the profile come from cdk.json (the working directory's, else the
repository's). Each option overrides one of them, and the result is validated as ``cdk synth`` validates it. The
hourly price is, in this order: ``--hourly-price``, ``--price-list`` (the AWS Price List API), the
``hourlyPriceUsd`` context value, the profile's price. Only ``--price-list`` calls AWS.
"""

import argparse
import json
import math
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bloomctl.context import CdkJsonError, read_context
from bloomctl.cost_model import (
    HOURS_PER_WEEK,
    S3_STANDARD_PRICE_SOURCE,
    WEEKS_PER_MONTH,
    CostEstimate,
    HourlyPrice,
    IdlePolicy,
    estimate_cost,
    irregular_weeks,
)
from stacks.config import ConfigError, DeploymentConfig, load_config, parse_hourly_price
from stacks.control_config import RECONCILE_EVERY_MINUTES, ControlOptions, estimated_start_minutes, load_control_options

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
HOURLY_PRICE_KEY = "hourlyPriceUsd"


class CommandError(Exception):
    """A problem the user can fix. The message explains the fix, and the command exits with status 2."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cost",
        help="estimate running hours and cost from the schedule and idle policy, against always-on",
        description=__doc__.split("\n\n")[0].replace("``", ""),
    )

    schedule = parser.add_argument_group("schedule and idle policy (default: cdk.json)")
    schedule.add_argument(
        "--schedule",
        metavar="JSON_OR_FILE",
        help="schedule windows as a JSON list, or a JSON file with the list or an object with a schedules key, "
        'for example \'[{"name": "office-hours", "days": "MON-FRI", "start": "08:00", "stop": "18:00"}]\'',
    )
    schedule.add_argument("--timezone", help="IANA time zone of the windows (default: scheduleTimezone, else UTC)")
    schedule.add_argument(
        "--idle-stop-minutes", type=int, help="minutes without invocations before a stop, 0 for no idle stop"
    )
    schedule.add_argument(
        "--manual-starts", type=float, default=0.0, metavar="N", help="manual starts per week outside the windows"
    )
    schedule.add_argument(
        "--manual-use-hours",
        type=float,
        default=0.0,
        metavar="H",
        help="hours from a manual start to its last request (default: 0, the start is followed only by the idle stop)",
    )

    price = parser.add_argument_group("price (default: hourlyPriceUsd in cdk.json, else the profile's price)")
    price.add_argument("--profile", help="model profile (default: the profile in cdk.json)")
    price.add_argument("--hourly-price", type=float, metavar="USD", help="price of one instance hour in USD")
    price.add_argument(
        "--price-list",
        action="store_true",
        help="look the hourly price up in the AWS Price List API (needs AWS credentials with pricing:GetProducts)",
    )
    price.add_argument(
        "--price-region", help="region whose price --price-list looks up (default: --region, else us-east-1)"
    )

    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    parser.set_defaults(func=run_cost)


def run_cost(args: argparse.Namespace) -> int:
    try:
        config, options = load_settings(args)
        price = resolve_hourly_price(args, config)
        _check_manual_options(args)
    except (CommandError, ConfigError) as error:
        print(f"bloomctl cost: {error}", file=sys.stderr)
        return EXIT_USAGE
    except PriceLookupFailed as error:
        print(f"bloomctl cost: {error}", file=sys.stderr)
        return EXIT_FAILED

    idle = IdlePolicy(
        idle_stop_minutes=options.idle_stop_minutes,
        manual_start_max_hours=options.manual_start_max_hours,
        check_interval_minutes=RECONCILE_EVERY_MINUTES,
    )
    estimate = estimate_cost(
        options.schedule,
        idle,
        price,
        instance_count=config.instance_count,
        weights_gb=config.profile.weights_size_gb,
        manual_starts_per_week=args.manual_starts,
        manual_use_hours=args.manual_use_hours,
    )

    monday = today() - timedelta(days=today().weekday())
    irregular = irregular_weeks(options.schedule, monday)
    if args.json:
        print(json.dumps(_json_report(estimate, config, options, idle, irregular), indent=2))
    else:
        print_report(estimate, config, options, idle, irregular)
    return EXIT_OK


def today() -> date:
    return date.today()


# Configuration


def load_settings(args: argparse.Namespace) -> tuple[DeploymentConfig, ControlOptions]:
    """Read cdk.json, apply the options, and validate the result as synth does."""
    try:
        context = read_context()
    except CdkJsonError as error:
        raise CommandError(str(error)) from None
    if args.profile:
        context["profile"] = args.profile
    if args.schedule is not None:
        schedule_value = _read_schedule_option(args.schedule)
        context["schedules"] = schedule_value.get("schedules")
        if "scheduleTimezone" in schedule_value:
            context["scheduleTimezone"] = schedule_value["scheduleTimezone"]
    if args.timezone:
        context["scheduleTimezone"] = args.timezone
    if args.idle_stop_minutes is not None:
        context["idleStopMinutes"] = args.idle_stop_minutes

    config = load_config(context.get)
    return config, load_control_options(config)


def _read_schedule_option(text: str) -> dict[str, Any]:
    """Parse --schedule: a JSON list of windows, or a file with the list or an object with ``schedules``."""
    stripped = text.strip()
    source = "--schedule"
    if not stripped.startswith(("[", "{")):
        path = Path(stripped).expanduser()
        if not path.is_file():
            raise CommandError(
                f"--schedule {text!r} is neither JSON nor an existing file: pass a JSON list of windows or a file"
            )
        stripped, source = path.read_text(), str(path)

    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as error:
        raise CommandError(f"{source} is not valid JSON: {error.msg} at line {error.lineno}") from None

    if isinstance(value, list):
        return {"schedules": value}
    if isinstance(value, dict) and "schedules" in value:
        return {key: value[key] for key in ("schedules", "scheduleTimezone") if key in value}
    if isinstance(value, dict) and isinstance(value.get("context"), dict):
        context = value["context"]
        return {key: context[key] for key in ("schedules", "scheduleTimezone") if key in context}
    raise CommandError(f"{source} contains no schedule: expected a list of windows or an object with a schedules key")


def _check_manual_options(args: argparse.Namespace) -> None:
    for option, value in (("--manual-starts", args.manual_starts), ("--manual-use-hours", args.manual_use_hours)):
        if not math.isfinite(value) or value < 0:
            raise CommandError(f"{option} {value:g} is invalid: expected a number of at least 0")


# Hourly price


class PriceLookupFailed(Exception):
    """The AWS Price List API could not be read or returned no single price."""


def resolve_hourly_price(args: argparse.Namespace, config: DeploymentConfig) -> HourlyPrice:
    """Return the price of one instance hour with its source, in the order of the module's docstring."""
    if args.hourly_price is not None:
        return HourlyPrice(parse_hourly_price("--hourly-price", args.hourly_price), "--hourly-price option")
    if args.price_list:
        return _price_from_price_list(config.instance_type, args.price_region or args.region or "us-east-1")

    configured = config.extra.get(HOURLY_PRICE_KEY)
    if configured is not None:
        source = f"{HOURLY_PRICE_KEY} in the cdk.json context"
        return HourlyPrice(config.hourly_price_usd, source)

    profile = config.profile
    if config.instance_type != profile.instance_type:
        raise ConfigError(
            f"instanceType={config.instance_type} replaces {profile.instance_type} of profile {profile.name}, and "
            f"the profile's price is for {profile.instance_type}: set {HOURLY_PRICE_KEY} in cdk.json, or pass "
            "--hourly-price or --price-list"
        )
    return HourlyPrice(profile.hourly_price_usd, profile.hourly_price_source)


def _price_from_price_list(instance_type: str, region: str) -> HourlyPrice:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from bloomctl.price_list import PRICING_API_REGION, PriceListError, lookup_hourly_price

    try:
        client = boto3.client("pricing", region_name=PRICING_API_REGION)
        return lookup_hourly_price(client, instance_type, region)
    except PriceListError as error:
        raise PriceLookupFailed(str(error)) from None
    except (BotoCoreError, ClientError) as error:
        raise PriceLookupFailed(
            f"The AWS Price List API could not be read ({error}). Pass --hourly-price instead."
        ) from None


# Output


def print_report(estimate: CostEstimate, config: DeploymentConfig, options: ControlOptions, idle: IdlePolicy,
                 irregular: list) -> None:
    profile = config.profile
    price = estimate.price
    instances = f"{config.instance_count} x {config.instance_type}"
    print(f"Cost estimate for profile {profile.name} ({instances})")
    print(f"hourly price: {price.usd:,.2f} USD per instance hour ({price.source})")
    print(f"schedule: {_describe_schedule(options)}")
    print(f"idle stop: {_describe_idle(idle)}")
    print()

    rows = [
        ("scheduled windows", estimate.scheduled.hours_per_week),
        ("manual starts", estimate.manual_hours_per_week),
        ("endpoint running", estimate.running_hours_per_week),
        ("always on", HOURS_PER_WEEK),
    ]
    print(f"{'':<18} {'hours/week':>10} {'hours/month':>12} {'USD/month':>12}")
    for label, hours_per_week in rows:
        usd = hours_per_week * WEEKS_PER_MONTH * config.instance_count * price.usd
        print(f"{label:<18} {hours_per_week:>10.1f} {hours_per_week * WEEKS_PER_MONTH:>12.1f} {usd:>12,.2f}")
    saved_hours = HOURS_PER_WEEK - estimate.running_hours_per_week
    print(
        f"{'saving':<18} {saved_hours:>10.1f} {saved_hours * WEEKS_PER_MONTH:>12.1f} "
        f"{estimate.saving_usd_per_month:>12,.2f}  ({estimate.saving_fraction:.1%} of always-on)"
    )
    print()

    storage = estimate.storage_usd_per_month
    print(
        f"weights in S3 Standard: {estimate.weights_gb:g} GB x {estimate.storage_usd_per_gb_month} USD per GB-month = "
        f"{storage:,.2f} USD/month ({S3_STANDARD_PRICE_SOURCE})"
    )
    print(
        f"total with storage: {estimate.instance_usd_per_month + storage:,.2f} USD/month, against "
        f"{estimate.always_on_usd_per_month + storage:,.2f} USD/month always on"
    )
    print()
    for line in _notes(estimate, config, options, idle, irregular):
        print(line)


def _describe_schedule(options: ControlOptions) -> str:
    schedule = options.schedule
    if schedule is None:
        return "none configured: the endpoint runs only when started (bloomctl start)"
    windows = "; ".join(f"{window.name} {window.describe()}" for window in schedule.windows)
    return f"{windows} ({schedule.timezone})"


def _describe_idle(idle: IdlePolicy) -> str:
    if idle.idle_stop_minutes == 0:
        return f"off; a manual start runs until it expires after {idle.manual_start_max_hours:g} h"
    return (
        f"after {idle.idle_stop_minutes} min without invocations (checked every {idle.check_interval_minutes} min); "
        f"a manual start expires after {idle.manual_start_max_hours:g} h"
    )


def _notes(estimate: CostEstimate, config: DeploymentConfig, options: ControlOptions, idle: IdlePolicy,
           irregular: list) -> list[str]:
    notes = [
        f"A month is 365.25 / 12 / 7 = {WEEKS_PER_MONTH:.3f} weeks, so always-on is "
        f"{HOURS_PER_WEEK * WEEKS_PER_MONTH:.1f} h a month.",
        "Scheduled hours are an upper bound: the idle stop also stops an idle endpoint inside a window, until the "
        "next window starts.",
    ]
    if estimate.manual_starts_per_week:
        notes.append(
            f"Each manual start counts {estimate.manual_hours_per_start:.2f} h: its requests, then the idle window and "
            "one check interval, at most manualStartMaxHours. Manual starts are assumed to fall outside the windows."
        )
    starts = estimate.scheduled.starts_per_week + estimate.manual_starts_per_week
    if starts:
        minutes = estimated_start_minutes(config.profile)
        notes.append(
            f"Not counted: each start spends about {minutes} min creating the endpoint before it serves "
            f"({starts:g} starts a week, {starts * minutes / 60:.1f} h); add them if your bill shows that time."
        )
    for week in irregular:
        notes.append(
            f"The week of {week.monday.isoformat()} runs {week.hours:.1f} h instead of "
            f"{estimate.scheduled.hours_per_week:.1f} h: a daylight-saving change in {options.schedule_timezone} falls "
            "inside a window."
        )
    return notes


def _json_report(estimate: CostEstimate, config: DeploymentConfig, options: ControlOptions, idle: IdlePolicy,
                 irregular: list) -> dict:
    return {
        "profile": config.profile.name,
        "instance_type": config.instance_type,
        "schedule_timezone": options.schedule_timezone,
        "schedule_windows": options.schedule_windows,
        "idle_stop_minutes": idle.idle_stop_minutes,
        "manual_start_max_hours": idle.manual_start_max_hours,
        **estimate.to_dict(),
        "irregular_weeks": [{"monday": week.monday.isoformat(), "hours": round(week.hours, 3)} for week in irregular],
    }
