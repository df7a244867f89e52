"""Hosting stack: the SageMaker Model and EndpointConfig, and what the control plane needs to find them."""

from aws_cdk import CfnOutput, Stack, aws_ssm as ssm
from constructs import Construct

from stacks.config import DeploymentConfig
from stacks.control_plane import add_endpoint_lifecycle
from stacks.nag import acknowledge
from stacks.model_bucket import import_model_bucket
from stacks.model_hosting import ModelHosting


class HostingStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        bucket = import_model_bucket(self, "ModelBucket", config)
        self.hosting = ModelHosting(self, "ModelHosting", config=config, bucket=bucket)
        self.endpoint_config_name = self.hosting.endpoint_config.attr_endpoint_config_name
        self.model_name = self.hosting.model.attr_model_name

        self._export(config)
        self.lifecycle = add_endpoint_lifecycle(self, config, self.hosting.model, self.hosting.endpoint_config)
        self._acknowledge_findings(config)

    def _export(self, config: DeploymentConfig) -> None:
        parameters = {
            "EndpointNameParameter": ("endpoint-name", config.endpoint_name, "Name of the SageMaker endpoint"),
            "EndpointConfigNameParameter": (
                "endpoint-config-name",
                self.endpoint_config_name,
                "EndpointConfig that the next start or update uses",
            ),
            "ModelNameParameter": ("model-name", self.model_name, "SageMaker Model of the current deployment"),
            "WeightsPrefixParameter": ("weights-prefix", config.weights_prefix, "Key prefix of the weights"),
            "ProfileParameter": ("profile", config.profile.name, "Model profile of this deployment"),
        }
        for construct_id, (name, value, description) in parameters.items():
            ssm.StringParameter(
                self,
                construct_id,
                parameter_name=f"{config.ssm_prefix}/{name}",
                string_value=value,
                description=description,
            )

        CfnOutput(self, "EndpointName", value=config.endpoint_name)
        CfnOutput(self, "EndpointConfigName", value=self.endpoint_config_name)
        CfnOutput(self, "ModelName", value=self.model_name)
        CfnOutput(self, "ImageUri", value=self.hosting.image_uri)

    def _acknowledge_findings(self, config: DeploymentConfig) -> None:
        hosting = self.hosting
        weights_objects = f"arn:<AWS::Partition>:s3:::{config.bucket_name_pattern.format(account='<AWS::AccountId>', region='<AWS::Region>')}/{config.weights_prefix}*"
        acknowledge(
            hosting.role,
            f"AwsSolutions::AwsSolutions-IAM5[Resource::{weights_objects}]",
            "The model reads every file under its own weights prefix, and only there.",
        )
        acknowledge(
            hosting.role,
            "AwsSolutions::AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level permissions; "
            "PutMetricData is limited to the SageMaker endpoint namespace by a condition.",
        )
        acknowledge(
            hosting.role,
            "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:"
            f"log-group:/aws/sagemaker/Endpoints/{config.endpoint_name}:*]",
            "Log streams of this deployment's endpoint only; SageMaker names the streams after instances.",
        )
        self._acknowledge_bucket_deployment(config)

    def _acknowledge_bucket_deployment(self, config: DeploymentConfig) -> None:
        """Acknowledge the findings on the upload function that aws-cdk-lib's BucketDeployment creates."""
        bucket_objects = "arn:<AWS::Partition>:s3:::" + config.bucket_name_pattern.format(
            account="<AWS::AccountId>", region="<AWS::Region>"
        )
        reasons = {
            "AwsSolutions::AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]": "BucketDeployment's upload function uses the managed basic execution "
            "policy to write its own logs; aws-cdk-lib does not offer a customer-managed alternative.",
            "AwsSolutions::AwsSolutions-IAM5[Action::s3:GetBucket*]": "Granted by BucketDeployment on the "
            "asset bucket and the model bucket only, to copy the model artifacts.",
            "AwsSolutions::AwsSolutions-IAM5[Action::s3:GetObject*]": "Granted by BucketDeployment on the "
            "asset bucket and the model bucket only, to copy the model artifacts.",
            "AwsSolutions::AwsSolutions-IAM5[Action::s3:List*]": "Granted by BucketDeployment on the asset "
            "bucket and the model bucket only, to copy the model artifacts.",
            "AwsSolutions::AwsSolutions-IAM5[Action::s3:Abort*]": "Granted by BucketDeployment on the model "
            "bucket only, to abort its own failed uploads.",
            "AwsSolutions::AwsSolutions-IAM5[Action::s3:DeleteObject*]": "Granted by BucketDeployment on the "
            "model bucket; prune is off, so the function never deletes the weights.",
            "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-"
            "<AWS::AccountId>-<AWS::Region>/*]": "The upload function reads the artifact zips from the CDK "
            "bootstrap asset bucket.",
            f"AwsSolutions::AwsSolutions-IAM5[Resource::{bucket_objects}/*]": "BucketDeployment grants write "
            "on the whole destination bucket; it writes only under the weights prefix given to it.",
            "AwsSolutions::AwsSolutions-L1": "aws-cdk-lib pins the runtime of BucketDeployment's upload "
            "function; it moves to newer runtimes with aws-cdk-lib releases.",
        }
        for rule_id, reason in reasons.items():
            acknowledge(self, rule_id, reason)
