"""The Hub client against the stand-in Hub: listing, downloads, retries, tokens and errors."""

import hashlib

import pytest

from tests.staging_hub import StandInHub, stand_in_hub, tiny_repository  # noqa: F401 - fixture
from weights_staging.hub import HubAccessError, HubClient, HubError, HubNotFoundError
from weights_staging.validation import validate_endpoint, validate_revision

SHARD_00 = "shards/shard-00.pt"


def client_for(hub, **options):
    options.setdefault("backoff_seconds", 0)
    return HubClient(hub.url, **options)


def repo_file(client, hub, path):
    files = {file.path: file for file in client.list_files(hub.repo.repository, hub.repo.commit)}
    return files[path]


def test_revision_resolves_to_commit(stand_in_hub):
    client = client_for(stand_in_hub)

    assert client.resolve_commit(stand_in_hub.repo.repository, "main") == stand_in_hub.repo.commit


def test_listing_follows_pages_and_reads_hashes(stand_in_hub):
    repo = stand_in_hub.repo
    files = client_for(stand_in_hub).list_files(repo.repository, repo.commit)

    assert sorted(file.path for file in files) == sorted(repo.files)
    assert sum(1 for kind, _ in stand_in_hub.requests if kind == "tree") > 2
    by_path = {file.path: file for file in files}
    assert by_path[SHARD_00].sha256 == hashlib.sha256(repo.files[SHARD_00]).hexdigest()
    assert by_path["config.json"].sha256 is None
    content = repo.files["config.json"]
    assert by_path["config.json"].git_oid == hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
    assert by_path[SHARD_00].size == len(repo.files[SHARD_00])
    assert by_path[SHARD_00].git_oid is None


def test_dropped_download_resumes_with_range(stand_in_hub):
    client = client_for(stand_in_hub, max_retries=2)
    stand_in_hub.faults.drop_once[SHARD_00] = 3_000_000

    content = b"".join(client.iter_file(stand_in_hub.repo.repository, stand_in_hub.repo.commit,
                                        repo_file(client, stand_in_hub, SHARD_00)))

    assert content == stand_in_hub.repo.files[SHARD_00]
    assert stand_in_hub.range_starts == [(SHARD_00, 3_000_000)]
    assert stand_in_hub.bytes_served[SHARD_00] == len(content)


def test_download_gives_up_after_retries(stand_in_hub):
    client = client_for(stand_in_hub, max_retries=2)
    stand_in_hub.faults.drop_after[SHARD_00] = 1_000_000
    file = repo_file(client, stand_in_hub, SHARD_00)

    with pytest.raises(HubError, match="failed at byte 1000000 .* after 2 retries"):
        b"".join(client.iter_file(stand_in_hub.repo.repository, stand_in_hub.repo.commit, file))


def test_transient_errors_are_retried(stand_in_hub):
    delays = []
    client = client_for(stand_in_hub, max_retries=3, backoff_seconds=1.0, sleep=delays.append)
    stand_in_hub.faults.transient_503["config.json"] = 2
    file = repo_file(client, stand_in_hub, "config.json")

    content = b"".join(client.iter_file(stand_in_hub.repo.repository, stand_in_hub.repo.commit, file))

    assert content == stand_in_hub.repo.files["config.json"]
    assert delays == [1.0, 2.0]


def test_token_is_not_sent_to_storage_host():
    hub = StandInHub(tiny_repository(), token="hf_test_token").start()
    try:
        client = HubClient(hub.url, "hf_test_token", backoff_seconds=0)
        file = repo_file(client, hub, SHARD_00)

        content = b"".join(client.iter_file(hub.repo.repository, hub.repo.commit, file))

        assert content == hub.repo.files[SHARD_00]
        assert hub.storage_auth_headers == [None]
    finally:
        hub.stop()


def test_gated_repository_without_token_is_explained():
    hub = StandInHub(tiny_repository(), token="hf_test_token").start()
    try:
        with pytest.raises(HubAccessError, match="hubTokenSecretName"):
            HubClient(hub.url, backoff_seconds=0).resolve_commit(hub.repo.repository, "main")
        with pytest.raises(HubAccessError, match="accept the repository's terms"):
            HubClient(hub.url, "wrong", backoff_seconds=0).resolve_commit(hub.repo.repository, "main")
    finally:
        hub.stop()


def test_unknown_revision_is_not_found(stand_in_hub):
    with pytest.raises(HubNotFoundError, match="404"):
        client_for(stand_in_hub).resolve_commit(stand_in_hub.repo.repository, "v9.9")


@pytest.mark.parametrize(
    "endpoint",
    ["http://hub.example.invalid", "ftp://127.0.0.1", "https://", "https://hub.example.invalid?x=1", None],
)
def test_invalid_endpoint_is_rejected(endpoint):
    with pytest.raises(ValueError):
        validate_endpoint(endpoint)


def test_endpoint_keeps_loopback_http():
    assert validate_endpoint("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert validate_endpoint("https://hub.example.invalid") == "https://hub.example.invalid"


@pytest.mark.parametrize("revision", ["../main", "main/", "", "a b", "-x", None])
def test_invalid_revision_is_rejected(revision):
    with pytest.raises(ValueError):
        validate_revision(revision)
