"""Model hosting: the SageMaker execution role, Model and EndpointConfig of one profile.

The endpoint itself is not created here. The on/off control plane creates and deletes it, so that stopping
the model never drifts a CloudFormation stack.
"""

from aws_cdk import (
    Aws,
    CfnDeletionPolicy,
    Stack,
    Tags,
    aws_iam as iam,
    aws_s3 as s3,
    aws_s3_deployment as s3_deployment,
    aws_sagemaker as sagemaker,
)
from aws_cdk.region_info import FactName
from constructs import Construct

from stacks.config import DeploymentConfig
from stacks.nag import acknowledge
from stacks.profiles import DLC_REPOSITORY
from stacks.serving_properties import (
    HANDLER_FILE,
    profile_artifacts_dir,
    render_serving_properties,
    uses_project_handler,
)

# Tag put on every Model and EndpointConfig of a deployment, so that the control plane can find the ones
# that a replacement left behind and delete them once no endpoint uses them.
DEPLOYMENT_TAG = "bloom:deployment"

# cfn-lint W3011 expects DeletionPolicy Retain next to UpdateReplacePolicy Retain. Here only replacement keeps
# the old resource; deleting the stack deletes it, after the control plane has removed the endpoint.
KEEP_ON_REPLACE_ONLY = {"config": {"ignore_checks": ["W3011"]}}
KEEP_ON_REPLACE_ONLY_REASON = (
    "Only replacement keeps the old resource, until the control plane has moved the endpoint off it; stack "
    "deletion deletes it after the endpoint is gone."
)


class ModelHosting(Construct):
    """The SageMaker Model and EndpointConfig for the configured profile, with a least-privilege role."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, bucket: s3.IBucket
    ) -> None:
        super().__init__(scope, construct_id)

        self.config = config
        self.bucket = bucket

        self.role = self._create_role()
        self.artifacts_deployment = self._deploy_artifacts()
        self.model = self._create_model()
        self.endpoint_config = self._create_endpoint_config()

        Tags.of(self).add(DEPLOYMENT_TAG, config.name_prefix)

    @property
    def image_uri(self) -> str:
        stack = Stack.of(self)
        account = stack.regional_fact(FactName.DLC_REPOSITORY_ACCOUNT)
        return f"{account}.dkr.ecr.{Aws.REGION}.{Aws.URL_SUFFIX}/{DLC_REPOSITORY}:{self.config.image_tag}"

    def _create_role(self) -> iam.Role:
        config = self.config
        stack = Stack.of(self)
        role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker execution role of the {config.name_prefix} model: reads its weights, "
            "pulls its image, writes its logs and metrics",
        )

        # Weights and artifacts: read only the profile's weights prefix.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[self.bucket.arn_for_objects(f"{config.weights_prefix}*")],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{config.weights_prefix}*"]}},
            )
        )

        # Container image: the Deep Learning Containers repository of this region.
        dlc_account = stack.regional_fact(FactName.DLC_REPOSITORY_ACCOUNT)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=[
                    f"arn:{Aws.PARTITION}:ecr:{Aws.REGION}:{dlc_account}:repository/{DLC_REPOSITORY}"
                ],
            )
        )
        # ecr:GetAuthorizationToken has no resource-level permissions.
        role.add_to_policy(iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]))

        # Logs of this deployment's endpoint only.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[
                    f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:"
                    f"/aws/sagemaker/Endpoints/{config.endpoint_name}:*"
                ],
            )
        )
        # cloudwatch:PutMetricData has no resource-level permissions; the namespace condition narrows it.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/Endpoints*"]}},
            )
        )
        return role

    def _deploy_artifacts(self) -> s3_deployment.BucketDeployment:
        """Upload serving.properties and the handler code next to the weights.

        SageMaker copies the whole weights prefix to /opt/ml/model before the container starts, so the
        container finds its configuration and the checkpoint in one folder. ``prune=False`` keeps the
        weights that the staging job put there.
        """
        config = self.config
        serving_properties = render_serving_properties(config)
        sources = [s3_deployment.Source.data("serving.properties", serving_properties)]
        if uses_project_handler(serving_properties):
            sources.append(s3_deployment.Source.data(HANDLER_FILE.name, HANDLER_FILE.read_text()))
        for path in sorted(profile_artifacts_dir(config.profile.name).iterdir()):
            if path.is_file() and path.name not in ("serving.properties", "README.md"):
                sources.append(s3_deployment.Source.data(path.name, path.read_text()))

        deployment = s3_deployment.BucketDeployment(
            self,
            "ArtifactsDeployment",
            destination_bucket=self.bucket,
            destination_key_prefix=config.weights_prefix,
            sources=sources,
            prune=False,
            retain_on_delete=True,
            memory_limit=256,
        )
        self._create_upload_log_group_first(deployment)
        return deployment

    @staticmethod
    def _create_upload_log_group_first(deployment: s3_deployment.BucketDeployment) -> None:
        """Make the upload run after the log group of BucketDeployment's shared function exists.

        aws-cdk-lib creates that log group next to the function but does not order the upload after it. If
        the function ran first, Lambda would create the group itself and CloudFormation's create would fail
        with "already exists".
        """
        stack = Stack.of(deployment)
        for child in stack.node.children:
            if child.node.id.startswith("Custom::CDKBucketDeployment"):
                log_group = child.node.try_find_child("LogGroup")
                if log_group is None:
                    continue
                for part in deployment.node.children:
                    if part.node.id.startswith("CustomResource"):
                        part.node.add_dependency(log_group)

    def _create_model(self) -> sagemaker.CfnModel:
        config = self.config
        model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=self.role.role_arn,
            enable_network_isolation=True,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=self.image_uri,
                mode="SingleModel",
                model_data_source=sagemaker.CfnModel.ModelDataSourceProperty(
                    s3_data_source=sagemaker.CfnModel.S3DataSourceProperty(
                        s3_uri=f"s3://{self.bucket.bucket_name}/{config.weights_prefix}",
                        s3_data_type="S3Prefix",
                        compression_type="None",
                    )
                ),
                environment={"BLOOM_PROFILE": config.profile.name},
            ),
        )
        model.node.add_dependency(self.artifacts_deployment)
        # On replacement CloudFormation keeps the old Model, because a running endpoint may still use it.
        # The control plane deletes it once no endpoint config refers to it.
        model.cfn_options.update_replace_policy = CfnDeletionPolicy.RETAIN
        model.add_metadata("cfn-lint", KEEP_ON_REPLACE_ONLY)
        acknowledge(model, "CloudFormation-Validate::W3011", KEEP_ON_REPLACE_ONLY_REASON)
        return model

    def _create_endpoint_config(self) -> sagemaker.CfnEndpointConfig:
        config = self.config
        variant = sagemaker.CfnEndpointConfig.ProductionVariantProperty(
            variant_name="AllTraffic",
            model_name=self.model.attr_model_name,
            instance_type=config.instance_type,
            initial_instance_count=config.instance_count,
            initial_variant_weight=1.0,
            model_data_download_timeout_in_seconds=config.model_data_download_timeout_seconds,
            container_startup_health_check_timeout_in_seconds=config.container_startup_health_check_timeout_seconds,
        )
        endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "EndpointConfig",
            production_variants=[variant],
            # No KmsKeyId: every supported GPU instance type has local NVMe storage, which SageMaker encrypts
            # with a hardware key, and SageMaker rejects a KmsKeyId for such instance types.
            # No EndpointConfigName: CloudFormation generates one, so that any property change replaces the
            # config cleanly instead of failing on a custom name.
        )
        # The old config is kept on replacement: deleting it while the endpoint is still updating away from
        # it fails the update ("Could not find endpoint configuration"). The control plane deletes it later.
        endpoint_config.cfn_options.update_replace_policy = CfnDeletionPolicy.RETAIN
        endpoint_config.add_metadata("cfn-lint", KEEP_ON_REPLACE_ONLY)
        acknowledge(endpoint_config, "CloudFormation-Validate::W3011", KEEP_ON_REPLACE_ONLY_REASON)
        return endpoint_config
