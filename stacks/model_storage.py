"""Model storage: the S3 bucket that holds the weights and the model artifacts."""

from aws_cdk import Duration, RemovalPolicy, aws_s3 as s3
from constructs import Construct


class ModelStorage(Construct):
    """An encrypted, private, TLS-only bucket for model weights, with its own access log bucket.

    The bucket is kept on ``cdk destroy`` unless ``keep_on_destroy`` is false: copying about 180 GB of
    weights again takes hours.
    """

    def __init__(self, scope: Construct, construct_id: str, *, bucket_name: str, keep_on_destroy: bool) -> None:
        super().__init__(scope, construct_id)

        removal_policy = RemovalPolicy.RETAIN if keep_on_destroy else RemovalPolicy.DESTROY

        self.access_log_bucket = s3.Bucket(
            self,
            "AccessLogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(365))],
            removal_policy=removal_policy,
            auto_delete_objects=False,
        )

        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=bucket_name,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=False,
            server_access_logs_bucket=self.access_log_bucket,
            server_access_logs_prefix="model-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="AbortIncompleteMultipartUploads",
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
            removal_policy=removal_policy,
        )
