"""Model storage: the S3 bucket that contains the weights and the model artifacts."""

from aws_cdk import Duration, RemovalPolicy, aws_iam as iam, aws_s3 as s3
from constructs import Construct

from stacks.nag import acknowledge


class ModelStorage(Construct):
    """An encrypted, private, TLS-only bucket for model weights, with its own access log bucket.

    The bucket is kept on ``cdk destroy`` unless ``keep_on_destroy`` is false: copying about 180 GB of
    weights again takes hours. A kept bucket blocks a new deploy of the same name, so ``use_existing`` adopts
    it instead. The stack then manages only its TLS-only policy. The bucket keeps the encryption, public
    access block, logging and lifecycle settings it was created with.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket_name: str,
        keep_on_destroy: bool,
        use_existing: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)

        if use_existing:
            self.access_log_bucket = None
            self.bucket = s3.Bucket.from_bucket_name(self, "Bucket", bucket_name)
            self._enforce_tls(self.bucket)
            return

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
            # A bucket that is not kept is emptied on destroy; CloudFormation cannot delete a full bucket.
            auto_delete_objects=not keep_on_destroy,
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
            auto_delete_objects=not keep_on_destroy,
        )
        if keep_on_destroy:
            # The TLS-only policy stays with the kept bucket, so the weights are never served over plain HTTP.
            self.bucket.policy.apply_removal_policy(RemovalPolicy.RETAIN)

    def _enforce_tls(self, bucket: s3.IBucket) -> None:
        policy = s3.BucketPolicy(self, "TlsOnlyPolicy", bucket=bucket)
        policy.document.add_statements(
            iam.PolicyStatement(
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["s3:*"],
                resources=[bucket.bucket_arn, bucket.arn_for_objects("*")],
                conditions={"Bool": {"aws:SecureTransport": "false"}},
            )
        )
        acknowledge(
            policy,
            "AwsSolutions::AwsSolutions-S10",
            "This policy denies every request without TLS to the adopted bucket and its objects; cdk-nag cannot "
            "match a bucket given by name to the resources of the policy.",
        )
