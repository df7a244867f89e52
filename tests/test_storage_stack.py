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


def test_tls_policy_kept_with_kept_bucket(default_synth):
    template = default_synth.templates["StorageStack"]
    bucket_id = next(
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::S3::Bucket" and "LoggingConfiguration" in resource["Properties"]
    )
    (policy,) = [
        resource
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::S3::BucketPolicy" and resource["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]

    assert policy["DeletionPolicy"] == "Retain"


def test_bucket_not_kept_is_emptied_on_destroy(synth):
    template = Template.from_json(synth(keepWeightsOnDestroy="false").templates["StorageStack"])

    template.resource_count_is("Custom::S3AutoDeleteObjects", 2)


def test_existing_bucket_adopted_with_tls_policy(synth):
    """A bucket kept by an earlier destroy blocks a new create of the same name, so it is adopted."""
    template = synth(useExistingBucket="true").templates["StorageStack"]
    resource_types = [resource["Type"] for resource in template["Resources"].values()]
    (policy,) = [resource for resource in template["Resources"].values() if resource["Type"] == "AWS::S3::BucketPolicy"]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]

    assert "AWS::S3::Bucket" not in resource_types
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert "bloom-models-" in str(policy["Properties"]["Bucket"])
