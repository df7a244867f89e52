"""The model bucket's deterministic name, so that stacks refer to it without cross-stack exports."""

from aws_cdk import Aws, aws_s3 as s3
from constructs import Construct

from stacks.config import DeploymentConfig


def model_bucket_name(config: DeploymentConfig) -> str:
    return config.bucket_name_pattern.format(account=Aws.ACCOUNT_ID, region=Aws.REGION)


def import_model_bucket(scope: Construct, construct_id: str, config: DeploymentConfig) -> s3.IBucket:
    """Refer to the storage stack's bucket by name.

    A name instead of an export keeps the stacks independent: the hosting, API and control stacks can be
    destroyed and deployed again while the bucket and its weights stay.
    """
    return s3.Bucket.from_bucket_name(scope, construct_id, model_bucket_name(config))
