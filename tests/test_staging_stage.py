"""Staging from the stand-in Hub into moto S3: verified copies, skips, resume, corruption and cleanup."""

import hashlib
import json

import pytest

from tests.staging_hub import BUCKET, MIB, S3Requests, s3_client, stand_in_hub  # noqa: F401 - fixtures
from weights_manifest.check import check_weights
from weights_manifest.manifest import Manifest, manifest_key
from weights_staging.hub import HubClient
from weights_staging.progress import progress_key
from weights_staging.sources import HubSource, LocalDirectorySource
from weights_staging.stage import StagingError, StagingOptions, stage_weights
from weights_staging.verify import verify_weights

PREFIX = "weights/bloom-tiny/"
SHARD_00 = "shards/shard-00.pt"
SHARD_01 = "shards/shard-01.pt"
# 5 MiB is S3's smallest part: shard-00 (11 MiB) is 3 parts, shard-01 (7 MiB) is 2 parts.
OPTIONS = StagingOptions(part_size=5 * MIB, progress_interval_seconds=0)


def hub_source(hub, revision="main", retries=1):
    client = HubClient(hub.url, max_retries=retries, backoff_seconds=0)
    return HubSource(client, hub.repo.repository, revision)


def stage(hub, s3, **options):
    return stage_weights(hub_source(hub), s3, BUCKET, PREFIX, options.get("options", OPTIONS))


def read_object(s3, key):
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def read_manifest(s3):
    return Manifest.from_json(read_object(s3, manifest_key(PREFIX)))


def keys(s3):
    return {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


def unfinished_uploads(s3):
    return s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])


def test_stage_copies_every_file_verified(stand_in_hub, s3_client):
    snapshots = []
    result = stage_weights(hub_source(stand_in_hub), s3_client, BUCKET, PREFIX, OPTIONS, on_progress=snapshots.append)

    repo = stand_in_hub.repo
    for path, content in repo.files.items():
        assert read_object(s3_client, PREFIX + path) == content

    manifest = read_manifest(s3_client)
    assert manifest == result.manifest
    assert manifest.repository == repo.repository
    assert manifest.revision == "main"
    assert manifest.commit == repo.commit
    assert manifest.created_at.endswith("Z")
    assert {file.path: file.size for file in manifest.files} == {path: len(c) for path, c in repo.files.items()}
    for file in manifest.files:
        assert file.sha256 == hashlib.sha256(repo.files[file.path]).hexdigest()
    verified_by = {file.path: file.verified_by for file in manifest.files}
    assert verified_by[SHARD_00] == "lfs-sha256"
    assert verified_by["config.json"] == "git-sha1"

    assert snapshots[-1].files_done == len(repo.files)
    assert snapshots[-1].bytes_done == sum(len(c) for c in repo.files.values())
    assert progress_key(PREFIX) not in keys(s3_client)
    assert check_weights(s3_client, BUCKET, PREFIX).ok


def test_second_run_uploads_nothing(stand_in_hub, s3_client):
    first = stage(stand_in_hub, s3_client)
    requests = S3Requests(s3_client)

    second = stage(stand_in_hub, s3_client)

    assert second.already_complete
    assert second.files_skipped == len(stand_in_hub.repo.files)
    assert requests.named("UploadPart") == []
    assert requests.named("PutObject") == []
    assert requests.named("DeleteObject") == []
    assert read_manifest(s3_client) == first.manifest
    assert stand_in_hub.download_count(SHARD_00) == 1


def test_interrupted_upload_resumes_with_the_rest(stand_in_hub, s3_client):
    shard_size = len(stand_in_hub.repo.files[SHARD_00])
    # The connection drops halfway through shard-00, after its first 5 MiB part went up, on every retry.
    stand_in_hub.faults.drop_after[SHARD_00] = shard_size // 2

    with pytest.raises(StagingError) as raised:
        stage(stand_in_hub, s3_client)

    assert set(raised.value.failures) == {SHARD_00}
    assert manifest_key(PREFIX) not in keys(s3_client)
    assert not check_weights(s3_client, BUCKET, PREFIX).ok
    uploads = unfinished_uploads(s3_client)
    assert [upload["Key"] for upload in uploads] == [PREFIX + SHARD_00]
    parts = s3_client.list_parts(Bucket=BUCKET, Key=PREFIX + SHARD_00, UploadId=uploads[0]["UploadId"])["Parts"]
    assert [part["PartNumber"] for part in parts] == [1]

    stand_in_hub.faults.clear()
    requests = S3Requests(s3_client)
    result = stage(stand_in_hub, s3_client)

    uploaded_parts = requests.named("UploadPart")
    assert sorted((key, number) for _, key, number, _ in uploaded_parts) == [(PREFIX + SHARD_00, 2), (PREFIX + SHARD_00, 3)]
    assert sum(size for *_, size in uploaded_parts) == shard_size - 5 * MIB
    assert result.counters.bytes_uploaded == shard_size - 5 * MIB
    assert result.counters.parts_reused == 1
    assert result.files_skipped == len(stand_in_hub.repo.files) - 1
    weight_puts = [call for call in requests.named("PutObject") if call[1] != manifest_key(PREFIX)]
    assert all(call[1] == progress_key(PREFIX) for call in weight_puts)
    assert read_object(s3_client, PREFIX + SHARD_00) == stand_in_hub.repo.files[SHARD_00]
    assert unfinished_uploads(s3_client) == []
    assert check_weights(s3_client, BUCKET, PREFIX).ok


def test_corrupted_lfs_file_is_rejected(stand_in_hub, s3_client):
    stand_in_hub.faults.corrupt.add(SHARD_01)

    with pytest.raises(StagingError) as raised:
        stage(stand_in_hub, s3_client)

    assert set(raised.value.failures) == {SHARD_01}
    assert "sha256" in raised.value.failures[SHARD_01]
    assert SHARD_01 in str(raised.value)
    assert PREFIX + SHARD_01 not in keys(s3_client)
    assert unfinished_uploads(s3_client) == []
    assert manifest_key(PREFIX) not in keys(s3_client)
    assert PREFIX + SHARD_00 in keys(s3_client)
    record = json.loads(read_object(s3_client, progress_key(PREFIX)))
    assert record["status"] == "failed"
    assert SHARD_01 in record["detail"]


def test_small_lfs_file_is_checked_by_sha256(stand_in_hub, s3_client):
    stand_in_hub.repo.files["shards/small.pt"] = b"small lfs content" * 100
    stand_in_hub.repo.lfs.add("shards/small.pt")

    manifest = stage(stand_in_hub, s3_client).manifest

    (entry,) = [file for file in manifest.files if file.path == "shards/small.pt"]
    assert entry.verified_by == "lfs-sha256"
    assert read_object(s3_client, PREFIX + "shards/small.pt") == b"small lfs content" * 100

    stand_in_hub.faults.corrupt.add("shards/small.pt")
    s3_client.delete_object(Bucket=BUCKET, Key=PREFIX + "shards/small.pt")
    with pytest.raises(StagingError) as raised:
        stage(stand_in_hub, s3_client)
    assert "sha256" in raised.value.failures["shards/small.pt"]


def test_corrupted_git_file_is_rejected(stand_in_hub, s3_client):
    stand_in_hub.faults.corrupt.add("tokenizer.json")

    with pytest.raises(StagingError) as raised:
        stage(stand_in_hub, s3_client)

    assert "git blob sha1" in raised.value.failures["tokenizer.json"]
    assert PREFIX + "tokenizer.json" not in keys(s3_client)
    assert manifest_key(PREFIX) not in keys(s3_client)


def test_changed_object_is_reported_and_restaged(stand_in_hub, s3_client):
    stage(stand_in_hub, s3_client)
    original = stand_in_hub.repo.files[SHARD_01]
    s3_client.put_object(Bucket=BUCKET, Key=PREFIX + SHARD_01, Body=bytes(len(original)))

    check = check_weights(s3_client, BUCKET, PREFIX)
    report = verify_weights(s3_client, BUCKET, PREFIX)

    assert not check.ok
    assert SHARD_01 in check.message
    assert "bloomctl weights stage --wait" in check.message
    assert not report.ok
    assert [problem.path for problem in report.problems] == [SHARD_01]

    requests = S3Requests(s3_client)
    stage(stand_in_hub, s3_client)

    assert {key for _, key, _, _ in requests.named("UploadPart")} == {PREFIX + SHARD_01}
    assert read_object(s3_client, PREFIX + SHARD_01) == original
    assert verify_weights(s3_client, BUCKET, PREFIX, deep=True).ok


def test_deep_verify_reads_every_file(stand_in_hub, s3_client):
    stage(stand_in_hub, s3_client)
    requests = S3Requests(s3_client)
    checked = []

    report = verify_weights(s3_client, BUCKET, PREFIX, deep=True, on_file=lambda path, size: checked.append(path))

    assert report.ok
    assert sorted(checked) == sorted(stand_in_hub.repo.files)
    read_keys = {key for _, key, _, _ in requests.named("GetObject")}
    assert read_keys == {PREFIX + path for path in stand_in_hub.repo.files} | {manifest_key(PREFIX)}


def test_deep_verify_detects_wrong_sha256(stand_in_hub, s3_client):
    stage(stand_in_hub, s3_client)
    manifest = json.loads(read_object(s3_client, manifest_key(PREFIX)))
    entry = next(file for file in manifest["files"] if file["path"] == "config.json")
    entry["sha256"] = "0" * 64
    s3_client.put_object(Bucket=BUCKET, Key=manifest_key(PREFIX), Body=json.dumps(manifest).encode())

    report = verify_weights(s3_client, BUCKET, PREFIX, deep=True)

    assert not report.ok
    assert [problem.path for problem in report.problems] == ["config.json"]


def test_extra_objects_stay_out_of_the_manifest(stand_in_hub, s3_client):
    s3_client.put_object(Bucket=BUCKET, Key=PREFIX + "serving.properties", Body=b"engine=DeepSpeed\n")
    s3_client.put_object(Bucket=BUCKET, Key=PREFIX + "model.py", Body=b"def handle(inputs): ...\n")

    manifest = stage(stand_in_hub, s3_client).manifest

    assert {"serving.properties", "model.py"}.isdisjoint(file.path for file in manifest.files)
    assert {PREFIX + "serving.properties", PREFIX + "model.py"} <= keys(s3_client)
    assert check_weights(s3_client, BUCKET, PREFIX).ok


def test_files_of_an_earlier_revision_are_pruned(stand_in_hub, s3_client):
    s3_client.put_object(Bucket=BUCKET, Key=PREFIX + "serving.properties", Body=b"engine=DeepSpeed\n")
    stage(stand_in_hub, s3_client)
    old_commit = stand_in_hub.repo.commit
    del stand_in_hub.repo.files[SHARD_01]
    stand_in_hub.repo.files["shards/shard-02.pt"] = b"new shard" * 1000

    result = stage(stand_in_hub, s3_client)

    assert result.objects_pruned == 1
    assert PREFIX + SHARD_01 not in keys(s3_client)
    assert PREFIX + "serving.properties" in keys(s3_client)
    manifest = read_manifest(s3_client)
    assert manifest.commit != old_commit
    assert "shards/shard-02.pt" in {file.path for file in manifest.files}


def test_failed_restage_removes_the_old_manifest(stand_in_hub, s3_client):
    stage(stand_in_hub, s3_client)
    stand_in_hub.repo.files["shards/shard-02.pt"] = b"new shard" * 1000
    stand_in_hub.faults.corrupt.add("shards/shard-02.pt")

    with pytest.raises(StagingError):
        stage(stand_in_hub, s3_client)

    check = check_weights(s3_client, BUCKET, PREFIX)
    assert not check.ok
    assert "no manifest" in check.message


def test_unneeded_unfinished_uploads_are_aborted(stand_in_hub, s3_client):
    for key in (PREFIX + "old-revision.bin", PREFIX + "config.json"):
        s3_client.create_multipart_upload(Bucket=BUCKET, Key=key)

    result = stage(stand_in_hub, s3_client)

    assert result.counters.uploads_aborted == 2
    assert unfinished_uploads(s3_client) == []


def test_upload_left_by_other_content_is_redone(stand_in_hub, s3_client):
    content = stand_in_hub.repo.files[SHARD_00]
    key = PREFIX + SHARD_00
    # An earlier run expected other content for this key but uploaded the same first part.
    upload = s3_client.create_multipart_upload(Bucket=BUCKET, Key=key, Metadata={"sha256": "f" * 64})
    s3_client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=content[: 5 * MIB])

    stage(stand_in_hub, s3_client)

    head = s3_client.head_object(Bucket=BUCKET, Key=key)
    assert head["Metadata"]["sha256"] == hashlib.sha256(content).hexdigest()
    assert read_object(s3_client, key) == content
    assert check_weights(s3_client, BUCKET, PREFIX).ok


def test_local_directory_is_staged(tmp_path, s3_client):
    (tmp_path / "shards").mkdir()
    (tmp_path / "config.json").write_text('{"model_type": "bloom"}')
    (tmp_path / "shards" / "part-0.bin").write_bytes(bytes(range(256)) * 30000)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")

    source = LocalDirectorySource(tmp_path, repository="bigscience/bloom-1b7")
    manifest = stage_weights(source, s3_client, BUCKET, PREFIX, OPTIONS).manifest

    assert {file.path for file in manifest.files} == {"config.json", "shards/part-0.bin"}
    assert {file.verified_by for file in manifest.files} == {"size-and-etag"}
    assert manifest.revision == "local"
    assert manifest.commit == ""
    assert read_object(s3_client, PREFIX + "shards/part-0.bin") == bytes(range(256)) * 30000
    assert verify_weights(s3_client, BUCKET, PREFIX, deep=True).ok
