"""Tests of the local API front's parts without servers: usage plans, gateway responses, proxy events, config."""

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from local_mode.api_front import gateway_response
from local_mode.config import load_local_config, parse_context_option
from local_mode.invoke_function import local_function_environment
from local_mode.proxy_event import IncomingRequest, InvalidProxyResponse, build_proxy_event, parse_proxy_response
from local_mode.usage_plan import (
    ApiKey,
    Outcome,
    QuotaCounter,
    StageThrottle,
    TokenBucket,
    UsagePlans,
    build_api_keys,
    quota_period_start,
)
from stacks.api_config import GATEWAY_RESPONSES, UsagePlanConfig, invoke_function_environment
from stacks.config import ConfigError


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeWallClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def plan(name="default", rate=1.0, burst=2, quota=None, period=None, keys=("team",)) -> UsagePlanConfig:
    return UsagePlanConfig(name=name, rate_limit=rate, burst_limit=burst, quota_limit=quota, quota_period=period, keys=keys)


def test_token_bucket_allows_burst_then_refills_at_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, capacity=3, clock=clock)

    assert [bucket.take() for _ in range(4)] == [True, True, True, False]

    clock.now += 0.25
    assert bucket.take() is False

    clock.now += 0.25
    assert bucket.take() is True
    assert bucket.take() is False

    clock.now += 100
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize(
    "period, moment, expected_start",
    [
        ("DAY", datetime(2026, 3, 11, 23, 59, tzinfo=timezone.utc), datetime(2026, 3, 11, tzinfo=timezone.utc)),
        ("WEEK", datetime(2026, 3, 11, 12, 0, tzinfo=timezone.utc), datetime(2026, 3, 8, tzinfo=timezone.utc)),
        ("WEEK", datetime(2026, 3, 8, 0, 0, tzinfo=timezone.utc), datetime(2026, 3, 8, tzinfo=timezone.utc)),
        ("WEEK", datetime(2026, 3, 14, 23, 0, tzinfo=timezone.utc), datetime(2026, 3, 8, tzinfo=timezone.utc)),
        ("MONTH", datetime(2026, 2, 28, 18, 0, tzinfo=timezone.utc), datetime(2026, 2, 1, tzinfo=timezone.utc)),
    ],
)
def test_quota_period_starts_at_calendar_boundary(period, moment, expected_start):
    assert quota_period_start(period, moment) == expected_start


def test_quota_period_start_uses_utc():
    moment = datetime.fromisoformat("2026-03-12T01:30:00+05:00")

    assert quota_period_start("DAY", moment) == datetime(2026, 3, 11, tzinfo=timezone.utc)


def test_quota_counter_resets_in_next_period():
    wall_clock = FakeWallClock(datetime(2026, 3, 11, 23, 0, tzinfo=timezone.utc))
    quota = QuotaCounter(limit=2, period="DAY", wall_clock=wall_clock)

    assert [quota.take() for _ in range(3)] == [True, True, False]
    assert quota.remaining == 0

    wall_clock.now = datetime(2026, 3, 12, 0, 0, 1, tzinfo=timezone.utc)
    assert quota.take() is True
    assert quota.remaining == 1


def test_usage_plans_find_only_configured_key_values():
    keys = build_api_keys([plan(keys=("team", "ops"))], {"team": "team-secret-value"})
    plans = UsagePlans([plan(keys=("team", "ops"))], keys)

    assert plans.find_key("team-secret-value").name == "team"
    assert plans.find_key(keys[1].value).name == "ops"
    assert plans.find_key(None) is None
    assert plans.find_key("") is None
    assert plans.find_key("team-secret-valu") is None
    assert plans.find_key("team-secret-value ") is None


def test_throttled_request_does_not_use_quota():
    clock = FakeClock()
    wall_clock = FakeWallClock(datetime(2026, 3, 11, 12, tzinfo=timezone.utc))
    config = plan(rate=1.0, burst=1, quota=2, period="DAY")
    plans = UsagePlans([config], build_api_keys([config]), clock=clock, wall_clock=wall_clock)
    (key,) = plans.keys

    assert plans.admit(key) is Outcome.ALLOWED
    assert plans.admit(key) is Outcome.THROTTLED
    assert plans.quota_remaining(key) == 1

    clock.now += 1
    assert plans.admit(key) is Outcome.ALLOWED
    clock.now += 1
    assert plans.admit(key) is Outcome.QUOTA_EXCEEDED


def test_each_key_has_its_own_throttle_and_quota():
    plans_config = [plan("small", rate=1.0, burst=1, quota=1, period="MONTH", keys=("a", "b")), plan("big", keys=("c",))]
    plans = UsagePlans(plans_config, build_api_keys(plans_config), clock=FakeClock())
    a, b, c = plans.keys

    assert plans.admit(a) is Outcome.ALLOWED
    assert plans.admit(b) is Outcome.ALLOWED
    assert plans.admit(c) is Outcome.ALLOWED
    assert plans.quota_remaining(a) == 0
    assert plans.quota_remaining(c) is None


def test_generated_keys_differ_and_names_are_checked():
    keys = build_api_keys([plan(keys=("team", "ops"))])

    assert keys[0].value != keys[1].value
    assert len(keys[0].value) >= 40
    assert [(key.name, key.plan, key.key_id) for key in keys] == [
        ("team", "default", "local-team"),
        ("ops", "default", "local-ops"),
    ]
    with pytest.raises(ValueError, match="nobody"):
        build_api_keys([plan()], {"nobody": "value"})


def test_stage_throttle_uses_method_bucket_when_configured():
    throttle = StageThrottle(1.0, 1, {("/status", "GET"): (5.0, 3)}, clock=FakeClock())

    assert [throttle.admit("/generate", "POST") for _ in range(2)] == [True, False]
    assert [throttle.admit("/status", "GET") for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize(
    "response_type, status, code, message, retry_after",
    [
        ("THROTTLED", 429, "throttled", "Too Many Requests", "5"),
        ("QUOTA_EXCEEDED", 429, "quota_exceeded", "Limit Exceeded", "3600"),
        ("REQUEST_TOO_LARGE", 413, "payload_too_large", "Request Too Long", None),
        ("INVALID_API_KEY", 403, "forbidden", GATEWAY_RESPONSES["INVALID_API_KEY"][2], None),
        ("MISSING_AUTHENTICATION_TOKEN", 403, "forbidden", GATEWAY_RESPONSES["MISSING_AUTHENTICATION_TOKEN"][2], None),
        ("INTEGRATION_TIMEOUT", 504, "generation_timeout", GATEWAY_RESPONSES["INTEGRATION_TIMEOUT"][2], None),
        ("FUNCTION_ERROR", 502, "internal_error", "Internal server error", None),
        ("BAD_REQUEST", 400, "invalid_request", "Bad Request", None),
    ],
)
def test_gateway_response_applies_deployed_customization(response_type, status, code, message, retry_after):
    actual_status, headers, body = gateway_response(response_type)

    assert actual_status == status
    assert body == {"error": code, "message": message}
    assert dict(headers).get("Retry-After") == retry_after
    assert dict(headers)["Content-Type"] == "application/json"


def incoming(**changes) -> IncomingRequest:
    fields = {
        "http_method": "POST",
        "stage": "v1",
        "resource": "/generate",
        "query": "",
        "headers": [("Host", "127.0.0.1:8000"), ("x-api-key", "secret"), ("Accept", "a"), ("Accept", "b")],
        "body": b'{"input": "hi"}',
        "source_ip": "127.0.0.1",
        "host": "127.0.0.1:8000",
    }
    return IncomingRequest(**{**fields, **changes})


def test_proxy_event_has_rest_payload_fields():
    key = ApiKey(name="team", plan="default", value="secret")

    event = build_proxy_event(incoming(query="a=1&a=2&b="), key, "request-1")

    assert event["resource"] == "/generate"
    assert event["path"] == "/generate"
    assert event["httpMethod"] == "POST"
    assert event["body"] == '{"input": "hi"}'
    assert event["isBase64Encoded"] is False
    assert event["headers"]["Accept"] == "b"
    assert event["multiValueHeaders"]["Accept"] == ["a", "b"]
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["queryStringParameters"] == {"a": "2", "b": ""}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [""]}
    context = event["requestContext"]
    assert context["requestId"] == "request-1"
    assert context["stage"] == "v1"
    assert context["path"] == "/v1/generate"
    assert context["resourcePath"] == "/generate"
    assert context["identity"]["apiKeyId"] == "local-team"
    assert context["identity"]["apiKey"] == "secret"
    assert context["identity"]["sourceIp"] == "127.0.0.1"


def test_proxy_event_empty_body_is_none():
    event = build_proxy_event(incoming(body=b""), ApiKey(name="team", plan="default", value="secret"))

    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    assert event["queryStringParameters"] is None


def test_proxy_event_binary_body_is_base64():
    event = build_proxy_event(incoming(body=b"\xff\xfe"), ApiKey(name="team", plan="default", value="secret"))

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xfe"


def test_proxy_response_merges_header_forms():
    response = parse_proxy_response(
        {
            "statusCode": 503,
            "headers": {"Retry-After": "300", "X-Both": "same"},
            "multiValueHeaders": {"Content-Type": ["application/json"], "X-Both": ["same", "other"]},
            "body": json.dumps({"error": "endpoint_not_running"}),
            "isBase64Encoded": False,
        }
    )

    assert response.status == 503
    assert sorted(response.headers) == [
        ("Content-Type", "application/json"),
        ("Retry-After", "300"),
        ("X-Both", "other"),
        ("X-Both", "same"),
    ]
    assert json.loads(response.body) == {"error": "endpoint_not_running"}


def test_proxy_response_decodes_base64_body():
    response = parse_proxy_response({"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True})

    assert response.body == b"\x00\x01"


@pytest.mark.parametrize(
    "response",
    [
        {"statusCode": "200", "body": ""},
        {"statusCode": 700, "body": ""},
        {"statusCode": True, "body": ""},
        {"statusCode": 200, "body": {"generated_text": "x"}},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
        {"statusCode": 200, "multiValueHeaders": {"X": "not-a-list"}},
    ],
)
def test_invalid_proxy_response_rejected(response):
    with pytest.raises(InvalidProxyResponse):
        parse_proxy_response(response)


def write_cdk_json(tmp_path: Path, context: dict) -> Path:
    path = tmp_path / "cdk.json"
    path.write_text(json.dumps({"app": "python3 app.py", "context": context}))
    return path


def test_local_config_ignores_hosting_keys(tmp_path):
    cdk_json = write_cdk_json(
        tmp_path,
        {
            "profile": "bloom-176b-int8",
            "namePrefix": "trial",
            "instanceType": "ml.p4d.24xlarge",
            "tensorParallelDegree": 8,
            "usagePlans": [{"name": "small", "rateLimit": 2, "burstLimit": 4, "quota": {"limit": 9, "period": "WEEK"}, "keys": ["dev"]}],
        },
    )

    config = load_local_config("bloom-1b7", cdk_json=cdk_json)

    assert config.source == cdk_json
    assert config.deployment.profile.name == "bloom-1b7"
    assert config.deployment.endpoint_name == "trial-endpoint"
    assert config.api.usage_plans == (plan("small", rate=2.0, burst=4, quota=9, period="WEEK", keys=("dev",)),)


def test_local_config_overrides_as_cdk_context(tmp_path):
    cdk_json = write_cdk_json(tmp_path, {"namePrefix": "trial"})
    overrides = dict(
        parse_context_option(text)
        for text in ["namePrefix=other", 'usagePlans=[{"name": "x1", "rateLimit": 1, "burstLimit": 1, "keys": ["k1"]}]']
    )

    config = load_local_config("bloom-1b7", overrides, cdk_json=cdk_json)

    assert config.deployment.name_prefix == "other"
    assert config.api.usage_plans[0].keys == ("k1",)


def test_local_config_rejects_invalid_usage_plans(tmp_path):
    cdk_json = write_cdk_json(tmp_path, {"usagePlans": [{"name": "x1", "rateLimit": 0, "burstLimit": 1, "keys": ["k1"]}]})

    with pytest.raises(ConfigError, match="rateLimit"):
        load_local_config("bloom-1b7", cdk_json=cdk_json)


def test_context_option_needs_key_and_equals_sign():
    assert parse_context_option("usagePlans=[]") == ("usagePlans", "[]")
    with pytest.raises(ConfigError, match="key=value"):
        parse_context_option("usagePlans")


@pytest.mark.parametrize("profile, max_num_beams", [("bloom-1b7", "5"), ("bloom-176b-int8", "1")])
def test_function_environment_carries_profile_bounds(profile, max_num_beams):
    config = load_local_config(profile)

    environment = local_function_environment(
        invoke_function_environment(config.deployment, config.api), "http://127.0.0.1:1", "http://127.0.0.1:2"
    )

    assert environment["PROFILE_NAME"] == profile
    assert environment["MAX_NUM_BEAMS"] == max_num_beams
    assert environment["ENDPOINT_NAME"] == config.deployment.endpoint_name
    assert environment["SAGEMAKER_RUNTIME_ENDPOINT_URL"] == "http://127.0.0.1:1"
    assert environment["SAGEMAKER_ENDPOINT_URL"] == "http://127.0.0.1:2"
    assert environment["AWS_EC2_METADATA_DISABLED"] == "true"
    assert environment["AWS_PROFILE"] is None
