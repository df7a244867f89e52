"""Inference API: a Regional REST API with API keys and usage plans in front of the invoke Lambda function.

Routes: ``POST /generate`` and ``GET /status``, both through one Lambda proxy integration, both requiring an
API key. Other routes (the control plane's admin routes) can be added later on ``rest_api`` or ``root``, and
methods added there require an API key unless their options turn it off.
"""

import hashlib
import json

from aws_cdk import Aws, Duration, RemovalPolicy, aws_apigateway as apigateway, aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.api_config import (
    GATEWAY_RESPONSES,
    STAGE_NAME,
    STATUS_BURST_LIMIT,
    STATUS_RATE_LIMIT,
    ApiConfig,
    UsagePlanConfig,
    invoke_function_environment,
)
from stacks.config import DeploymentConfig
from stacks.invoke_api_package import openapi, schema, timeouts
from stacks.python_function import LOG_RETENTION, PythonFunction

# Access log fields: who called which route, with what result and how long it took. No request or response
# bodies, so prompts and completions never reach the access log.
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "apiKeyId": "$context.identity.apiKeyId",
    "sourceIp": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationStatus": "$context.integrationStatus",
    "errorType": "$context.error.responseType",
    "errorMessage": "$context.error.message",
}


class InferenceApi(Construct):
    """The REST API, its stage, usage plans and keys, and the invoke function behind it."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, api_config: ApiConfig) -> None:
        super().__init__(scope, construct_id)
        timeouts.check_timeout_chain()

        self.config = config
        self.api_config = api_config
        self.openapi_document = openapi.build_openapi(
            api_config.bounds, title=f"BLOOM inference API ({config.name_prefix})", stage_name=STAGE_NAME
        )
        self.documentation_version = "docs-" + hashlib.sha256(
            json.dumps(self.openapi_document, sort_keys=True).encode()
        ).hexdigest()[:16]

        self.invoke_function = self._create_function()
        self.access_log_group = logs.LogGroup(
            self,
            "AccessLogGroup",
            log_group_name=f"/aws/apigateway/{config.name_prefix}-api/access",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.rest_api = self._create_rest_api()
        self.root = self.rest_api.root
        self.stage = self.rest_api.deployment_stage

        self._add_routes()
        self._add_gateway_responses()
        self.api_keys = self._add_usage_plans()
        self._add_documentation()

    def _create_function(self) -> PythonFunction:
        config = self.config
        function = PythonFunction(
            self,
            "InvokeFunction",
            function_name=f"{config.name_prefix}-invoke-api",
            handler="invoke_api.handler.lambda_handler",
            description=f"Validates generation requests and calls the SageMaker endpoint {config.endpoint_name}",
            environment=invoke_function_environment(config, self.api_config),
            timeout=Duration.seconds(timeouts.LAMBDA_TIMEOUT_SECONDS),
            reserved_concurrent_executions=self.api_config.reserved_concurrency,
        )

        # The endpoint does not exist while the model is stopped, so the statement names it by ARN, not by token.
        endpoint_arn = f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:endpoint/{config.endpoint_name}"
        function.role.add_to_policy(
            iam.PolicyStatement(actions=["sagemaker:InvokeEndpoint", "sagemaker:DescribeEndpoint"], resources=[endpoint_arn])
        )
        return function

    def _create_rest_api(self) -> apigateway.RestApi:
        config = self.config
        api_config = self.api_config
        return apigateway.RestApi(
            self,
            "RestApi",
            rest_api_name=f"{config.name_prefix}-api",
            description=f"BLOOM inference API of {config.name_prefix} ({config.profile.name})",
            endpoint_types=[apigateway.EndpointType.REGIONAL],
            api_key_source_type=apigateway.ApiKeySourceType.HEADER,
            default_method_options=apigateway.MethodOptions(api_key_required=True),
            cloud_watch_role=False,
            deploy_options=apigateway.StageOptions(
                stage_name=STAGE_NAME,
                access_log_destination=apigateway.LogGroupLogDestination(self.access_log_group),
                access_log_format=apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
                data_trace_enabled=False,
                throttling_rate_limit=api_config.rate_limit,
                throttling_burst_limit=api_config.burst_limit,
                method_options={
                    "/status/GET": apigateway.MethodDeploymentOptions(
                        throttling_rate_limit=STATUS_RATE_LIMIT, throttling_burst_limit=STATUS_BURST_LIMIT
                    )
                },
                documentation_version=self.documentation_version,
            ),
        )

    def _add_routes(self) -> None:
        self.models = {
            name: apigateway.CfnModel(
                self,
                f"{name}Model",
                rest_api_id=self.rest_api.rest_api_id,
                name=name,
                content_type="application/json",
                description=model_schema.get("description", name),
                schema={"$schema": "http://json-schema.org/draft-04/schema#", **model_schema},
            )
            for name, model_schema in schema.api_schemas(self.api_config.bounds).items()
        }
        self.model_references = {
            name: apigateway.Model.from_model_name(self, f"{name}ModelReference", name) for name in self.models
        }

        integration = apigateway.LambdaIntegration(
            self.invoke_function.function,
            proxy=True,
            timeout=Duration.seconds(timeouts.INTEGRATION_TIMEOUT_SECONDS),
            # No permission for the console's test invocations: only the deployed stage calls the function.
            allow_test_invoke=False,
        )
        operations = {
            ("generate", "POST"): ("GenerateRequest", "GenerateResponse"),
            ("status", "GET"): (None, "StatusResponse"),
        }
        for (path, http_method), (request_model, response_model) in operations.items():
            operation = self.openapi_document["paths"][f"/{path}"][http_method.lower()]
            method = self.root.add_resource(path).add_method(
                http_method,
                integration,
                api_key_required=True,
                operation_name=operation["operationId"],
                # Declared for the API's description only: API Gateway checks the key itself (403 without it).
                request_parameters={"method.request.header.x-api-key": True},
                request_models={"application/json": self.model_references[request_model]} if request_model else None,
                method_responses=[
                    apigateway.MethodResponse(
                        status_code=status,
                        response_models={
                            "application/json": self.model_references[response_model if status == "200" else "Error"]
                        },
                        response_parameters={"method.response.header.Retry-After": False}
                        if "headers" in response
                        else None,
                    )
                    for status, response in operation["responses"].items()
                    if status != "403"
                ],
            )
            for model in self.models.values():
                method.node.add_dependency(model)

    def _add_gateway_responses(self) -> None:
        for response_type, (code, status, message, retry_seconds) in GATEWAY_RESPONSES.items():
            message_json = json.dumps(message) if message else "$context.error.messageString"
            headers = {"Retry-After": f"'{retry_seconds}'"} if retry_seconds else None
            self.rest_api.add_gateway_response(
                f"{response_type.title().replace('_', '')}Response",
                type=getattr(apigateway.ResponseType, response_type.replace("4XX", "4_XX").replace("5XX", "5_XX")),
                status_code=status,
                response_headers=headers,
                templates={"application/json": f'{{"error": "{code}", "message": {message_json}}}'},
            )

    def _add_usage_plans(self) -> dict[str, apigateway.ApiKey]:
        """Create each configured plan on the deployed stage with its keys, and return the keys by name.

        Construct IDs come from the plan and key names, not from list positions, so that reordering the
        configuration does not replace a key and change its value.
        """
        keys = {}
        for plan_config in self.api_config.usage_plans:
            plan = self.rest_api.add_usage_plan(
                f"UsagePlan{pascal_case(plan_config.name)}",
                name=f"{self.config.name_prefix}-{plan_config.name}",
                description=f"Usage plan {plan_config.name} of the {self.config.name_prefix} BLOOM API",
                throttle=apigateway.ThrottleSettings(
                    rate_limit=plan_config.rate_limit, burst_limit=plan_config.burst_limit
                ),
                quota=_quota(plan_config),
                api_stages=[apigateway.UsagePlanPerApiStage(api=self.rest_api, stage=self.stage)],
            )
            for key_name in plan_config.keys:
                key = apigateway.ApiKey(
                    self,
                    f"ApiKey{pascal_case(key_name)}",
                    api_key_name=f"{self.config.name_prefix}-{key_name}",
                    description=f"API key {key_name} of usage plan {plan_config.name}",
                    enabled=True,
                )
                plan.add_api_key(key)
                keys[key_name] = key
        return keys

    def _add_documentation(self) -> None:
        """Attach the OpenAPI texts to the API as documentation parts and publish them on the stage."""
        info = self.openapi_document["info"]
        parts = {"ApiDocumentation": ({"type": "API"}, {"info": {"description": info["description"]}})}
        for path, methods in self.openapi_document["paths"].items():
            for http_method, operation in methods.items():
                prefix = f"{pascal_case(path.strip('/'))}{http_method.title()}"
                location = {"type": "METHOD", "path": path, "method": http_method.upper()}
                parts[f"{prefix}MethodDocumentation"] = (
                    location,
                    {"summary": operation["summary"], "description": operation["description"]},
                )
                for status, response in operation["responses"].items():
                    parts[f"{prefix}Response{status}Documentation"] = (
                        {**location, "type": "RESPONSE", "status_code": status},
                        {"description": response["description"]},
                    )
                parts[f"{prefix}ApiKeyDocumentation"] = (
                    {**location, "type": "REQUEST_HEADER", "name": "x-api-key"},
                    {"description": openapi.API_KEY_DESCRIPTION, "required": True},
                )

        version = apigateway.CfnDocumentationVersion(
            self,
            "DocumentationVersion",
            rest_api_id=self.rest_api.rest_api_id,
            documentation_version=self.documentation_version,
            description="OpenAPI texts generated from the request schema of the invoke function",
        )
        for construct_id, (location, properties) in parts.items():
            part = apigateway.CfnDocumentationPart(
                self,
                construct_id,
                rest_api_id=self.rest_api.rest_api_id,
                location=apigateway.CfnDocumentationPart.LocationProperty(**location),
                properties=json.dumps(properties),
            )
            # API Gateway documents only entities that exist.
            for method in self.rest_api.methods:
                part.node.add_dependency(method.node.default_child)
            version.node.add_dependency(part)
        self.stage.node.add_dependency(version)


def _quota(plan: UsagePlanConfig) -> apigateway.QuotaSettings | None:
    if plan.quota_limit is None:
        return None
    return apigateway.QuotaSettings(limit=plan.quota_limit, period=apigateway.Period[plan.quota_period])


def pascal_case(name: str) -> str:
    """Turn a configured name such as ``team-a`` into a construct ID part such as ``TeamA``."""
    return "".join(part.capitalize() for part in name.replace("/", "-").split("-") if part)
