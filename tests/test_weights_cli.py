"""``bloomctl weights``: local staging from the stand-in Hub and a directory, verify, and the cloud job path."""

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import Stubber

from bloomctl import cli
from bloomctl.commands import weights
from tests.staging_hub import BUCKET, StandInHub, s3_client, tiny_repository  # noqa: F401 - fixture
from weights_staging.hub import HubClient
from weights_staging.progress import ProgressSnapshot, progress_key, write_progress_record
from weights_staging.sources import HubSource
from weights_staging.stage import StagingOptions, stage_weights

PREFIX = "weights/bloom-1b7/"
PROJECT = "bloom-weights-staging"
BUILD_ID = f"{PROJECT}:0b1c2d3e"


@pytest.fixture
def bloom_1b7_hub():
    """The stand-in Hub serving the tiny repository under the bloom-1b7 profile's repository id."""
    hub = StandInHub(tiny_repository("bigscience/bloom-1b7")).start()
    yield hub
    hub.stop()


@pytest.fixture
def codebuild():
    client = boto3.client("codebuild", region_name="eu-west-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def clients(monkeypatch, s3_client, codebuild):
    """Route the command's AWS clients to moto S3 and SSM and the stubbed CodeBuild client."""
    aws = weights.AwsClients(
        s3=s3_client,
        codebuild=codebuild[0],
        ssm=boto3.client("ssm", region_name="eu-west-1"),
        region="eu-west-1",
        account="123456789012",
    )
    monkeypatch.setattr(weights, "make_clients", lambda args: aws)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return aws


@pytest.fixture
def cdk_json_profile(tmp_path, monkeypatch):
    """Return a function that writes a cdk.json with the given profile to a new working directory."""

    def write(profile: str) -> None:
        (tmp_path / "cdk.json").write_text(json.dumps({"context": {"profile": profile}}))
        monkeypatch.chdir(tmp_path)

    return write


def run(*argv) -> int:
    return cli.main(["weights", *argv])


def publish_deployed_profile(ssm, profile: str, weights_prefix: str) -> None:
    """Publish the parameters that the hosting stack of the default deployment writes."""
    ssm.put_parameter(Name="/bloom/profile", Value=profile, Type="String")
    ssm.put_parameter(Name="/bloom/weights-prefix", Value=weights_prefix, Type="String")


def stage_tiny(hub, s3):
    source = HubSource(HubClient(hub.url, backoff_seconds=0), hub.repo.repository, "main")
    stage_weights(source, s3, BUCKET, PREFIX, StagingOptions(part_size=5 * 1024 * 1024))


def project_response(**variables) -> dict:
    env = {"BLOOM_PROFILE": "bloom-1b7", "WEIGHTS_PREFIX": PREFIX, **variables}
    return {
        "projects": [
            {
                "name": PROJECT,
                "environment": {
                    "type": "LINUX_CONTAINER",
                    "image": "aws/codebuild/standard:7.0",
                    "computeType": "BUILD_GENERAL1_LARGE",
                    "environmentVariables": [{"name": k, "value": v, "type": "PLAINTEXT"} for k, v in env.items()],
                },
            }
        ]
    }


def build_response(status: str, complete: bool, phase: str = "BUILD") -> dict:
    return {"builds": [{"id": BUILD_ID, "buildStatus": status, "currentPhase": phase, "buildComplete": complete}]}


def test_local_stage_from_hub(clients, bloom_1b7_hub, capsys):
    code = run("stage", "--local", "--profile", "bloom-1b7", "--hub-url", bloom_1b7_hub.url,
               "--revision", bloom_1b7_hub.repo.commit, "--part-size-mib", "5")

    output = capsys.readouterr().out
    assert code == 0
    assert "files 5/5" in output
    assert "(100.0%)" in output
    assert "ETA" in output
    assert "Staged 5 files" in output
    manifest = json.loads(clients.s3.get_object(Bucket=BUCKET, Key=PREFIX + "weights-manifest.json")["Body"].read())
    assert manifest["commit"] == bloom_1b7_hub.repo.commit


def test_local_stage_warns_on_branch_revision(clients, bloom_1b7_hub, capsys):
    code = run("stage", "--local", "--profile", "bloom-1b7", "--hub-url", bloom_1b7_hub.url, "--revision", "main",
               "--part-size-mib", "5")

    assert code == 0
    assert "is a branch or tag, not a commit hash" in capsys.readouterr().err


def test_local_stage_from_directory(clients, tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"model_type": "bloom"}')
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 70000)

    code = run("stage", "--profile", "bloom-1b7", "--from-dir", str(tmp_path))

    assert code == 0
    assert "Staged 2 files" in capsys.readouterr().out
    assert run("verify", "--profile", "bloom-1b7", "--deep") == 0


def test_local_stage_needs_a_revision(clients, bloom_1b7_hub, capsys):
    code = run("stage", "--local", "--profile", "bloom-1b7", "--hub-url", bloom_1b7_hub.url)

    assert code == 2
    assert "weightsRevision" in capsys.readouterr().err


def test_invalid_revision_is_rejected(clients, capsys):
    code = run("stage", "--local", "--profile", "bloom-1b7", "--hub-url", "https://hub.example.invalid",
               "--revision", "../main")

    assert code == 2
    assert "revision='../main' is invalid" in capsys.readouterr().err


def test_local_stage_of_large_profile_is_rejected(clients, capsys):
    code = run("stage", "--local", "--profile", "bloom-176b-int8", "--revision", "a" * 40,
               "--hub-url", "https://hub.example.invalid")

    assert code == 2
    error = capsys.readouterr().err
    assert "180 GB" in error
    assert "--allow-large" in error


def test_verify_reports_changed_file(clients, bloom_1b7_hub, capsys):
    stage_tiny(bloom_1b7_hub, clients.s3)
    assert run("verify", "--profile", "bloom-1b7") == 0
    assert "match the manifest" in capsys.readouterr().out

    clients.s3.put_object(Bucket=BUCKET, Key=PREFIX + "config.json", Body=b"{}")
    code = run("verify", "--profile", "bloom-1b7")

    output = capsys.readouterr().out
    assert code == 1
    assert "config.json: size is 2 bytes" in output
    assert "bloomctl weights stage --wait" in output


def test_verify_without_manifest_fails(clients, capsys):
    code = run("verify", "--profile", "bloom-1b7")

    assert code == 1
    assert "no manifest" in capsys.readouterr().out


def test_cloud_stage_waits_with_progress(clients, codebuild, bloom_1b7_hub, capsys):
    client, stubber = codebuild
    stage_tiny(bloom_1b7_hub, clients.s3)
    snapshot = ProgressSnapshot(2, 5, 7_000_000, 19_079_265, 60.0, 100_000.0, 120.8)
    write_progress_record(clients.s3, BUCKET, PREFIX, "staging", snapshot)

    stubber.add_response("batch_get_projects", project_response(
        WEIGHTS_REVISION="c" * 40, HF_ENDPOINT="https://hub.example.invalid"), {"names": [PROJECT]})
    stubber.add_response(
        "start_build",
        {"build": {"id": BUILD_ID}},
        {"projectName": PROJECT, "environmentVariablesOverride": [
            {"name": "STAGING_ACTION", "value": "stage", "type": "PLAINTEXT"}]},
    )
    stubber.add_response("batch_get_builds", build_response("IN_PROGRESS", False), {"ids": [BUILD_ID]})
    stubber.add_response("batch_get_builds", build_response("IN_PROGRESS", False), {"ids": [BUILD_ID]})
    stubber.add_response("batch_get_builds", build_response("SUCCEEDED", True, "COMPLETED"), {"ids": [BUILD_ID]})

    code = run("stage", "--profile", "bloom-1b7", "--wait", "--poll-seconds", "0")

    output = capsys.readouterr().out
    assert code == 0
    assert "[IN_PROGRESS BUILD] files 2/5, 6.7 MiB of 18.2 MiB (36.7%), 97.7 KiB/s, ETA 2m 01s" in output
    assert output.count("[IN_PROGRESS BUILD]") == 1
    assert "are complete: 5 files" in output


def test_cloud_stage_passes_revision_and_endpoint(clients, codebuild, capsys, monkeypatch):
    client, stubber = codebuild
    monkeypatch.setenv("HF_ENDPOINT", "https://mirror.example.invalid")
    stubber.add_response("batch_get_projects", project_response(), {"names": [PROJECT]})
    stubber.add_response(
        "start_build",
        {"build": {"id": BUILD_ID}},
        {"projectName": PROJECT, "environmentVariablesOverride": [
            {"name": "STAGING_ACTION", "value": "stage", "type": "PLAINTEXT"},
            {"name": "WEIGHTS_REVISION", "value": "d" * 40, "type": "PLAINTEXT"},
            {"name": "HF_ENDPOINT", "value": "https://mirror.example.invalid", "type": "PLAINTEXT"},
        ]},
    )

    code = run("stage", "--profile", "bloom-1b7", "--revision", "d" * 40)

    assert code == 0
    assert BUILD_ID in capsys.readouterr().out


def test_cloud_stage_reports_failed_build(clients, codebuild, capsys):
    client, stubber = codebuild
    write_progress_record(clients.s3, BUCKET, PREFIX, "failed", None, "staging failed for 1 of 5 files: x.bin: sha256")
    stubber.add_response("batch_get_projects", project_response(
        WEIGHTS_REVISION="c" * 40, HF_ENDPOINT="https://hub.example.invalid"), {"names": [PROJECT]})
    stubber.add_response("start_build", {"build": {"id": BUILD_ID}})
    failed = build_response("FAILED", True, "COMPLETED")
    failed["builds"][0]["logs"] = {"groupName": f"/aws/codebuild/{PROJECT}", "streamName": "0b1c2d3e"}
    stubber.add_response("batch_get_builds", failed, {"ids": [BUILD_ID]})

    code = run("stage", "--profile", "bloom-1b7", "--wait", "--poll-seconds", "0")

    error = capsys.readouterr().err
    assert code == 1
    assert "ended with FAILED" in error
    assert "x.bin: sha256" in error
    assert f"/aws/codebuild/{PROJECT}" in error
    assert progress_key(PREFIX) in {o["Key"] for o in clients.s3.list_objects_v2(Bucket=BUCKET)["Contents"]}


def test_record_of_earlier_run_is_ignored(clients, codebuild, capsys):
    client, stubber = codebuild
    write_progress_record(clients.s3, BUCKET, PREFIX, "failed", None, "old failure from yesterday")
    stubber.add_response("batch_get_projects", project_response(
        WEIGHTS_REVISION="c" * 40, HF_ENDPOINT="https://hub.example.invalid"), {"names": [PROJECT]})
    stubber.add_response("start_build", {"build": {"id": BUILD_ID}})
    failed = build_response("FAILED", True, "COMPLETED")
    failed["builds"][0]["startTime"] = datetime.now(timezone.utc) + timedelta(minutes=5)
    stubber.add_response("batch_get_builds", failed, {"ids": [BUILD_ID]})

    code = run("stage", "--profile", "bloom-1b7", "--wait", "--poll-seconds", "0")

    error = capsys.readouterr().err
    assert code == 1
    assert "ended with FAILED" in error
    assert "old failure" not in error


def test_cloud_stage_rejects_other_profile(clients, codebuild, capsys):
    client, stubber = codebuild
    stubber.add_response("batch_get_projects", project_response(BLOOM_PROFILE="bloom-176b-int8"), {"names": [PROJECT]})

    code = run("stage", "--profile", "bloom-1b7", "--revision", "d" * 40, "--hub-url", "https://hub.example.invalid")

    assert code == 2
    assert "deployed for profile bloom-176b-int8" in capsys.readouterr().err


def test_cloud_stage_without_project_says_deploy(clients, codebuild, capsys):
    client, stubber = codebuild
    stubber.add_response("batch_get_projects", {"projects": [], "projectsNotFound": [PROJECT]}, {"names": [PROJECT]})

    code = run("stage", "--profile", "bloom-1b7")

    assert code == 2
    assert "deploy the storage stack (bloom-storage)" in capsys.readouterr().err


def test_cloud_deep_verify_starts_the_job(clients, codebuild, capsys):
    client, stubber = codebuild
    stubber.add_response(
        "start_build",
        {"build": {"id": BUILD_ID}},
        {"projectName": PROJECT, "environmentVariablesOverride": [
            {"name": "STAGING_ACTION", "value": "verify-deep", "type": "PLAINTEXT"}]},
    )

    code = run("verify", "--profile", "bloom-176b-int8", "--deep", "--in-cloud")

    assert code == 0
    assert "verify-deep build" in capsys.readouterr().out


def test_local_deep_verify_of_large_profile_is_rejected(clients, capsys):
    assert run("verify", "--profile", "bloom-176b-int8", "--deep") == 2
    assert "--in-cloud" in capsys.readouterr().err


# The deployed profile


def test_verify_uses_deployed_profile(clients, bloom_1b7_hub, cdk_json_profile, capsys):
    """Deployed with -c profile=bloom-1b7, while the profile in cdk.json is still bloom-176b-int8."""
    cdk_json_profile("bloom-176b-int8")
    publish_deployed_profile(clients.ssm, "bloom-1b7", PREFIX)
    stage_tiny(bloom_1b7_hub, clients.s3)

    code = run("verify")

    captured = capsys.readouterr()
    assert code == 0
    assert f"at s3://{BUCKET}/{PREFIX} match the manifest" in captured.out
    assert "using the deployed profile bloom-1b7 (SSM parameter /bloom/profile), not bloom-176b-int8" in captured.err


def test_verify_uses_deployed_weights_prefix(clients, cdk_json_profile, tmp_path, capsys):
    cdk_json_profile("bloom-1b7")
    publish_deployed_profile(clients.ssm, "bloom-1b7", "custom/bloom-1b7/")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "config.json").write_text('{"model_type": "bloom"}')

    staged = run("stage", "--from-dir", str(tmp_path / "weights"))
    verified = run("verify")

    output = capsys.readouterr().out
    assert staged == 0
    assert verified == 0
    assert f"s3://{BUCKET}/custom/bloom-1b7/" in output
    assert "weights/bloom-1b7/" not in output


@pytest.mark.parametrize("action", [["verify"], ["stage", "--local", "--revision", "d" * 40]], ids=" ".join)
def test_other_profile_than_deployed_rejected(clients, action, capsys):
    publish_deployed_profile(clients.ssm, "bloom-1b7", PREFIX)

    code = run(*action, "--profile", "bloom-7b1")

    error = capsys.readouterr().err
    assert code == 2
    assert "--profile bloom-7b1 is not the deployed profile bloom-1b7 (SSM parameter /bloom/profile)" in error
    assert "-c profile=bloom-7b1" in error


def test_same_profile_as_deployed_accepted(clients, bloom_1b7_hub, capsys):
    publish_deployed_profile(clients.ssm, "bloom-1b7", PREFIX)
    stage_tiny(bloom_1b7_hub, clients.s3)

    assert run("verify", "--profile", "bloom-1b7") == 0
    assert capsys.readouterr().err == ""


def test_cdk_json_profile_used_before_deploy(clients, bloom_1b7_hub, cdk_json_profile, capsys):
    cdk_json_profile("bloom-1b7")
    stage_tiny(bloom_1b7_hub, clients.s3)

    code = run("verify")

    captured = capsys.readouterr()
    assert code == 0
    assert f"s3://{BUCKET}/{PREFIX}" in captured.out
    assert "SSM parameter /bloom/profile does not exist" in captured.err
    assert "profile in cdk.json (bloom-1b7)" in captured.err


def test_cloud_stage_uses_deployed_profile(clients, codebuild, cdk_json_profile, capsys):
    client, stubber = codebuild
    cdk_json_profile("bloom-176b-int8")
    publish_deployed_profile(clients.ssm, "bloom-1b7", PREFIX)
    stubber.add_response("batch_get_projects", project_response(
        WEIGHTS_REVISION="c" * 40, HF_ENDPOINT="https://hub.example.invalid"), {"names": [PROJECT]})
    stubber.add_response("start_build", {"build": {"id": BUILD_ID}})

    code = run("stage")

    assert code == 0
    assert f"bigscience/bloom-1b7 at {'c' * 40} to s3://{BUCKET}/{PREFIX}" in capsys.readouterr().out
