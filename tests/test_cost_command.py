"""``bloomctl cost``: options and cdk.json, the price's source, the printed saving, and the Price List lookup
with botocore's Stubber."""

import json
from datetime import date

import boto3
import pytest
from botocore.stub import Stubber

from bloomctl import cli
from bloomctl.commands import cost
from bloomctl.price_list import PriceListError, hosting_filters, lookup_hourly_price
from stacks.profiles import PROFILES

OFFICE_HOURS = [{"name": "office-hours", "days": "MON-FRI", "start": "08:00", "stop": "18:00"}]
SUNDAY_NIGHT = [{"name": "sunday-night", "days": "SUN", "start": "00:00", "stop": "06:00"}]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Run the command in a folder whose cdk.json contains the given context."""

    def write(**context):
        (tmp_path / "cdk.json").write_text(json.dumps({"app": "python3 app.py", "context": context}))
        return tmp_path

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cost, "today", lambda: date(2025, 3, 26))
    write(profile="bloom-176b-int8")
    return write


def run(capsys, *arguments):
    code = cli.main(["cost", *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys, *arguments):
    code, out, err = run(capsys, *arguments, "--json")
    assert code == 0, err
    return json.loads(out)


def test_office_hours_saving_printed(project, capsys):
    code, out, _ = run(capsys, "--schedule", json.dumps(OFFICE_HOURS), "--timezone", "Europe/Berlin")

    assert code == 0
    assert "office-hours MON,TUE,WED,THU,FRI 08:00-18:00 (Europe/Berlin)" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["scheduled"][2:5] == ["50.0", "217.4", "8,194.21"]
    assert lines["always"][2:5] == ["168.0", "730.5", "27,532.54"]
    assert lines["saving"][1:4] == ["118.0", "513.1", "19,338.34"]
    assert "(70.2% of always-on)" in out
    assert "180 GB x 0.023 USD per GB-month = 4.14 USD/month" in out


def test_json_estimate(project, capsys):
    document = run_json(capsys, "--schedule", json.dumps(OFFICE_HOURS))

    profile = PROFILES["bloom-176b-int8"]
    assert document["hours_per_week"]["running"] == 50
    assert document["hours_per_month"]["running"] == pytest.approx(217.411)
    assert document["saving_fraction"] == pytest.approx(118 / 168, abs=1e-6)
    assert document["hourly_price_usd"] == profile.hourly_price_usd
    assert document["hourly_price_source"] == profile.hourly_price_source
    assert document["storage"]["weights_gb"] == profile.weights_size_gb
    assert document["idle_stop_minutes"] == 60


def test_schedule_from_cdk_json(project, capsys):
    project(profile="bloom-1b7", schedules=OFFICE_HOURS, scheduleTimezone="Europe/Berlin", idleStopMinutes=30)

    document = run_json(capsys)

    assert document["profile"] == "bloom-1b7"
    assert document["schedule_timezone"] == "Europe/Berlin"
    assert document["hours_per_week"]["scheduled"] == 50
    assert document["idle_stop_minutes"] == 30
    assert document["hourly_price_usd"] == PROFILES["bloom-1b7"].hourly_price_usd


def test_schedule_from_file(project, capsys, tmp_path):
    as_list = tmp_path / "windows.json"
    as_list.write_text(json.dumps(OFFICE_HOURS))
    as_object = tmp_path / "schedule.json"
    as_object.write_text(json.dumps({"schedules": SUNDAY_NIGHT, "scheduleTimezone": "Europe/Berlin"}))

    from_list = run_json(capsys, "--schedule", str(as_list))
    from_object = run_json(capsys, "--schedule", str(as_object))

    assert from_list["hours_per_week"]["scheduled"] == 50
    assert from_object["hours_per_week"]["scheduled"] == 6
    assert from_object["schedule_timezone"] == "Europe/Berlin"


def test_dst_weeks_listed(project, capsys):
    code, out, _ = run(capsys, "--schedule", json.dumps(SUNDAY_NIGHT), "--timezone", "Europe/Berlin")

    assert code == 0
    assert "The week of 2025-03-24 runs 5.0 h instead of 6.0 h" in out
    assert "The week of 2025-10-20 runs 7.0 h instead of 6.0 h" in out


def test_no_dst_note_for_office_hours(project, capsys):
    document = run_json(capsys, "--schedule", json.dumps(OFFICE_HOURS), "--timezone", "Europe/Berlin")

    assert document["irregular_weeks"] == []


def test_hourly_price_option_wins(project, capsys):
    project(profile="bloom-176b-int8", hourlyPriceUsd=30)

    document = run_json(capsys, "--schedule", json.dumps(OFFICE_HOURS), "--hourly-price", "10")

    assert document["hourly_price_usd"] == 10
    assert document["hourly_price_source"] == "--hourly-price option"
    assert document["usd_per_month"]["instances"] == pytest.approx(2174.11, abs=0.01)


def test_hourly_price_from_context(project, capsys):
    project(profile="bloom-176b-int8", hourlyPriceUsd="30.5")

    document = run_json(capsys, "--schedule", json.dumps(OFFICE_HOURS))

    assert document["hourly_price_usd"] == 30.5
    assert document["hourly_price_source"] == "hourlyPriceUsd in the cdk.json context"


@pytest.mark.parametrize("value", ["abc", 0, -3, True, "nan"])
def test_invalid_context_price_rejected(project, capsys, value):
    project(profile="bloom-176b-int8", hourlyPriceUsd=value)

    code, out, err = run(capsys)

    assert code == 2
    assert out == ""
    assert f"hourlyPriceUsd={value!r} is invalid" in err


def test_invalid_option_price_rejected(project, capsys):
    code, _, err = run(capsys, "--hourly-price", "-1")

    assert code == 2
    assert "--hourly-price=-1.0 is invalid" in err


def test_instance_override_needs_price(project, capsys):
    project(profile="bloom-1b7", instanceType="ml.g5.2xlarge")

    code, _, err = run(capsys)
    priced = run_json(capsys, "--hourly-price", "1.52")

    assert code == 2
    assert "instanceType=ml.g5.2xlarge replaces ml.g5.xlarge of profile bloom-1b7" in err
    assert priced["instance_type"] == "ml.g5.2xlarge"


def test_invalid_window_names_key(project, capsys):
    bad = [{"name": "office-hours", "days": "MON-FRI", "start": "8am", "stop": "18:00"}]

    code, _, err = run(capsys, "--schedule", json.dumps(bad))

    assert code == 2
    assert "schedules[0].start" in err


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("[{", "--schedule is not valid JSON"),
        ("no-such-file.json", "is neither JSON nor an existing file"),
        ('{"windows": []}', "contains no schedule"),
    ],
)
def test_invalid_schedule_option(project, capsys, option, message):
    code, _, err = run(capsys, "--schedule", option)

    assert code == 2
    assert message in err


def test_invalid_timezone_rejected(project, capsys):
    code, _, err = run(capsys, "--schedule", json.dumps(OFFICE_HOURS), "--timezone", "Mars/Olympus")

    assert code == 2
    assert "scheduleTimezone" in err


def test_manual_starts_counted(project, capsys):
    document = run_json(
        capsys, "--schedule", json.dumps(OFFICE_HOURS), "--manual-starts", "2", "--manual-use-hours", "1"
    )

    # Each start: 1 h + 60 min idle window + 5 min check interval.
    assert document["hours_per_week"]["manual"] == pytest.approx(2 * (2 + 5 / 60), abs=1e-3)
    assert document["hours_per_week"]["running"] == pytest.approx(50 + 2 * (2 + 5 / 60), abs=1e-3)


def test_negative_manual_starts_rejected(project, capsys):
    code, _, err = run(capsys, "--manual-starts", "-1")

    assert code == 2
    assert "--manual-starts -1 is invalid" in err


def test_broken_cdk_json_rejected(project, capsys):
    (project() / "cdk.json").write_text("{not json")

    code, out, err = run(capsys)

    assert code == 2
    assert out == ""
    assert "is not a cdk.json file" in err


def test_no_schedule_explained(project, capsys):
    code, out, _ = run(capsys)

    assert code == 0
    assert "none configured: the endpoint runs only when started" in out


# AWS Price List


def price_item(usd: str, unit: str = "Hrs", published: str = "2025-06-01T00:00:00Z") -> str:
    """One GetProducts entry in the shape of the AmazonSageMaker offer."""
    return json.dumps(
        {
            "product": {
                "productFamily": "ML Instance",
                "attributes": {"instanceName": "ml.p4d.24xlarge", "regionCode": "eu-west-1", "component": "Hosting"},
                "sku": "SKU1",
            },
            "serviceCode": "AmazonSageMaker",
            "terms": {
                "OnDemand": {
                    "SKU1.TERM": {
                        "priceDimensions": {
                            "SKU1.TERM.DIM": {"unit": unit, "pricePerUnit": {"USD": usd}, "description": "hosting"}
                        }
                    }
                }
            },
            "publicationDate": published,
        }
    )


@pytest.fixture
def pricing():
    client = boto3.client("pricing", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def expected_request(next_token: str | None = None) -> dict:
    request = {
        "ServiceCode": "AmazonSageMaker",
        "Filters": hosting_filters("ml.p4d.24xlarge", "eu-west-1"),
        "FormatVersion": "aws_v1",
    }
    if next_token:
        request["NextToken"] = next_token
    return request


def test_price_list_filters():
    filters = {item["Field"]: item["Value"] for item in hosting_filters("ml.p4d.24xlarge", "eu-west-1")}

    assert filters == {
        "productFamily": "ML Instance",
        "instanceName": "ml.p4d.24xlarge",
        "regionCode": "eu-west-1",
        "component": "Hosting",
    }


def test_price_list_lookup(pricing):
    client, stubber = pricing
    stubber.add_response("get_products", {"PriceList": [price_item("40.0000000000")]}, expected_request())

    price = lookup_hourly_price(client, "ml.p4d.24xlarge", "eu-west-1")

    assert price.usd == 40.0
    assert price.source == (
        "AWS Price List API, SageMaker hosting, ml.p4d.24xlarge, eu-west-1, on-demand, published 2025-06-01"
    )


def test_price_list_follows_pages(pricing):
    client, stubber = pricing
    stubber.add_response("get_products", {"PriceList": [], "NextToken": "page-2"}, expected_request())
    stubber.add_response("get_products", {"PriceList": [price_item("40.0")]}, expected_request("page-2"))

    assert lookup_hourly_price(client, "ml.p4d.24xlarge", "eu-west-1").usd == 40.0


def test_price_list_ignores_other_units(pricing):
    client, stubber = pricing
    stubber.add_response("get_products", {"PriceList": [price_item("0.1", unit="GB-Mo")]}, expected_request())

    with pytest.raises(PriceListError, match="no on-demand SageMaker hosting price"):
        lookup_hourly_price(client, "ml.p4d.24xlarge", "eu-west-1")


def test_price_list_rejects_several_prices(pricing):
    client, stubber = pricing
    stubber.add_response("get_products", {"PriceList": [price_item("40.0"), price_item("41.5")]}, expected_request())

    with pytest.raises(PriceListError, match=r"several on-demand hosting prices .*\(40, 41.5 USD"):
        lookup_hourly_price(client, "ml.p4d.24xlarge", "eu-west-1")


def test_price_list_option(project, capsys, monkeypatch, pricing):
    client, stubber = pricing
    stubber.add_response("get_products", {"PriceList": [price_item("40.0")]}, expected_request())
    monkeypatch.setattr(boto3, "client", lambda service, region_name=None: client)

    document = run_json(capsys, "--price-list", "--price-region", "eu-west-1", "--schedule", json.dumps(OFFICE_HOURS))

    assert document["hourly_price_usd"] == 40.0
    assert document["hourly_price_source"].startswith("AWS Price List API")


def test_price_list_failure_exits_1(project, capsys, monkeypatch, pricing):
    client, stubber = pricing
    stubber.add_client_error(
        "get_products", "AccessDeniedException", "not authorized", expected_params=expected_request()
    )
    monkeypatch.setattr(boto3, "client", lambda service, region_name=None: client)

    code, _, err = run(capsys, "--price-list", "--price-region", "eu-west-1")

    assert code == 1
    assert "could not be read" in err
    assert "--hourly-price" in err
