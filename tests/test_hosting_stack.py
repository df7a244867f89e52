"""Template tests of the hosting stack: the Model, the EndpointConfig and the execution role."""

import json

import pytest
from aws_cdk.assertions import Match, Template

from stacks.config import load_config
from stacks.serving_properties import render_serving_properties
from tests.conftest import CDK_JSON_CONTEXT

pytestmark = pytest.mark.synth

# CloudFormation caps both timeouts at 3600 s; a 180 GB download and load needs at least half an hour each.
MIN_176B_TIMEOUT_SECONDS = 30 * 60


def resources_of_type(template: dict, resource_type: str) -> list[dict]:
    return [r for r in template["Resources"].values() if r["Type"] == resource_type]


def the_model(template: dict) -> dict:
    (model,) = resources_of_type(template, "AWS::SageMaker::Model")
    return model


def image_text(model: dict) -> str:
    return json.dumps(model["Properties"]["PrimaryContainer"]["Image"])


def test_default_endpoint_config_on_p4d_with_long_timeouts(default_synth):
    template = Template.from_json(default_synth.templates["HostingStack"])

    template.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {
            "ProductionVariants": [
                Match.object_like(
                    {
                        "InstanceType": "ml.p4d.24xlarge",
                        "InitialInstanceCount": 1,
                        "ModelDataDownloadTimeoutInSeconds": 3600,
                        "ContainerStartupHealthCheckTimeoutInSeconds": 3600,
                    }
                )
            ],
        },
    )
    variant = resources_of_type(default_synth.templates["HostingStack"], "AWS::SageMaker::EndpointConfig")[0][
        "Properties"
    ]["ProductionVariants"][0]
    assert variant["ModelDataDownloadTimeoutInSeconds"] >= MIN_176B_TIMEOUT_SECONDS
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] >= MIN_176B_TIMEOUT_SECONDS


def test_int8_profile_pins_deepspeed_image(default_synth):
    """The pre-sharded INT8 checkpoint loads only on the DeepSpeed image family, removed from LMI in 0.28.0."""
    image = image_text(the_model(default_synth.templates["HostingStack"]))

    assert "/djl-inference:0.21.0-deepspeed0.8.3-cu117" in image
    assert "lmi" not in image


def test_image_registry_resolved_per_region(default_synth):
    template = default_synth.templates["HostingStack"]
    image = image_text(the_model(template))
    accounts = template["Mappings"]["DlcRepositoryAccountMap"]

    assert '"Ref": "AWS::Region"' in image
    assert "Fn::FindInMap" in image
    assert accounts["us-east-1"]["value"] != accounts["ap-east-1"]["value"]
    assert len(accounts) > 20


def test_weights_come_from_the_project_bucket_prefix(default_synth):
    container = the_model(default_synth.templates["HostingStack"])["Properties"]["PrimaryContainer"]
    source = container["ModelDataSource"]["S3DataSource"]
    uri = json.dumps(source["S3Uri"])

    assert "ModelDataUrl" not in container
    assert source["S3DataType"] == "S3Prefix"
    assert source["CompressionType"] == "None"
    assert "s3://bloom-models-" in uri
    assert uri.endswith('/weights/bloom-176b-int8/"]]}')


def test_model_runs_with_network_isolation(default_synth):
    model = the_model(default_synth.templates["HostingStack"])

    assert model["Properties"]["EnableNetworkIsolation"] is True


def test_tensor_parallel_degree_reaches_container():
    config = load_config(CDK_JSON_CONTEXT.get)
    properties = render_serving_properties(config)

    assert "option.tensor_parallel_degree=8" in properties.splitlines()
    assert "engine=DeepSpeed" in properties.splitlines()
    assert "option.dtype=int8" in properties.splitlines()


def test_serving_properties_uploaded_next_to_weights(default_synth):
    template = Template.from_json(default_synth.templates["HostingStack"])

    template.has_resource_properties(
        "Custom::CDKBucketDeployment",
        {"DestinationBucketKeyPrefix": "weights/bloom-176b-int8/", "Prune": False},
    )


def test_small_profile_uses_one_gpu_on_current_lmi(synth):
    result = synth(profile="bloom-1b7")
    template = Template.from_json(result.templates["HostingStack"])
    image = image_text(the_model(result.templates["HostingStack"]))
    properties = render_serving_properties(load_config({**CDK_JSON_CONTEXT, "profile": "bloom-1b7"}.get))

    template.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {"ProductionVariants": [Match.object_like({"InstanceType": "ml.g5.xlarge"})]},
    )
    assert "-lmi" in image
    assert "deepspeed" not in image
    assert "option.tensor_parallel_degree=1" in properties.splitlines()


def test_endpoint_config_has_generated_name(default_synth):
    """A generated name lets any property change replace the config instead of failing the update."""
    (endpoint_config,) = resources_of_type(default_synth.templates["HostingStack"], "AWS::SageMaker::EndpointConfig")
    model = the_model(default_synth.templates["HostingStack"])

    assert "EndpointConfigName" not in endpoint_config["Properties"]
    assert "ModelName" not in model["Properties"]


def test_replaced_config_is_kept_for_running_endpoint(default_synth):
    """On replacement the old config stays until the control plane has moved the endpoint off it."""
    (endpoint_config,) = resources_of_type(default_synth.templates["HostingStack"], "AWS::SageMaker::EndpointConfig")
    model = the_model(default_synth.templates["HostingStack"])

    assert endpoint_config["UpdateReplacePolicy"] == "Retain"
    assert model["UpdateReplacePolicy"] == "Retain"
    assert endpoint_config.get("DeletionPolicy", "Delete") == "Delete"


@pytest.mark.parametrize("instance_type", ["ml.g5.2xlarge", "ml.g6.xlarge"])
def test_instance_type_change_synthesizes(synth, instance_type):
    """Changing the instance type needs no config name change: the generated name is replaced."""
    result = synth(profile="bloom-7b1", instanceType=instance_type)
    template = Template.from_json(result.templates["HostingStack"])

    template.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {"ProductionVariants": [Match.object_like({"InstanceType": instance_type})]},
    )


def test_role_reads_only_the_weights_prefix(default_synth):
    template = Template.from_json(default_synth.templates["HostingStack"])

    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "s3:GetObject",
                                "Resource": {
                                    "Fn::Join": ["", Match.array_with([Match.string_like_regexp("/weights/bloom-176b-int8/\\*$")])]
                                },
                            }
                        ),
                        Match.object_like(
                            {
                                "Action": "s3:ListBucket",
                                "Condition": {"StringLike": {"s3:prefix": ["weights/bloom-176b-int8/*"]}},
                            }
                        ),
                    ]
                )
            },
            "Roles": Match.any_value(),
        },
    )


def test_exports_for_control_plane(default_synth):
    template = Template.from_json(default_synth.templates["HostingStack"])

    for name in ("endpoint-name", "endpoint-config-name", "model-name", "weights-prefix", "profile"):
        template.has_resource_properties("AWS::SSM::Parameter", {"Name": f"/bloom/{name}"})
    template.has_output("EndpointName", {"Value": "bloom-endpoint"})
    template.has_output("EndpointConfigName", Match.any_value())


@pytest.mark.parametrize("profile", ["bloom-176b-int8", "bloom-1b7"])
def test_project_handler_uploaded_with_serving_properties(synth, profile):
    """Profiles served by model_artifacts/handler/model.py get it next to their serving.properties."""
    template = synth(profile=profile).templates["HostingStack"]
    (deployment,) = resources_of_type(template, "Custom::CDKBucketDeployment")

    assert len(deployment["Properties"]["SourceObjectKeys"]) == 2


def test_upload_waits_for_its_log_group(default_synth):
    """Otherwise Lambda could create the log group first and CloudFormation's create would fail."""
    template = default_synth.templates["HostingStack"]
    (deployment,) = resources_of_type(template, "Custom::CDKBucketDeployment")
    dependencies = deployment.get("DependsOn", [])

    assert any(template["Resources"][name]["Type"] == "AWS::Logs::LogGroup" for name in dependencies)
