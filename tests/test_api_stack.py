"""Template tests of the API stack: API keys and usage plans, throttling, logging, timeouts, the invoke
function's permissions, the outputs, and the OpenAPI description."""

import json
from pathlib import Path

import pytest
from aws_cdk.assertions import Match, Template

from invoke_api import timeouts
from invoke_api.schema import api_schemas
from stacks.api_config import STATUS_CONCURRENCY, load_api_config
from stacks.profiles import PROFILES
from stacks.serving_properties import render_serving_properties

pytestmark = pytest.mark.synth

TWO_PLANS = [
    {"name": "interactive", "rateLimit": 2, "burstLimit": 4, "quota": {"limit": 500, "period": "DAY"},
     "keys": ["team-a", "team-b"]},
    {"name": "batch", "rateLimit": 0.5, "burstLimit": 1, "quota": {"limit": 20000, "period": "MONTH"}, "keys": ["etl"]},
]


def resources_of(template: dict, resource_type: str) -> dict[str, dict]:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == resource_type}


def ref(value) -> str:
    assert isinstance(value, dict) and set(value) == {"Ref"}, value
    return value["Ref"]


@pytest.fixture(scope="module")
def api_template(default_synth) -> dict:
    return default_synth.templates["ApiStack"]


@pytest.fixture(scope="module")
def two_plans_synth(synth):
    return synth(usagePlans=TWO_PLANS, invokeConcurrency=4)


def test_every_method_requires_api_key(api_template):
    """Every method except a CORS preflight (OPTIONS) and the IAM-authorized admin routes requires an API key."""
    methods = resources_of(api_template, "AWS::ApiGateway::Method")

    assert {method["Properties"]["HttpMethod"] for method in methods.values()} >= {"POST", "GET"}
    for logical_id, method in methods.items():
        if method["Properties"]["HttpMethod"] == "OPTIONS" or method["Properties"]["AuthorizationType"] == "AWS_IAM":
            continue
        assert method["Properties"]["ApiKeyRequired"] is True, logical_id


def stage_usage_by_key(template: dict) -> dict[str, list[str]]:
    """Map each API key's name to the names of the deployed stages that its usage plans include."""
    stages = resources_of(template, "AWS::ApiGateway::Stage")
    plans = resources_of(template, "AWS::ApiGateway::UsagePlan")
    keys = resources_of(template, "AWS::ApiGateway::ApiKey")
    plan_keys = resources_of(template, "AWS::ApiGateway::UsagePlanKey").values()

    usage = {}
    for key_id, key in keys.items():
        stage_names = []
        for plan_key in plan_keys:
            if ref(plan_key["Properties"]["KeyId"]) != key_id:
                continue
            plan = plans[ref(plan_key["Properties"]["UsagePlanId"])]
            for api_stage in plan["Properties"]["ApiStages"]:
                stage = stages[ref(api_stage["Stage"])]
                assert api_stage["ApiId"] == stage["Properties"]["RestApiId"]
                stage_names.append(stage["Properties"]["StageName"])
        usage[key["Properties"]["Name"]] = stage_names
    return usage


def test_every_key_in_plan_with_deployed_stage(api_template):
    """Every API key belongs to a usage plan that includes the deployed stage, so no key gets 403 "API Stage
    is not in a Usage Plan"."""
    usage = stage_usage_by_key(api_template)

    assert usage == {"bloom-team": ["v1"]}


def test_configured_plans_and_keys(two_plans_synth):
    """Several plans from the configuration: each key is in its plan, on the deployed stage."""
    template = two_plans_synth.templates["ApiStack"]

    assert stage_usage_by_key(template) == {"bloom-team-a": ["v1"], "bloom-team-b": ["v1"], "bloom-etl": ["v1"]}


def test_plan_throttles_and_quotas_from_config(two_plans_synth):
    template = Template.from_json(two_plans_synth.templates["ApiStack"])

    template.resource_count_is("AWS::ApiGateway::UsagePlan", 2)
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "UsagePlanName": "bloom-interactive",
            "Throttle": {"RateLimit": 2, "BurstLimit": 4},
            "Quota": {"Limit": 500, "Period": "DAY"},
        },
    )
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "UsagePlanName": "bloom-batch",
            "Throttle": {"RateLimit": 0.5, "BurstLimit": 1},
            "Quota": {"Limit": 20000, "Period": "MONTH"},
        },
    )


def test_default_plan_from_cdk_json(api_template):
    Template.from_json(api_template).has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {"UsagePlanName": "bloom-default", "Throttle": {"RateLimit": 1, "BurstLimit": 2}, "Quota": {"Limit": 1000, "Period": "DAY"}},
    )


def stage_throttle(template: dict) -> tuple[float, int]:
    (stage,) = resources_of(template, "AWS::ApiGateway::Stage").values()
    (default_setting,) = [
        setting
        for setting in stage["Properties"]["MethodSettings"]
        if setting["HttpMethod"] == "*" and setting["ResourcePath"] == "/*"
    ]
    return default_setting["ThrottlingRateLimit"], default_setting["ThrottlingBurstLimit"]


def test_stage_throttle_sized_to_endpoint(default_synth, api_template):
    """The INT8 profile serves one generation at a time per instance, so the stage allows a burst of that plus
    the status headroom."""
    api_config = load_api_config(default_synth.app.config)

    assert api_config.generation_slots == 1
    assert stage_throttle(api_template) == (api_config.rate_limit, 1 + STATUS_CONCURRENCY)


def test_concurrency_override_sizes_stage_and_function(two_plans_synth):
    template = two_plans_synth.templates["ApiStack"]

    assert stage_throttle(template)[1] == 4 + STATUS_CONCURRENCY
    Template.from_json(template).has_resource_properties(
        "AWS::Lambda::Function",
        {"FunctionName": "bloom-invoke-api", "ReservedConcurrentExecutions": 4 + STATUS_CONCURRENCY},
    )


def test_rolling_batch_profile_has_more_slots(synth):
    """bloom-176b runs a vLLM rolling batch of option.max_rolling_batch_size requests per instance."""
    result = synth(profile="bloom-176b", instanceCount=2)
    properties = render_serving_properties(result.app.config)
    (batch_size,) = [
        int(line.split("=")[1]) for line in properties.splitlines() if line.startswith("option.max_rolling_batch_size=")
    ]

    assert batch_size > 1
    Template.from_json(result.templates["ApiStack"]).has_resource_properties(
        "AWS::Lambda::Function",
        {"FunctionName": "bloom-invoke-api", "ReservedConcurrentExecutions": 2 * batch_size + STATUS_CONCURRENCY},
    )


def test_regional_api_with_stage(api_template):
    template = Template.from_json(api_template)

    template.has_resource_properties(
        "AWS::ApiGateway::RestApi", {"EndpointConfiguration": {"Types": ["REGIONAL"]}, "ApiKeySourceType": "HEADER"}
    )
    template.has_resource_properties("AWS::ApiGateway::Stage", {"StageName": "v1"})


def test_access_log_without_bodies(api_template):
    (stage,) = resources_of(api_template, "AWS::ApiGateway::Stage").values()
    log_format = json.loads(stage["Properties"]["AccessLogSetting"]["Format"])

    assert log_format["requestId"] == "$context.requestId"
    assert log_format["apiKeyId"] == "$context.identity.apiKeyId"
    for variable in log_format.values():
        assert "body" not in variable.lower(), variable
    for setting in stage["Properties"]["MethodSettings"]:
        assert setting["DataTraceEnabled"] is False


def test_timeouts_ordered_in_template(api_template):
    """The read timeout handed to the function is below the function timeout, which is below the integration
    timeout of every method."""
    ((function_id, function),) = [
        (logical_id, resource)
        for logical_id, resource in resources_of(api_template, "AWS::Lambda::Function").items()
        if resource["Properties"].get("FunctionName") == "bloom-invoke-api"
    ]
    read_timeout = float(function["Properties"]["Environment"]["Variables"]["SAGEMAKER_READ_TIMEOUT_SECONDS"])
    function_timeout = function["Properties"]["Timeout"]
    # Only the methods that call the invoke function; other routes (the admin routes) call other functions.
    invoke_methods = [
        method
        for method in resources_of(api_template, "AWS::ApiGateway::Method").values()
        if function_id in json.dumps(method["Properties"]["Integration"].get("Uri"))
    ]

    assert read_timeout + timeouts.CONNECT_TIMEOUT_SECONDS < function_timeout
    assert sorted(method["Properties"]["HttpMethod"] for method in invoke_methods) == ["GET", "POST"]
    for method in invoke_methods:
        integration = method["Properties"]["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert function_timeout * 1000 < integration["TimeoutInMillis"] <= 29000


def test_function_gets_profile_bounds(api_template):
    profile = PROFILES["bloom-176b-int8"]
    Template.from_json(api_template).has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": "bloom-invoke-api",
            "Architectures": ["arm64"],
            "Runtime": Match.string_like_regexp(r"^python3\.1[3-9]$"),
            "Handler": "invoke_api.handler.lambda_handler",
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "ENDPOINT_NAME": "bloom-endpoint",
                        "PROFILE_NAME": "bloom-176b-int8",
                        "MAX_NEW_TOKENS": str(profile.max_new_tokens),
                        "MAX_TOTAL_TOKENS": str(profile.max_total_tokens),
                        "MAX_NUM_BEAMS": str(profile.max_num_beams),
                        "SUPPORTED_PARAMETERS": ",".join(profile.supported_parameters),
                    }
                )
            },
        },
    )


def test_function_may_only_invoke_and_describe_endpoint(api_template):
    sagemaker_statements = [
        statement
        for policy in resources_of(api_template, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if any(str(action).startswith("sagemaker:") for action in _as_list(statement["Action"]))
    ]

    assert len(sagemaker_statements) == 1
    (statement,) = sagemaker_statements
    assert sorted(_as_list(statement["Action"])) == ["sagemaker:DescribeEndpoint", "sagemaker:InvokeEndpoint"]
    assert json.dumps(statement["Resource"]).endswith(':endpoint/bloom-endpoint"]]}')


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize(
    ("response_type", "status", "code"),
    [
        ("INVALID_API_KEY", "403", "forbidden"),
        ("THROTTLED", "429", "throttled"),
        ("QUOTA_EXCEEDED", "429", "quota_exceeded"),
        ("REQUEST_TOO_LARGE", "413", "payload_too_large"),
        ("INTEGRATION_TIMEOUT", "504", "generation_timeout"),
        ("INTEGRATION_FAILURE", "429", "throttled"),
    ],
)
def test_gateway_errors_use_api_error_body(api_template, response_type, status, code):
    (response,) = [
        resource["Properties"]
        for resource in resources_of(api_template, "AWS::ApiGateway::GatewayResponse").values()
        if resource["Properties"]["ResponseType"] == response_type
    ]
    template_text = response["ResponseTemplates"]["application/json"]

    assert response["StatusCode"] == status
    assert f'"error": "{code}"' in template_text
    assert '"message":' in template_text
    if status == "429":
        assert "gatewayresponse.header.Retry-After" in response["ResponseParameters"]


def test_outputs_for_clients(api_template):
    outputs = api_template["Outputs"]
    command = json.dumps(outputs["ApiKeyValueCommandTeam"]["Value"])

    assert {"ApiUrl", "GenerateUrl", "RestApiId", "ApiKeyIds", "OpenApiExportCommand"} <= set(outputs)
    assert "aws apigateway get-api-key --api-key " in command
    assert "--include-value --query value --output text" in command
    assert '{\\"team\\":\\"' in json.dumps(outputs["ApiKeyIds"]["Value"])


def test_openapi_written_next_to_templates(default_synth):
    path = default_synth.assembly_dir / "ApiStack.openapi.json"

    assert path.exists()
    assert (default_synth.assembly_dir / "ApiStack.template.json").exists()
    assert json.loads(path.read_text())["openapi"].startswith("3.0")


def test_openapi_documents_api_key_header(default_synth):
    """The generated description documents the x-api-key header on every operation, because a request without
    it gets 403 from API Gateway."""
    document = json.loads((default_synth.assembly_dir / "ApiStack.openapi.json").read_text())
    scheme = document["components"]["securitySchemes"]["api_key"]

    assert scheme["type"] == "apiKey"
    assert scheme["in"] == "header"
    assert scheme["name"] == "x-api-key"
    assert document["security"] == [{"api_key": []}]
    assert "403" in scheme["description"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["security"] == [{"api_key": []}], f"{method} {path}"
            assert "403" in operation["responses"], f"{method} {path}"


def test_openapi_uses_function_schemas(default_synth):
    """The description's schemas are the ones the function validates with, for the deployed profile."""
    document = json.loads((default_synth.assembly_dir / "ApiStack.openapi.json").read_text())
    bounds = load_api_config(default_synth.app.config).bounds

    assert document["components"]["schemas"] == api_schemas(bounds)
    generate = document["paths"]["/generate"]["post"]
    assert generate["requestBody"]["content"]["application/json"]["example"]["input"]


def test_models_attached_to_api(default_synth, api_template):
    """The API's models carry the same schemas, and the methods use them."""
    bounds = load_api_config(default_synth.app.config).bounds
    models = {
        model["Properties"]["Name"]: model["Properties"]["Schema"]
        for model in resources_of(api_template, "AWS::ApiGateway::Model").values()
    }

    for name, schema in api_schemas(bounds).items():
        assert models[name] == {"$schema": "http://json-schema.org/draft-04/schema#", **schema}
    Template.from_json(api_template).has_resource_properties(
        "AWS::ApiGateway::Method",
        {"HttpMethod": "POST", "RequestModels": {"application/json": "GenerateRequest"}},
    )


def test_documentation_published_on_stage(api_template):
    (version,) = resources_of(api_template, "AWS::ApiGateway::DocumentationVersion").values()
    (stage,) = resources_of(api_template, "AWS::ApiGateway::Stage").values()
    parts = [part["Properties"] for part in resources_of(api_template, "AWS::ApiGateway::DocumentationPart").values()]
    api_key_parts = [part for part in parts if part["Location"].get("Name") == "x-api-key"]

    assert stage["Properties"]["DocumentationVersion"] == version["Properties"]["DocumentationVersion"]
    assert {part["Location"]["Method"] for part in api_key_parts} == {"POST", "GET"}
    for part in api_key_parts:
        assert part["Location"]["Type"] == "REQUEST_HEADER"
        assert json.loads(part["Properties"])["required"] is True


def test_readme_shows_api_key_header():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()

    assert '-H "x-api-key: $KEY"' in readme
    assert "get-api-key --api-key <key id> --include-value" in readme


def test_invoke_function_without_reservation_when_off(synth):
    template = synth(reserveInvokeConcurrency="false").templates["ApiStack"]
    invoke_functions = [
        resource["Properties"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Lambda::Function"
        and "SAGEMAKER_READ_TIMEOUT_SECONDS" in resource["Properties"].get("Environment", {}).get("Variables", {})
    ]

    assert invoke_functions
    for properties in invoke_functions:
        assert "ReservedConcurrentExecutions" not in properties
