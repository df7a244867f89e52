"""Storage stack: the model bucket, kept apart so that the service can be destroyed without the weights."""

from aws_cdk import CfnOutput, Stack, aws_ssm as ssm
from constructs import Construct

from stacks.config import DeploymentConfig
from stacks.model_bucket import model_bucket_name
from stacks.model_storage import ModelStorage
from stacks.weight_staging import WeightStaging


class StorageStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.storage = ModelStorage(
            self,
            "ModelStorage",
            bucket_name=model_bucket_name(config),
            keep_on_destroy=config.keep_weights_on_destroy,
            use_existing=config.use_existing_bucket,
        )
        self.bucket = self.storage.bucket

        ssm.StringParameter(
            self,
            "ModelBucketParameter",
            parameter_name=f"{config.ssm_prefix}/model-bucket",
            string_value=self.bucket.bucket_name,
            description="Name of the S3 bucket that contains the model weights and artifacts",
        )
        CfnOutput(self, "ModelBucketName", value=self.bucket.bucket_name)
        CfnOutput(self, "WeightsLocation", value=f"s3://{self.bucket.bucket_name}/{config.weights_prefix}")

        self.weight_staging = WeightStaging(self, "WeightStaging", config=config, bucket=self.bucket)
        ssm.StringParameter(
            self,
            "WeightsStagingProjectParameter",
            parameter_name=f"{config.ssm_prefix}/weights-staging-project",
            string_value=self.weight_staging.project.project_name,
            description="CodeBuild project that stages the weights: bloomctl weights stage",
        )
        CfnOutput(self, "WeightsStagingProject", value=self.weight_staging.project.project_name)

