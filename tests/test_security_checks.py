"""Security checks over every synthesized template: cdk-nag, cfn-lint and IAM breadth."""

import json

import pytest

from stacks.lint_templates import lint

pytestmark = pytest.mark.synth

PROFILES_TO_CHECK = ["bloom-176b-int8", "bloom-1b7"]

FORBIDDEN_ACTIONS = {"*", "sagemaker:*", "s3:*", "iam:*"}


def iam_statements(template: dict):
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        documents = []
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append(properties["PolicyDocument"])
        if resource["Type"] == "AWS::IAM::Role":
            documents.extend(policy["PolicyDocument"] for policy in properties.get("Policies", []))
        for document in documents:
            for statement in document["Statement"]:
                yield logical_id, statement


def managed_policy_arns(template: dict):
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Role":
            for arn in resource["Properties"].get("ManagedPolicyArns", []):
                yield json.dumps(arn)


@pytest.mark.parametrize("profile", PROFILES_TO_CHECK)
def test_cdk_nag_reports_no_unacknowledged_finding(synth, profile):
    """Any new cdk-nag finding fails here until it is fixed or acknowledged with a reason."""
    report = synth(profile=profile).validation_report

    assert report is not None, "cdk-nag did not run: no validation-report.json in the cloud assembly"
    (nag,) = [plugin for plugin in report["pluginReports"] if plugin["pluginName"] == "AwsSolutions"]
    findings = [
        f"{violation['ruleName']} at {construct['constructPath']}"
        for violation in nag["violations"]
        for construct in violation["violatingConstructs"]
    ]
    assert findings == []
    assert nag["conclusion"] == "success"


def test_every_acknowledgment_has_a_reason(default_synth):
    acknowledged = [
        suppressed
        for plugin in default_synth.validation_report["pluginReports"]
        for suppressed in plugin.get("suppressedViolations", [])
    ]

    assert acknowledged, "expected the acknowledged findings to be listed in the report"
    for suppressed in acknowledged:
        assert len(suppressed["reason"].split()) >= 5, suppressed["acknowledgedId"]


@pytest.mark.parametrize("profile", PROFILES_TO_CHECK)
def test_cfn_lint_finds_no_errors(synth, profile):
    assert lint(synth(profile=profile).assembly_dir) == 0


def test_no_statement_grants_full_service_access(default_synth):
    for stack_id, template in default_synth.templates.items():
        for logical_id, statement in iam_statements(template):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not FORBIDDEN_ACTIONS.intersection(actions), f"{stack_id}/{logical_id}: {actions}"


def test_no_full_access_managed_policy(default_synth):
    for stack_id, template in default_synth.templates.items():
        for arn in managed_policy_arns(template):
            assert "FullAccess" not in arn, f"{stack_id}: {arn}"


def test_no_template_creates_the_endpoint(default_synth):
    """The control plane owns the endpoint, so stopping it never drifts a stack."""
    for stack_id, template in default_synth.templates.items():
        types = {resource["Type"] for resource in template["Resources"].values()}
        assert "AWS::SageMaker::Endpoint" not in types, stack_id


def test_buckets_encrypted_private_and_tls_only(default_synth):
    for stack_id, template in default_synth.templates.items():
        buckets = {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::S3::Bucket"}
        policies = [r for r in template["Resources"].values() if r["Type"] == "AWS::S3::BucketPolicy"]
        for logical_id, bucket in buckets.items():
            properties = bucket["Properties"]
            assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"], logical_id
            assert properties["PublicAccessBlockConfiguration"] == {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            }, logical_id
            tls_denials = [
                policy
                for policy in policies
                if policy["Properties"]["Bucket"] == {"Ref": logical_id}
                and any(
                    statement["Effect"] == "Deny"
                    and statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
                    for statement in policy["Properties"]["PolicyDocument"]["Statement"]
                )
            ]
            assert tls_denials, f"{stack_id}/{logical_id} has no TLS-only policy"
