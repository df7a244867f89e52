"""AWS clients of the control plane, created on first use from one boto3 session.

Tests pass their own clients (moto or botocore Stubber) for the services they exercise.
"""

from functools import cached_property

import boto3
from botocore.config import Config

CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
SERVICES = ("sagemaker", "ssm", "dynamodb", "cloudwatch", "cloudformation", "s3", "sns", "lambda")


class AwsClients:
    def __init__(self, session: boto3.Session | None = None, **overrides) -> None:
        unknown = set(overrides) - {service.replace("lambda", "lambda_") for service in SERVICES}
        if unknown:
            raise TypeError(f"unknown client(s): {', '.join(sorted(unknown))}")
        self._session = session
        self.__dict__.update(overrides)

    @cached_property
    def session(self) -> boto3.Session:
        return self._session or boto3.Session()

    def _client(self, service: str):
        return self.session.client(service, config=CLIENT_CONFIG)

    @cached_property
    def sagemaker(self):
        return self._client("sagemaker")

    @cached_property
    def ssm(self):
        return self._client("ssm")

    @cached_property
    def dynamodb(self):
        return self._client("dynamodb")

    @cached_property
    def cloudwatch(self):
        return self._client("cloudwatch")

    @cached_property
    def cloudformation(self):
        return self._client("cloudformation")

    @cached_property
    def s3(self):
        return self._client("s3")

    @cached_property
    def sns(self):
        return self._client("sns")

    @cached_property
    def lambda_(self):
        return self._client("lambda")
