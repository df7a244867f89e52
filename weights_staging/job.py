"""Entry point of the cloud staging job: ``python -m weights_staging.job``, configured by environment variables.

The CodeBuild project of the storage stack sets these; ``bloomctl weights stage`` can override the revision,
the Hub endpoint and the action for one build.

* ``STAGING_ACTION``: ``stage`` (default), ``verify`` or ``verify-deep``
* ``MODEL_BUCKET``, ``WEIGHTS_PREFIX``: where the weights go
* ``HF_REPOSITORY``, ``WEIGHTS_REVISION``, ``HF_ENDPOINT``: what to stage, and the Hub's base URL
* ``HF_TOKEN``: optional Hub token for gated repositories (CodeBuild reads it from Secrets Manager)
* ``STAGING_PART_SIZE_MIB``, ``STAGING_FILE_CONCURRENCY``, ``STAGING_PART_CONCURRENCY``: optional tuning

Exit status: 0 done, 1 staging or verification failed, 2 invalid configuration.
"""

import logging
import os
import sys
from typing import Any, Callable, Mapping

import boto3

from weights_staging.hub import HubClient, HubError
from weights_staging.progress import format_progress, write_progress_record
from weights_staging.sources import HubSource
from weights_staging.stage import StagingError, StagingOptions, stage_weights
from weights_staging.validation import (
    is_commit_hash,
    validate_endpoint,
    validate_prefix,
    validate_repository,
    validate_revision,
)
from weights_staging.verify import verify_weights

logger = logging.getLogger("weights_staging")

ACTIONS = ("stage", "verify", "verify-deep")
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


class JobConfigError(ValueError):
    """An environment variable of the job is missing or invalid; the message names it."""


def _required(environ: Mapping[str, str], name: str, check: Callable[[str], str] | None = None, hint: str = "") -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise JobConfigError(f"{name} is not set{': ' + hint if hint else ''}")
    if check is None:
        return value
    try:
        return check(value)
    except ValueError as error:
        raise JobConfigError(f"{name}={value!r} is invalid: {error}") from None


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise JobConfigError(f"{name}={text!r} is invalid: expected a whole number of at least 1")
    return int(text)


def staging_options(environ: Mapping[str, str]) -> StagingOptions:
    defaults = StagingOptions()
    return StagingOptions(
        part_size=_positive_int(environ, "STAGING_PART_SIZE_MIB", defaults.part_size // (1024 * 1024)) * 1024 * 1024,
        file_concurrency=_positive_int(environ, "STAGING_FILE_CONCURRENCY", defaults.file_concurrency),
        part_concurrency=_positive_int(environ, "STAGING_PART_CONCURRENCY", defaults.part_concurrency),
    )


def hub_source_from_env(environ: Mapping[str, str]) -> HubSource:
    """Build the Hub source from the environment; every value is checked before any request is sent."""
    repository = _required(environ, "HF_REPOSITORY", validate_repository)
    revision = _required(
        environ,
        "WEIGHTS_REVISION",
        validate_revision,
        "set the weightsRevision context value to the commit hash of the repository to stage, or pass "
        "--revision to bloomctl weights stage",
    )
    endpoint = _required(
        environ,
        "HF_ENDPOINT",
        validate_endpoint,
        "set the hubEndpoint context value to the Hub's base URL (the public Hub is https://huggingface.co), "
        "or pass --hub-url to bloomctl weights stage",
    )
    if not is_commit_hash(revision):
        logger.warning(
            "WEIGHTS_REVISION=%s is a branch or tag, not a commit hash: it is resolved now and the commit is "
            "recorded in the manifest, but a later run may stage different files",
            revision,
        )
    return HubSource(HubClient(endpoint, environ.get("HF_TOKEN") or None), repository, revision)


def run_job(environ: Mapping[str, str], s3_client: Any | None = None) -> int:
    """Run the action that the environment names and return the exit status."""
    try:
        action = environ.get("STAGING_ACTION", "stage").strip() or "stage"
        if action not in ACTIONS:
            raise JobConfigError(f"STAGING_ACTION={action!r} is invalid: allowed {', '.join(ACTIONS)}")
        bucket = _required(environ, "MODEL_BUCKET")
        prefix = _required(environ, "WEIGHTS_PREFIX", validate_prefix)
        source = hub_source_from_env(environ) if action == "stage" else None
        options = staging_options(environ)
    except JobConfigError as error:
        logger.error("Invalid job configuration: %s", error)
        return EXIT_CONFIG

    s3_client = s3_client or boto3.client("s3")
    if action != "stage":
        report = verify_weights(s3_client, bucket, prefix, deep=action == "verify-deep")
        (logger.info if report.ok else logger.error)("%s", report.message)
        return EXIT_OK if report.ok else EXIT_FAILED

    try:
        result = stage_weights(
            source, s3_client, bucket, prefix, options, on_progress=lambda p: logger.info("Progress: %s", format_progress(p))
        )
    except StagingError as error:
        logger.error("Staging failed: %s", error)
        return EXIT_FAILED
    except HubError as error:
        # Raised while listing, before any file was staged.
        logger.error("Staging failed: %s", error)
        write_progress_record(s3_client, bucket, prefix, "failed", None, str(error))
        return EXIT_FAILED

    manifest = result.manifest
    logger.info(
        "Weights staged: %d files, %d bytes of %s at commit %s; %d files staged, %d already in place",
        len(manifest.files), manifest.total_bytes, manifest.repository, manifest.commit, result.files_staged,
        result.files_skipped,
    )
    return EXIT_OK


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    sys.exit(run_job(os.environ))


if __name__ == "__main__":
    main()
