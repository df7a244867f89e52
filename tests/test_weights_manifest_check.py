"""The check before a start: a missing, invalid or incomplete manifest blocks the start and names the fix."""

import hashlib
import json

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from weights_manifest.check import STAGE_COMMAND, check_weights
from weights_manifest.manifest import Manifest, ManifestFile, manifest_key, normalize_etag

REGION = "eu-west-1"
BUCKET = "bloom-models-123456789012-eu-west-1"
PREFIX = "weights/bloom-1b7/"
FILES = {"config.json": b'{"model_type": "bloom"}', "model-00001.safetensors": b"\x01" * 4096}


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield client


def put_weights(s3, files=FILES):
    """Upload the files and return manifest entries that record them."""
    entries = []
    for path, content in files.items():
        etag = s3.put_object(Bucket=BUCKET, Key=PREFIX + path, Body=content)["ETag"]
        entries.append(
            ManifestFile(path, len(content), hashlib.sha256(content).hexdigest(), normalize_etag(etag), "git-sha1")
        )
    return tuple(entries)


def put_manifest(s3, files, body=None):
    manifest = Manifest("bigscience/bloom-1b7", "main", "a" * 40, "stand-in", "2026-01-01T00:00:00Z", files)
    s3.put_object(Bucket=BUCKET, Key=manifest_key(PREFIX), Body=body if body is not None else manifest.to_json())
    return manifest


def test_complete_weights_pass(s3):
    manifest = put_manifest(s3, put_weights(s3))

    check = check_weights(s3, BUCKET, PREFIX)

    assert check.ok
    assert check.manifest == manifest
    assert "2 files" in check.message


def test_files_outside_the_manifest_are_ignored(s3):
    put_manifest(s3, put_weights(s3))
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "serving.properties", Body=b"engine=DeepSpeed\n")
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "model.py", Body=b"def handle(inputs): ...\n")

    assert check_weights(s3, BUCKET, PREFIX).ok


def test_missing_manifest_blocks_start(s3):
    put_weights(s3)

    check = check_weights(s3, BUCKET, PREFIX)

    assert not check.ok
    assert "no manifest" in check.message
    assert f"`{STAGE_COMMAND}`" in check.message
    assert STAGE_COMMAND == "bloomctl weights stage --wait"


def test_missing_file_blocks_start(s3):
    entries = put_weights(s3)
    s3.delete_object(Bucket=BUCKET, Key=PREFIX + "model-00001.safetensors")
    put_manifest(s3, entries)

    check = check_weights(s3, BUCKET, PREFIX)

    assert not check.ok
    assert "incomplete" in check.message
    assert "model-00001.safetensors: missing" in check.message
    assert STAGE_COMMAND in check.message
    assert [problem.path for problem in check.problems] == ["model-00001.safetensors"]


def test_changed_size_blocks_start(s3):
    put_manifest(s3, put_weights(s3))
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "config.json", Body=b"{}")

    check = check_weights(s3, BUCKET, PREFIX)

    assert not check.ok
    assert "config.json: size is 2 bytes" in check.message


def test_changed_content_blocks_start(s3):
    put_manifest(s3, put_weights(s3))
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "model-00001.safetensors", Body=b"\x02" * 4096)

    check = check_weights(s3, BUCKET, PREFIX)

    assert not check.ok
    assert "ETag differs" in check.message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda document: document.update(file_count=3), "file_count=3"),
        (lambda document: document.update(total_bytes=1), "total_bytes=1"),
        (lambda document: document.update(files=[], file_count=0, total_bytes=0), "lists no files"),
        (lambda document: document.update(format="other/9"), "unknown manifest format"),
        (lambda document: document["files"][0].update(sha256="abc"), "invalid size, sha256"),
        (lambda document: document.pop("commit"), "'commit'"),
    ],
)
def test_inconsistent_manifest_blocks_start(s3, change, expected):
    manifest = put_manifest(s3, put_weights(s3))
    document = json.loads(manifest.to_json())
    change(document)
    put_manifest(s3, manifest.files, json.dumps(document))

    check = check_weights(s3, BUCKET, PREFIX)

    assert not check.ok
    assert "invalid" in check.message
    assert expected in check.message
    assert STAGE_COMMAND in check.message


def test_truncated_manifest_blocks_start(s3):
    text = put_manifest(s3, put_weights(s3)).to_json()
    put_manifest(s3, (), text[: len(text) // 2])

    check = check_weights(s3, BUCKET, PREFIX)

    assert not check.ok
    assert "not valid JSON" in check.message


def test_access_denied_is_reported_not_raised():
    client = boto3.client("s3", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_client_error(
        "list_objects_v2", "AccessDenied", "Access Denied", 403, expected_params={"Bucket": BUCKET, "Prefix": PREFIX}
    )

    with stubber:
        check = check_weights(client, BUCKET, PREFIX)

    stubber.assert_no_pending_responses()
    assert not check.ok
    assert "AccessDenied" in check.message


def test_reconciler_blocks_start_on_incomplete_manifest():
    control_plane_support = pytest.importorskip("tests.control_plane_support")
    from control_plane.reconciler import BLOCKED, CLI, Trigger
    from control_plane.weights import check_weights as control_plane_check

    support = control_plane_support
    with mock_aws():
        settings = support.make_settings()
        support.create_deployment(settings)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=support.BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        entries = put_weights(s3)
        put_manifest(s3, entries[:1] + (ManifestFile("model-00002.safetensors", 10, "b" * 64, "c" * 32, "lfs-sha256"),))
        assert support.WEIGHTS_PREFIX == PREFIX
        assert support.BUCKET == BUCKET

        reconciler = support.make_reconciler(settings, support.FakeClock(), weights_check=control_plane_check)
        reconciler.start("test")
        result = reconciler.run(Trigger(CLI))

        assert result.action == BLOCKED
        assert "model-00002.safetensors: missing" in result.message
        assert STAGE_COMMAND in result.message
        endpoints = boto3.client("sagemaker", region_name=REGION).list_endpoints()["Endpoints"]
        assert endpoints == []
