"""API stack: the inference API, its outputs, and its OpenAPI description written next to the templates."""

import json
from pathlib import Path

from aws_cdk import Aws, CfnOutput, Stack, Stage
from constructs import Construct

from stacks.api_config import load_api_config
from stacks.config import DeploymentConfig
from stacks.control_plane import add_admin_routes
from stacks.inference_api import STAGE_NAME, InferenceApi, pascal_case
from stacks.nag import acknowledge

# Output keys that bloomctl reads.
API_URL_OUTPUT = "ApiUrl"
API_KEY_IDS_OUTPUT = "ApiKeyIds"


class ApiStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.api_config = load_api_config(config)
        self.api = InferenceApi(self, "InferenceApi", config=config, api_config=self.api_config)
        self.admin_methods = add_admin_routes(self.api.rest_api, config)

        self._add_outputs()
        self._acknowledge_findings()
        self.openapi_path = self._write_openapi()

    def _add_outputs(self) -> None:
        api = self.api
        rest_api = api.rest_api
        CfnOutput(self, API_URL_OUTPUT, value=rest_api.url, description="Base URL of the deployed stage")
        CfnOutput(self, "GenerateUrl", value=rest_api.url_for_path("/generate"), description="POST a prompt here")
        CfnOutput(self, "RestApiId", value=rest_api.rest_api_id)
        CfnOutput(
            self,
            API_KEY_IDS_OUTPUT,
            value=self.to_json_string({name: key.key_id for name, key in api.api_keys.items()}),
            description="API key ids by key name, as JSON",
        )
        for name, key in api.api_keys.items():
            CfnOutput(
                self,
                f"ApiKeyValueCommand{pascal_case(name)}",
                value=f"aws apigateway get-api-key --api-key {key.key_id} --include-value --query value "
                f"--output text --region {Aws.REGION}",
                description=f"Prints the value of API key {name}",
            )
        CfnOutput(
            self,
            "OpenApiExportCommand",
            value=f"aws apigateway get-export --rest-api-id {rest_api.rest_api_id} --stage-name {STAGE_NAME} "
            f"--export-type oas30 --accepts application/json --region {Aws.REGION} openapi.json",
            description="Writes the OpenAPI description of the deployed stage to openapi.json",
        )

    def _write_openapi(self) -> Path:
        """Write the OpenAPI description to ``<artifact id>.openapi.json`` in the cloud assembly folder."""
        outdir = Path(Stage.of(self).outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        path = outdir / f"{self.artifact_id}.openapi.json"
        path.write_text(json.dumps(self.api.openapi_document, indent=2) + "\n")
        return path

    def _acknowledge_findings(self) -> None:
        rest_api = self.api.rest_api
        acknowledge(
            rest_api,
            "AwsSolutions-APIG2",
            "The invoke function validates every body against the schemas that the API publishes as its models "
            "and returns a typed 400 that names the field and lists the allowed ones. API Gateway's validator "
            "would answer first with a generic message.",
        )
        for rule_id in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            acknowledge(
                rest_api,
                rule_id,
                "Callers authenticate with API keys that belong to usage plans, which is the access model this API "
                "offers to teams. There are no per-user identities to authorize.",
            )
        acknowledge(
            rest_api,
            "AwsSolutions-APIG6",
            "Execution logging needs the account-wide API Gateway CloudWatch role, an account setting that this "
            "app does not take over. Access logging is on for every method, and the invoke function logs every "
            "request.",
        )
        acknowledge(
            rest_api,
            "AwsSolutions-APIG3",
            "A web ACL costs a fixed monthly fee even while the model is stopped. Requests are limited by API keys, "
            "usage plan throttles and quotas, a stage throttle sized to the endpoint, and the function's body size "
            "limit.",
        )
        acknowledge(
            self.api.invoke_function.function,
            "AwsSolutions-L1",
            "All functions of this project share one runtime, pinned in stacks/python_function.py together with "
            "the Powertools layer build for that runtime, and both move together.",
        )
