"""Tests of the template changes that the deploy cycle makes for moto, on small literal templates."""

import copy

from tests.e2e.moto_coverage import coverage_report, references_to_skipped, skipped_resources
from tests.e2e.moto_templates import MOTO_INSTANCE_TYPE, NO_OP_TYPE, PLACEHOLDER_PREFIX, adapt_template

TEMPLATE = {
    "Resources": {
        "Project": {"Type": "AWS::CodeBuild::Project", "Properties": {"Source": {"Type": "NO_SOURCE"}}},
        "Function": {"Type": "AWS::Lambda::Function", "Properties": {"Role": "arn:aws:iam::1:role/r"}},
        "FunctionLogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": {"Fn::Join": ["", ["/aws/lambda/", {"Ref": "Function"}]]}},
        },
        "Upload": {
            "Type": "Custom::CDKBucketDeployment",
            "DependsOn": "Function",
            "Properties": {"ServiceToken": {"Fn::GetAtt": ["Function", "Arn"]}},
        },
        "ProjectParameter": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {
                "Type": "String",
                "Value": {"Ref": "Project"},
                "Tags": {"project": "bloom-on-aws"},
            },
        },
        "ProjectArnParameter": {
            "Type": "AWS::SSM::Parameter",
            "Properties": {"Type": "String", "Value": {"Fn::GetAtt": ["Project", "Arn"]}},
        },
        "Policy": {
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "PolicyDocument": {
                    "Statement": [
                        {"Resource": {"Fn::Sub": "arn:aws:codebuild:${AWS::Region}:${AWS::AccountId}:project/${Project}"}},
                        {"Resource": {"Fn::Sub": ["${Name}-${Function}", {"Name": {"Ref": "Project"}}]}},
                    ]
                },
                "Roles": ["r"],
            },
        },
        "EndpointConfig": {
            "Type": "AWS::SageMaker::EndpointConfig",
            "Properties": {"ProductionVariants": [{"InstanceType": "ml.g5.xlarge", "ModelName": "m"}]},
        },
    },
    "Outputs": {
        "ProjectName": {"Value": {"Ref": "Project"}},
        "FunctionName": {"Value": {"Ref": "Function"}},
        "UploadedFiles": {"Value": {"Fn::GetAtt": ["Upload", "DestinationBucketArn"]}},
    },
}


def adapted() -> tuple[dict, list[str]]:
    template = copy.deepcopy(TEMPLATE)
    return template, adapt_template(template)


def test_skipped_resources_lists_unmodelled_types():
    assert skipped_resources(TEMPLATE) == {"Project": "AWS::CodeBuild::Project"}


def test_references_to_skipped_name_every_source():
    sources = {reference.source for reference in references_to_skipped(TEMPLATE)}

    assert sources == {"ProjectParameter", "ProjectArnParameter", "Policy", "Outputs.ProjectName"}
    assert "Project (AWS::CodeBuild::Project)" in coverage_report({"bloom-storage": TEMPLATE})


def test_ssm_parameter_tags_removed():
    template, _ = adapted()

    assert "Tags" not in template["Resources"]["ProjectParameter"]["Properties"]
    assert template["Resources"]["ProjectParameter"]["Properties"]["Type"] == "String"


def test_instance_type_replaced():
    template, changes = adapted()

    (variant,) = template["Resources"]["EndpointConfig"]["Properties"]["ProductionVariants"]
    assert variant["InstanceType"] == MOTO_INSTANCE_TYPE
    assert variant["ModelName"] == "m"
    assert f"EndpointConfig: InstanceType ml.g5.xlarge -> {MOTO_INSTANCE_TYPE}" in changes


def test_custom_resource_replaced_with_no_op():
    template, changes = adapted()
    upload = template["Resources"]["Upload"]

    assert upload["Type"] == NO_OP_TYPE
    assert "Properties" not in upload
    assert upload["DependsOn"] == "Function"
    assert template["Outputs"]["UploadedFiles"]["Value"] == PLACEHOLDER_PREFIX + "Upload"
    assert f"Upload: Custom::CDKBucketDeployment -> {NO_OP_TYPE}" in changes


def test_references_to_skipped_replaced():
    template, _ = adapted()
    resources = template["Resources"]
    statements = resources["Policy"]["Properties"]["PolicyDocument"]["Statement"]

    assert resources["ProjectParameter"]["Properties"]["Value"] == PLACEHOLDER_PREFIX + "Project"
    assert resources["ProjectArnParameter"]["Properties"]["Value"] == PLACEHOLDER_PREFIX + "Project"
    assert statements[0]["Resource"] == {
        "Fn::Sub": f"arn:aws:codebuild:${{AWS::Region}}:${{AWS::AccountId}}:project/{PLACEHOLDER_PREFIX}Project"
    }
    assert statements[1]["Resource"] == {"Fn::Sub": ["${Name}-${Function}", {"Name": PLACEHOLDER_PREFIX + "Project"}]}
    assert template["Outputs"]["ProjectName"]["Value"] == PLACEHOLDER_PREFIX + "Project"


def test_references_to_modelled_resources_kept():
    template, _ = adapted()

    assert template["Outputs"]["FunctionName"]["Value"] == {"Ref": "Function"}
    assert template["Resources"]["FunctionLogGroup"] == TEMPLATE["Resources"]["FunctionLogGroup"]
    assert template["Resources"]["Project"] == TEMPLATE["Resources"]["Project"]
