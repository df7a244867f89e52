"""Template tests of the staging job: a CodeBuild project whose role writes only the weights prefix."""

import json

import pytest
from aws_cdk.assertions import Match, Template

from stacks.config import ConfigError, load_config
from stacks.weight_staging import BUILD_SPEC
from stacks.weight_staging_settings import load_staging_settings

pytestmark = pytest.mark.synth

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TOKEN_CONTEXT = {
    "profile": "bloom-1b7",
    "hubTokenSecretName": "bloom/hub-token",
    "weightsRevision": COMMIT,
    "hubEndpoint": "https://hub.example.invalid",
}
READ_ONLY_S3_PREFIXES = ("s3:Get", "s3:List")


def job_role_statements(template: dict) -> list[dict]:
    """Statements of every policy attached to the role that the CodeBuild project runs as."""
    (project,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodeBuild::Project"]
    role_id = project["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    statements = []
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in resource["Properties"]["Roles"]:
            statements.extend(resource["Properties"]["PolicyDocument"]["Statement"])
    assert template["Resources"][role_id]["Properties"].get("ManagedPolicyArns") is None
    assert template["Resources"][role_id]["Properties"].get("Policies") is None
    return statements


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def environment(template: dict) -> dict[str, dict]:
    (project,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodeBuild::Project"]
    return {variable["Name"]: variable for variable in project["Properties"]["Environment"]["EnvironmentVariables"]}


def test_project_runs_the_staging_job(default_synth):
    template = Template.from_json(default_synth.templates["StorageStack"])

    template.has_resource_properties(
        "AWS::CodeBuild::Project",
        {
            "Name": "bloom-weights-staging",
            "Environment": Match.object_like(
                {"ComputeType": "BUILD_GENERAL1_LARGE", "Image": "aws/codebuild/standard:7.0", "PrivilegedMode": False}
            ),
            "Source": Match.object_like({"Type": "S3"}),
            "TimeoutInMinutes": 720,
            "VpcConfig": Match.absent(),
            "LogsConfig": {"CloudWatchLogs": Match.object_like({"Status": "ENABLED"})},
        },
    )
    template.has_resource_properties(
        "AWS::Logs::LogGroup", {"LogGroupName": "/aws/codebuild/bloom-weights-staging", "RetentionInDays": 30}
    )
    template.has_resource_properties("AWS::SSM::Parameter", {"Name": "/bloom/weights-staging-project"})
    assert BUILD_SPEC["phases"]["build"]["commands"] == ["python3 -m weights_staging.job"]


def test_source_asset_holds_both_packages(default_synth):
    template = default_synth.templates["StorageStack"]
    (project,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodeBuild::Project"]
    location = json.dumps(project["Properties"]["Source"]["Location"])
    (asset_hash,) = [
        path.name.removeprefix("asset.")
        for path in default_synth.assembly_dir.glob("asset.*")
        if path.is_dir() and path.name.removeprefix("asset.") in location
    ]
    asset_dir = default_synth.assembly_dir / f"asset.{asset_hash}"

    assert (asset_dir / "weights_staging" / "job.py").is_file()
    assert (asset_dir / "weights_manifest" / "check.py").is_file()
    assert not list(asset_dir.rglob("__pycache__"))


def test_job_environment_names_profile_and_prefix(default_synth):
    variables = environment(default_synth.templates["StorageStack"])

    assert variables["HF_REPOSITORY"]["Value"] == "microsoft/bloom-deepspeed-inference-int8"
    assert variables["WEIGHTS_PREFIX"]["Value"] == "weights/bloom-176b-int8/"
    assert variables["BLOOM_PROFILE"]["Value"] == "bloom-176b-int8"
    assert variables["STAGING_ACTION"]["Value"] == "stage"
    # No revision, endpoint or token unless configured: the job then stops with a message naming the key.
    assert {"WEIGHTS_REVISION", "HF_ENDPOINT", "HF_TOKEN"}.isdisjoint(variables)


def test_role_writes_only_the_weights_prefix(default_synth):
    statements = job_role_statements(default_synth.templates["StorageStack"])
    writes = [
        statement
        for statement in statements
        if any(action.startswith("s3:") and not action.startswith(READ_ONLY_S3_PREFIXES)
               for action in as_list(statement["Action"]))
    ]

    assert writes, "expected the role to write the weights"
    for statement in writes:
        assert statement["Effect"] == "Allow"
        assert "Condition" not in statement
        for resource in as_list(statement["Resource"]):
            parts = resource["Fn::Join"][1]
            assert parts[-1] == "/weights/bloom-176b-int8/*", statement
            assert "Fn::GetAtt" in parts[0], statement
    for statement in statements:
        for action in as_list(statement["Action"]):
            assert action not in ("s3:*", "s3:Put*", "s3:Delete*", "*"), statement


def test_role_lists_only_the_weights_prefix(default_synth):
    statements = job_role_statements(default_synth.templates["StorageStack"])
    (list_bucket,) = [s for s in statements if as_list(s["Action"]) == ["s3:ListBucket"]]

    assert list_bucket["Condition"] == {"StringLike": {"s3:prefix": ["weights/bloom-176b-int8/*"]}}


def test_role_reads_no_secret_by_default(default_synth):
    statements = job_role_statements(default_synth.templates["StorageStack"])

    assert not [s for s in statements if any("secretsmanager" in a for a in as_list(s["Action"]))]


def test_hub_token_read_from_named_secret(synth):
    result = synth(**TOKEN_CONTEXT)
    template = result.templates["StorageStack"]
    variables = environment(template)

    assert variables["HF_TOKEN"] == {"Name": "HF_TOKEN", "Type": "SECRETS_MANAGER", "Value": "bloom/hub-token"}
    assert variables["WEIGHTS_REVISION"]["Value"] == COMMIT
    assert variables["HF_ENDPOINT"]["Value"] == "https://hub.example.invalid"
    (secret_read,) = [s for s in job_role_statements(template) if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
    assert secret_read["Resource"]["Fn::Join"][1][-1] == ":secret:bloom/hub-token-??????"
    assert as_list(secret_read["Action"]) == ["secretsmanager:GetSecretValue"]


def test_token_variant_passes_cdk_nag(synth):
    report = synth(**TOKEN_CONTEXT).validation_report
    (nag,) = [plugin for plugin in report["pluginReports"] if plugin["pluginName"] == "AwsSolutions"]

    assert nag["violations"] == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("weightsRevision", "../main"),
        ("hubEndpoint", "http://hub.example.invalid"),
        ("hubTokenSecretName", "bad name with spaces"),
    ],
)
def test_invalid_staging_value_names_the_key(key, value):
    config = load_config({key: value}.get)

    with pytest.raises(ConfigError, match=f"^{key}="):
        load_staging_settings(config)


def test_staging_settings_default_to_unset():
    settings = load_staging_settings(load_config({}.get))

    assert settings.revision is None
    assert settings.hub_endpoint is None
    assert settings.hub_token_secret_name is None
    assert settings.repository == "microsoft/bloom-deepspeed-inference-int8"
