"""Template tests of the storage stack: the model bucket outlives the service."""

import pytest
from aws_cdk.assertions import Match, Template

pytestmark = pytest.mark.synth


def model_bucket(template: dict) -> dict:
    (bucket,) = [
        resource
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::S3::Bucket" and "LoggingConfiguration" in resource["Properties"]
    ]
    return bucket


def test_bucket_kept_on_destroy_by_default(default_synth):
    bucket = model_bucket(default_synth.templates["StorageStack"])

    assert bucket["DeletionPolicy"] == "Retain"
    assert bucket["UpdateReplacePolicy"] == "Retain"


def test_bucket_deleted_on_destroy_when_configured(synth):
    bucket = model_bucket(synth(keepWeightsOnDestroy="false").templates["StorageStack"])

    assert bucket["DeletionPolicy"] == "Delete"


def test_incomplete_multipart_uploads_aborted(default_synth):
    template = Template.from_json(default_synth.templates["StorageStack"])

    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [Match.object_like({"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}, "Status": "Enabled"})]
                )
            }
        },
    )


def test_bucket_name_from_prefix_account_and_region(default_synth):
    bucket = model_bucket(default_synth.templates["StorageStack"])

    assert bucket["Properties"]["BucketName"] == {
        "Fn::Join": ["", ["bloom-models-", {"Ref": "AWS::AccountId"}, "-", {"Ref": "AWS::Region"}]]
    }


def test_bucket_name_published_for_other_stacks(default_synth):
    template = Template.from_json(default_synth.templates["StorageStack"])

    template.has_resource_properties("AWS::SSM::Parameter", {"Name": "/bloom/model-bucket"})
    template.has_output("WeightsLocation", Match.any_value())
