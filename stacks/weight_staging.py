"""Weight staging: the CodeBuild project that copies the profile's Hub repository into the weights prefix.

CodeBuild fits the job: it runs for hours (the 15-minute Lambda limit does not apply), needs no VPC or NAT
to reach the Hub, and bills only while a build runs. The build runs ``python -m weights_staging.job``, the
same code as ``bloomctl weights stage --local``. Its source is an S3 asset of the ``weights_staging`` and
``weights_manifest`` packages, copied by a local bundler, so synth needs no Docker.
"""

import shutil
from pathlib import Path

import jsii
from aws_cdk import (
    AssetHashType,
    BundlingOptions,
    CfnElement,
    DockerImage,
    Duration,
    ILocalBundling,
    RemovalPolicy,
    Stack,
    aws_codebuild as codebuild,
    aws_iam as iam,
    aws_logs as logs,
    aws_s3 as s3,
    aws_s3_assets as s3_assets,
)
from constructs import Construct

from stacks.config import DeploymentConfig
from stacks.nag import acknowledge
from stacks.weight_staging_settings import StagingSettings, load_staging_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
# Package name in the job's source, and the folder it is copied from.
JOB_PACKAGES = {
    "weights_staging": REPO_ROOT / "weights_staging",
    "weights_manifest": REPO_ROOT / "lambda" / "weights_manifest",
}

# Estimate: at 20-100 MB/s from the Hub to S3, one build copies 180 GB in about 0.5 to 2.5 hours. A resumed
# run skips what is done, so 12 hours leave room for a slow Hub without letting a stuck build run for days.
BUILD_TIMEOUT = Duration.hours(12)

# The job streams each file from the Hub to S3 in parts kept in memory, so it needs no disk for the weights.
# Disk is used only for small files without a published sha256. LARGE (8 vCPUs, 16 GiB, 128 GB disk) has the
# cores to hash and move the parts of two files at once.
COMPUTE_TYPE = codebuild.ComputeType.LARGE

BUILD_SPEC = {
    "version": "0.2",
    "phases": {
        "install": {
            # Python 3.12 is one of the runtimes that the Ubuntu standard:7.0 image provides.
            "runtime-versions": {"python": "3.12"},
            "commands": ['python3 -m pip install --quiet --disable-pip-version-check "boto3>=1.34,<2"'],
        },
        "build": {"commands": ["python3 -m weights_staging.job"]},
    },
}


@jsii.implements(ILocalBundling)
class _CopyJobPackages:
    """Copy the job's packages into the asset folder, so that bundling never starts Docker."""

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        for name, source in JOB_PACKAGES.items():
            shutil.copytree(source, Path(output_dir) / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return True


class WeightStaging(Construct):
    """The staging job: a CodeBuild project whose role can write only the weights prefix of the model bucket."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, bucket: s3.IBucket) -> None:
        super().__init__(scope, construct_id)

        self.config = config
        self.settings: StagingSettings = load_staging_settings(config)
        self.bucket = bucket

        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            log_group_name=f"/aws/codebuild/{self.settings.project_name}",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
            description=f"Weight staging job of {config.name_prefix}: writes the weights prefix "
            f"{config.weights_prefix} of the model bucket and its own logs",
        )
        self.source_asset = s3_assets.Asset(
            self,
            "SourceAsset",
            path=str(JOB_PACKAGES["weights_staging"]),
            asset_hash_type=AssetHashType.OUTPUT,
            bundling=BundlingOptions(
                # CDK requires an image, but does not pull it because the local bundler returns True.
                image=DockerImage.from_registry("scratch"),
                local=_CopyJobPackages(),
            ),
        )
        self.project = self._create_project()
        self._grant_weights_access()
        self._acknowledge_findings()

    def _create_project(self) -> codebuild.Project:
        return codebuild.Project(
            self,
            "Project",
            project_name=self.settings.project_name,
            description=f"Copies {self.settings.repository} into s3://<model bucket>/{self.config.weights_prefix}, "
            "verified against the Hub's hashes",
            role=self.role,
            source=codebuild.Source.s3(bucket=self.source_asset.bucket, path=self.source_asset.s3_object_key),
            build_spec=codebuild.BuildSpec.from_object(BUILD_SPEC),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=COMPUTE_TYPE,
                privileged=False,
            ),
            environment_variables=self._environment_variables(),
            timeout=BUILD_TIMEOUT,
            logging=codebuild.LoggingOptions(
                cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=self.log_group)
            ),
        )

    def _environment_variables(self) -> dict[str, codebuild.BuildEnvironmentVariable]:
        settings = self.settings
        values = {
            "STAGING_ACTION": "stage",
            "MODEL_BUCKET": self.bucket.bucket_name,
            "WEIGHTS_PREFIX": self.config.weights_prefix,
            "HF_REPOSITORY": settings.repository,
            "BLOOM_PROFILE": self.config.profile.name,
            "PYTHONUNBUFFERED": "1",
        }
        if settings.revision:
            values["WEIGHTS_REVISION"] = settings.revision
        if settings.hub_endpoint:
            values["HF_ENDPOINT"] = settings.hub_endpoint

        variables = {name: codebuild.BuildEnvironmentVariable(value=value) for name, value in values.items()}
        if settings.hub_token_secret_name:
            # CodeBuild reads the secret, a plain-text Hub token, when the build starts. aws-cdk-lib grants the
            # role GetSecretValue on that secret.
            variables["HF_TOKEN"] = codebuild.BuildEnvironmentVariable(
                type=codebuild.BuildEnvironmentVariableType.SECRETS_MANAGER,
                value=settings.hub_token_secret_name,
            )
        return variables

    def _grant_weights_access(self) -> None:
        """Allow reads and writes of objects under the weights prefix, and listing it; nothing else in the bucket."""
        prefix = self.config.weights_prefix
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WeightsObjects",
                actions=[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                resources=[self.bucket.arn_for_objects(f"{prefix}*")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListWeightsPrefix",
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
            )
        )
        # The service authorization reference lists no s3:prefix condition key for ListBucketMultipartUploads,
        # so the listing of unfinished uploads covers the bucket. It reveals keys and upload ids, not content.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListUnfinishedUploads",
                actions=["s3:ListBucketMultipartUploads"],
                resources=[self.bucket.bucket_arn],
            )
        )

    def _acknowledge_findings(self) -> None:
        """Acknowledge the cdk-nag findings on the job's role and project, each with the reason it is safe."""
        project_id = _logical_id(self.project.node.default_child)
        bucket_arn = self._bucket_arn_as_reported()
        reasons = {
            "AwsSolutions::AwsSolutions-IAM5[Action::s3:GetBucket*]": "Granted by the CodeBuild S3 source on the "
            "CDK asset bucket and the job's source zip only, so that CodeBuild can download the job's code.",
            "AwsSolutions::AwsSolutions-IAM5[Action::s3:GetObject*]": "Granted by the CodeBuild S3 source on the "
            "job's source zip in the CDK asset bucket only.",
            "AwsSolutions::AwsSolutions-IAM5[Action::s3:List*]": "Granted by the CodeBuild S3 source on the CDK "
            "asset bucket only; these actions read, they do not write.",
            "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:"
            f"log-group:/aws/codebuild/<{project_id}>:*]": "CodeBuild's default log group of this project; "
            "CodeBuild names the log streams after the builds, so the streams need a wildcard.",
            "AwsSolutions::AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:codebuild:<AWS::Region>:"
            f"<AWS::AccountId>:report-group/<{project_id}>-*]": "aws-cdk-lib grants every project its own test "
            "report groups, named after the project; this job creates none.",
            f"AwsSolutions::AwsSolutions-IAM5[Resource::{bucket_arn}/{self.config.weights_prefix}*]": "The job "
            "writes every file of the checkpoint under the weights prefix, and only there.",
        }
        for rule_id, reason in reasons.items():
            acknowledge(self.role, rule_id, reason)

        acknowledge(
            self.project,
            "AwsSolutions::AwsSolutions-CB4",
            "The project has no build artifacts and no cache, which are what a CodeBuild KMS key encrypts; the "
            "job writes only to the model bucket, encrypted with SSE-S3, and to its log group.",
        )

    def _bucket_arn_as_reported(self) -> str:
        """Return the bucket ARN as cdk-nag prints it: a GetAtt of the bucket, or the adopted bucket's name."""
        bucket = self.bucket.node.default_child
        if isinstance(bucket, CfnElement):
            return f"<{_logical_id(bucket)}.Arn>"
        name = self.config.bucket_name_pattern.format(account="<AWS::AccountId>", region="<AWS::Region>")
        return f"arn:<AWS::Partition>:s3:::{name}"


def _logical_id(element) -> str:
    """Return the logical ID of a CloudFormation element as a plain string, as cdk-nag prints it."""
    if not isinstance(element, CfnElement):
        raise TypeError(f"{element!r} is not a CloudFormation element")
    stack = Stack.of(element)
    return stack.resolve(stack.get_logical_id(element))
