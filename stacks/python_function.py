"""A Python Lambda function as this project builds them: arm64, current runtime, own log group and role.

All functions share one code asset, the ``lambda/`` folder, so that packages such as ``invoke_api`` and
``control_plane`` import each other the same way in Lambda, in tests and in the CLI. No bundling step runs:
the code uses only boto3 (in the runtime) and AWS Lambda Powertools (from its public layer).
"""

from pathlib import Path

from aws_cdk import Aws, Duration, RemovalPolicy, aws_iam as iam, aws_lambda as lambda_, aws_logs as logs
from constructs import Construct

LAMBDA_CODE_DIR = Path(__file__).resolve().parent.parent / "lambda"
RUNTIME = lambda_.Runtime.PYTHON_3_13

# Powertools for AWS Lambda (Python) v3, public layer for Python 3.13 on arm64, published by AWS in every
# commercial region under account 017000801446. Version 27 is the one the Powertools docs list for v3.
POWERTOOLS_LAYER_ARN = (
    "arn:{partition}:lambda:{region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-arm64:27"
)

LOG_RETENTION = logs.RetentionDays.ONE_MONTH


class PythonFunction(Construct):
    """A Lambda function from the shared ``lambda/`` asset with its own log group and execution role.

    ``handler`` is the dotted path inside ``lambda/``, for example ``invoke_api.handler.lambda_handler``.
    The role starts with permission to write to its own log group only; callers add what else it needs
    with ``grant_*`` methods or ``role.add_to_policy``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function_name: str,
        handler: str,
        description: str,
        environment: dict[str, str] | None = None,
        timeout: Duration = Duration.seconds(30),
        memory_size: int = 256,
        reserved_concurrent_executions: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)

        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=f"/aws/lambda/{function_name}",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )

        self.role = iam.Role(
            self,
            "Role",
            role_name=f"{function_name}-role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of the {function_name} Lambda function",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[f"{self.log_group.log_group_arn}"],
            )
        )

        powertools = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "PowertoolsLayer",
            POWERTOOLS_LAYER_ARN.format(partition=Aws.PARTITION, region=Aws.REGION),
        )

        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description=description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=lambda_.Code.from_asset(
                str(LAMBDA_CODE_DIR), exclude=["**/__pycache__", "**/*.pyc", "**/tests"]
            ),
            layers=[powertools],
            role=self.role,
            log_group=self.log_group,
            timeout=timeout,
            memory_size=memory_size,
            reserved_concurrent_executions=reserved_concurrent_executions,
            environment={
                "POWERTOOLS_LOG_LEVEL": "INFO",
                "POWERTOOLS_LOGGER_LOG_EVENT": "false",
                **(environment or {}),
            },
        )
        self.function_name = function_name
