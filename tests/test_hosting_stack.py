"""Template tests of the hosting stack: the Model, the EndpointConfig and the execution role."""

import pytest
from aws_cdk.assertions import Match, Template

pytestmark = pytest.mark.synth


def test_default_profile_endpoint_config(default_synth):
    template = Template.from_json(default_synth.templates["HostingStack"])

    template.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {
            "ProductionVariants": [
                Match.object_like(
                    {
                        "InstanceType": "ml.p4d.24xlarge",
                        "InitialInstanceCount": 1,
                        "ModelDataDownloadTimeoutInSeconds": Match.any_value(),
                        "ContainerStartupHealthCheckTimeoutInSeconds": Match.any_value(),
                    }
                )
            ],
        },
    )
