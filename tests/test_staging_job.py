"""The cloud job's entry point: configuration from the environment, exit status and logs."""

import json
import logging

import pytest

from tests.staging_hub import BUCKET, s3_client, stand_in_hub  # noqa: F401 - fixtures
from weights_staging.job import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, run_job
from weights_staging.progress import progress_key

PREFIX = "weights/bloom-tiny/"


def job_environment(hub, **changes):
    environ = {
        "MODEL_BUCKET": BUCKET,
        "WEIGHTS_PREFIX": PREFIX,
        "HF_REPOSITORY": hub.repo.repository,
        "WEIGHTS_REVISION": hub.repo.commit,
        "HF_ENDPOINT": hub.url,
        "STAGING_PART_SIZE_MIB": "5",
    }
    environ.update(changes)
    return {name: value for name, value in environ.items() if value is not None}


def test_job_stages_then_verifies(stand_in_hub, s3_client, caplog):
    caplog.set_level(logging.INFO, logger="weights_staging")

    assert run_job(job_environment(stand_in_hub), s3_client) == EXIT_OK
    assert run_job(job_environment(stand_in_hub, STAGING_ACTION="verify-deep"), s3_client) == EXIT_OK
    assert "Weights staged: 5 files" in caplog.text
    assert "match the manifest (sha256 of the content)" in caplog.text


def test_job_fails_on_corrupted_object(stand_in_hub, s3_client):
    run_job(job_environment(stand_in_hub), s3_client)
    s3_client.put_object(Bucket=BUCKET, Key=PREFIX + "config.json", Body=b"{}")

    assert run_job(job_environment(stand_in_hub, STAGING_ACTION="verify"), s3_client) == EXIT_FAILED


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"WEIGHTS_REVISION": None}, "WEIGHTS_REVISION is not set: set the weightsRevision context value"),
        ({"HF_ENDPOINT": None}, "HF_ENDPOINT is not set: set the hubEndpoint context value"),
        ({"HF_ENDPOINT": "http://hub.example.invalid"}, "HF_ENDPOINT='http://hub.example.invalid' is invalid"),
        ({"HF_REPOSITORY": "no-owner"}, "HF_REPOSITORY='no-owner' is invalid"),
        ({"STAGING_ACTION": "copy"}, "STAGING_ACTION='copy' is invalid"),
        ({"STAGING_PART_SIZE_MIB": "0"}, "STAGING_PART_SIZE_MIB='0' is invalid"),
        ({"MODEL_BUCKET": None}, "MODEL_BUCKET is not set"),
    ],
)
def test_job_rejects_invalid_configuration(stand_in_hub, s3_client, caplog, changes, expected):
    code = run_job(job_environment(stand_in_hub, **changes), s3_client)

    assert code == EXIT_CONFIG
    assert expected in caplog.text
    assert "Contents" not in s3_client.list_objects_v2(Bucket=BUCKET)


def test_job_records_listing_failure(stand_in_hub, s3_client, caplog):
    code = run_job(job_environment(stand_in_hub, HF_REPOSITORY="bigscience/missing"), s3_client)

    assert code == EXIT_FAILED
    assert "404" in caplog.text
    record = json.loads(s3_client.get_object(Bucket=BUCKET, Key=progress_key(PREFIX))["Body"].read())
    assert record["status"] == "failed"
    assert "404" in record["detail"]


def test_job_never_logs_the_token(stand_in_hub, s3_client, caplog):
    caplog.set_level(logging.DEBUG)

    run_job(job_environment(stand_in_hub, HF_TOKEN="hf_secret_value"), s3_client)

    assert "hf_secret_value" not in caplog.text
