"""Validation of the API's configuration: usage plans and keys from cdk.json, and the endpoint's capacity."""

import json

import pytest

from stacks.api_config import STATUS_CONCURRENCY, load_api_config, parse_usage_plans
from stacks.config import ConfigError, load_config
from tests.conftest import CDK_JSON_CONTEXT

VALID_PLAN = {"name": "default", "rateLimit": 1, "burstLimit": 2, "quota": {"limit": 1000, "period": "DAY"}, "keys": ["team"]}


def plan(**changes) -> dict:
    return {**VALID_PLAN, **changes}


def config_with(**context):
    values = {**CDK_JSON_CONTEXT, **context}
    return load_config(values.get)


def test_cdk_json_default_is_valid():
    (default,) = parse_usage_plans(CDK_JSON_CONTEXT["usagePlans"])

    assert default.name == "default"
    assert default.keys == ("team",)
    assert default.quota_period == "DAY"


def test_plans_from_json_string():
    """A value given with -c usagePlans='[...]' arrives as a JSON string."""
    plans = parse_usage_plans(json.dumps([plan(quota=None)]))

    assert plans[0].quota_limit is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (None, "expected a non-empty list"),
        ([], "expected a non-empty list"),
        ("[not json", "is not valid JSON"),
        ([plan(name="Default")], "usagePlans[0].name='Default' is invalid"),
        ([plan(rateLimit=0)], "usagePlans[default].rateLimit=0 is invalid"),
        ([plan(rateLimit=True)], "rateLimit=True is invalid"),
        ([plan(burstLimit=0)], "usagePlans[default].burstLimit=0 is out of range"),
        ([plan(quota={"limit": 10, "period": "YEAR"})], "quota.period='YEAR' is invalid: allowed DAY, WEEK, MONTH"),
        ([plan(quota={"limit": 0, "period": "DAY"})], "quota.limit=0 is out of range"),
        ([plan(quota={"limit": 10})], "quota={'limit': 10} is invalid"),
        ([plan(keys=[])], "keys=[] is invalid"),
        ([plan(keys=["Team A"])], "keys[0]='Team A' is invalid"),
        ([plan(throttle=1)], "unknown field(s) throttle"),
        ([plan(), plan()], "usage plan name 'default' appears more than once"),
        ([plan(), plan(name="other")], "API key name 'team' appears more than once"),
    ],
)
def test_invalid_plans_name_key_and_value(value, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_usage_plans(value)

    assert fragment in str(caught.value)


def test_generation_slots_of_profiles():
    """Without rolling batch (the DeepSpeed INT8 profile) one generation runs per instance, and the vLLM
    profile runs its rolling batch size per instance."""
    int8 = load_api_config(config_with(instanceCount=2))
    vllm = load_api_config(config_with(profile="bloom-176b"))

    assert int8.generation_slots == 2
    assert vllm.generation_slots > 1
    assert vllm.reserved_concurrency == vllm.generation_slots + STATUS_CONCURRENCY


@pytest.mark.parametrize("value", [0, -1, "many", 1001, True])
def test_invalid_invoke_concurrency_rejected(value):
    with pytest.raises(ConfigError) as caught:
        load_api_config(config_with(invokeConcurrency=value))

    assert "invokeConcurrency=" in str(caught.value)


def test_reservation_can_be_turned_off():
    """New accounts keep their whole Lambda concurrency quota of 10 unreserved, so they cannot reserve any."""
    api_config = load_api_config(config_with(reserveInvokeConcurrency="false"))

    assert api_config.reserved_concurrency is None


def test_reservation_on_by_default():
    api_config = load_api_config(config_with())

    assert api_config.reserved_concurrency == api_config.generation_slots + STATUS_CONCURRENCY


def test_invalid_reservation_switch_rejected():
    with pytest.raises(ConfigError, match="reserveInvokeConcurrency='sometimes'"):
        load_api_config(config_with(reserveInvokeConcurrency="sometimes"))
