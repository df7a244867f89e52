"""Builders shared by the control-plane tests: settings, the AWS resources a deployment has, a clock, and
SageMaker responses for botocore's Stubber.

moto models DynamoDB, SSM, S3, SNS, CloudWatch and CloudFormation well enough for the reconciler. Its
SageMaker creates an endpoint straight in InService and has no UpdateEndpoint, so tests of other endpoint
states stub SageMaker with expected parameters instead.
"""

import hashlib
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from control_plane.clients import AwsClients
from control_plane.reconciler import Reconciler
from control_plane.settings import DEPLOYMENT_TAG, ControlSettings, settings_parameter_name
from weights_manifest.check import WeightsCheck

REGION = "eu-west-1"
ACCOUNT = "123456789012"
DEPLOYMENT = "bloom"
ENDPOINT = "bloom-endpoint"
BUCKET = "bloom-models-123456789012-eu-west-1"
WEIGHTS_PREFIX = "weights/bloom-1b7/"
CONFIG_A = "EndpointConfig-aaaa"
CONFIG_B = "EndpointConfig-bbbb"
CONFIG_C = "EndpointConfig-cccc"
MODEL_A = "Model-aaaa"
MODEL_B = "Model-bbbb"
# moto accepts only older instance types in an EndpointConfig (no g5 or p4d), so moto-backed tests use this one.
MOTO_INSTANCE_TYPE = "ml.g4dn.xlarge"
# A Monday, 10:00 in Berlin (CEST).
MONDAY_MORNING = datetime(2025, 6, 2, 8, 0, tzinfo=timezone.utc)


def make_settings(**changes) -> ControlSettings:
    values = dict(
        deployment=DEPLOYMENT,
        endpoint_name=ENDPOINT,
        table_name=f"{DEPLOYMENT}-control",
        ssm_prefix=f"/{DEPLOYMENT}",
        hosting_stack_name=f"{DEPLOYMENT}-hosting",
        reconciler_function_name=f"{DEPLOYMENT}-reconciler",
        hourly_price_usd=1.41,
        expected_start_minutes=5,
        idle_stop_minutes=60,
        manual_start_max_hours=8,
        topic_arn=None,
    )
    values.update(changes)
    return ControlSettings(**values)


class FakeClock:
    """A clock that moves only when a test advances it."""

    def __init__(self, start: datetime = MONDAY_MORNING) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def moto_sagemaker_follows(clock: FakeClock, monkeypatch) -> None:
    """Make moto's SageMaker stamp creation and modification times from the fake clock, not the real one."""
    monkeypatch.setattr("moto.sagemaker.models.utcnow", lambda: clock().astimezone(timezone.utc).replace(tzinfo=None))


@pytest.fixture
def aws():
    """moto for every AWS service, for the length of one test."""
    with mock_aws():
        yield


@pytest.fixture
def clock(monkeypatch):
    """Monday 10:00 in Berlin; moto's SageMaker stamps its times from this clock too."""
    fake = FakeClock()
    moto_sagemaker_follows(fake, monkeypatch)
    return fake


def weights_ok(*_args) -> WeightsCheck:
    return WeightsCheck(True, "weights complete (test)")


_shared_session: boto3.Session | None = None


def shared_session() -> boto3.Session:
    """One boto3 session for all tests: a new session parses every service model again (about 0.1 s each)."""
    global _shared_session
    if _shared_session is None:
        _shared_session = boto3.Session(region_name=REGION)
    return _shared_session


def make_reconciler(settings: ControlSettings, clock: FakeClock, sagemaker=None, **options) -> Reconciler:
    """A reconciler on moto's services, with an optional SageMaker client (for example a stubbed one)."""
    overrides = {"sagemaker": sagemaker} if sagemaker is not None else {}
    options.setdefault("weights_check", weights_ok)
    options.setdefault("sleep", lambda _seconds: None)
    options.setdefault("lease_wait_seconds", 0)
    return Reconciler(settings, AwsClients(shared_session(), **overrides), clock=clock, **options)


def stubbed_sagemaker() -> tuple:
    client = shared_session().client("sagemaker")
    stubber = Stubber(client)
    stubber.activate()
    return client, stubber


def stubbed_reconciler(clock: FakeClock | None = None, config_name: str = CONFIG_A, **setting_changes):
    """Return a reconciler whose SageMaker is a Stubber, and the Stubber; the rest of AWS is moto.

    Only the control table and the hosting stack's parameters are created, because SageMaker is stubbed.
    The idle stop is off unless the test turns it on.
    """
    settings = make_settings(**{"idle_stop_minutes": 0, **setting_changes})
    create_table(settings)
    publish_hosting_parameters(settings, config_name)
    sagemaker, stubber = stubbed_sagemaker()
    return make_reconciler(settings, clock or FakeClock(), sagemaker=sagemaker), stubber


def create_table(settings: ControlSettings, session=None) -> None:
    (session or shared_session()).client("dynamodb").create_table(
        TableName=settings.table_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def put_parameter(name: str, value: str, session=None) -> None:
    ssm = (session or shared_session()).client("ssm")
    ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)


def publish_hosting_parameters(settings: ControlSettings, config_name: str = CONFIG_A, session=None) -> None:
    """Publish the parameters of the hosting and storage stacks, and the control stack's settings."""
    prefix = settings.ssm_prefix
    put_parameter(f"{prefix}/endpoint-name", settings.endpoint_name, session)
    put_parameter(f"{prefix}/endpoint-config-name", config_name, session)
    put_parameter(f"{prefix}/weights-prefix", WEIGHTS_PREFIX, session)
    put_parameter(f"{prefix}/profile", "bloom-1b7", session)
    put_parameter(f"{prefix}/model-bucket", BUCKET, session)
    put_parameter(settings_parameter_name(prefix), settings.to_json(), session)


def create_model_and_config(config_name: str, model_name: str, tagged: bool = True, session=None) -> None:
    sagemaker = (session or shared_session()).client("sagemaker")
    tags = [{"Key": DEPLOYMENT_TAG, "Value": DEPLOYMENT}] if tagged else []
    sagemaker.create_model(
        ModelName=model_name,
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/model-role",
        PrimaryContainer={"Image": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/djl-inference:test"},
        Tags=tags,
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=config_name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model_name,
                "InstanceType": MOTO_INSTANCE_TYPE,
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 1.0,
            }
        ],
        Tags=tags,
    )


def create_stable_hosting_stack(settings: ControlSettings) -> None:
    """A completed CloudFormation stack under the hosting stack's name, for the retained-config cleanup."""
    shared_session().client("cloudformation").create_stack(
        StackName=settings.hosting_stack_name,
        TemplateBody='{"Resources": {"Placeholder": {"Type": "AWS::SNS::Topic"}}}',
    )


def stage_weights(bucket: str = BUCKET, prefix: str = WEIGHTS_PREFIX, session=None) -> None:
    """Put one weights file and a manifest that lists it, as a finished staging run leaves them."""
    from weights_manifest.manifest import Manifest, ManifestFile, manifest_key, normalize_etag

    s3 = (session or shared_session()).client("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    content = b"tiny weights for the control plane tests"
    etag = s3.put_object(Bucket=bucket, Key=f"{prefix}model.safetensors", Body=content)["ETag"]
    manifest = Manifest(
        repository="bigscience/bloom-1b7",
        revision="main",
        commit="0" * 40,
        source="test",
        created_at="2025-06-01T00:00:00+00:00",
        files=(
            ManifestFile(
                path="model.safetensors",
                size=len(content),
                sha256=hashlib.sha256(content).hexdigest(),
                etag=normalize_etag(etag),
                verified_by="size-and-etag",
            ),
        ),
    )
    s3.put_object(Bucket=bucket, Key=manifest_key(prefix), Body=manifest.to_json().encode())


def create_deployment(
    settings: ControlSettings, config_name: str = CONFIG_A, model_name: str = MODEL_A, session=None
) -> None:
    """Create everything the control plane reads of a deployed app, in moto."""
    create_table(settings, session)
    publish_hosting_parameters(settings, config_name, session)
    create_model_and_config(config_name, model_name, session=session)


# SageMaker responses for the Stubber


def endpoint_response(
    status: str,
    config: str = CONFIG_A,
    created: datetime = MONDAY_MORNING - timedelta(minutes=30),
    modified: datetime | None = None,
    failure_reason: str | None = None,
) -> dict:
    response = {
        "EndpointName": ENDPOINT,
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}",
        "EndpointConfigName": config,
        "ProductionVariants": [{"VariantName": "AllTraffic", "CurrentInstanceCount": 1}],
        "EndpointStatus": status,
        "CreationTime": created,
        "LastModifiedTime": modified or created,
    }
    if failure_reason:
        response["FailureReason"] = failure_reason
    return response


def expect_describe(stubber: Stubber, status: str | None, **kwargs) -> None:
    """Queue one DescribeEndpoint response; ``status=None`` means the endpoint does not exist."""
    if status is None:
        stubber.add_client_error(
            "describe_endpoint",
            service_error_code="ValidationException",
            service_message=f"Could not find endpoint \"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}\".",
            http_status_code=400,
            expected_params={"EndpointName": ENDPOINT},
        )
        return
    stubber.add_response("describe_endpoint", endpoint_response(status, **kwargs), {"EndpointName": ENDPOINT})


def config_response(name: str, model: str, created: datetime) -> dict:
    return {
        "EndpointConfigName": name,
        "EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/{name.lower()}",
        "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": model}],
        "CreationTime": created,
    }


def expect_create(stubber: Stubber, config: str) -> None:
    stubber.add_response(
        "describe_endpoint_config", config_response(config, MODEL_A, MONDAY_MORNING), {"EndpointConfigName": config}
    )
    stubber.add_response(
        "create_endpoint",
        {"EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}"},
        {
            "EndpointName": ENDPOINT,
            "EndpointConfigName": config,
            "Tags": [{"Key": DEPLOYMENT_TAG, "Value": DEPLOYMENT}],
        },
    )


def expect_create_error(stubber: Stubber, config: str, code: str, message: str) -> None:
    """Queue a CreateEndpoint that SageMaker rejects, after the config check that precedes it."""
    stubber.add_response(
        "describe_endpoint_config", config_response(config, MODEL_A, MONDAY_MORNING), {"EndpointConfigName": config}
    )
    stubber.add_client_error("create_endpoint", service_error_code=code, service_message=message, http_status_code=400)


def expect_delete(stubber: Stubber) -> None:
    stubber.add_response("delete_endpoint", {}, {"EndpointName": ENDPOINT})


def expect_update(stubber: Stubber, config: str) -> None:
    stubber.add_response(
        "update_endpoint",
        {"EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}"},
        {"EndpointName": ENDPOINT, "EndpointConfigName": config},
    )
