"""The check that runs before an endpoint starts: are the weights under the prefix complete?

A start on missing or partial weights fails only after SageMaker has spent about 20 minutes on instances,
so the reconciler calls ``check_weights`` before CreateEndpoint and does not start when it is not ok.
"""

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from weights_manifest.manifest import (
    FileProblem,
    Manifest,
    ManifestError,
    compare_with_objects,
    list_objects,
    manifest_key,
    summarize_problems,
)

STAGE_COMMAND = "bloomctl weights stage --wait"


@dataclass(frozen=True)
class WeightsCheck:
    """Result of ``check_weights``: ``ok``, and a message that states what is wrong and how to fix it."""

    ok: bool
    message: str
    manifest: Manifest | None = None
    problems: tuple[FileProblem, ...] = field(default_factory=tuple)


def check_weights(s3_client: Any, bucket: str, prefix: str) -> WeightsCheck:
    """Check that the manifest under ``prefix`` exists and that every file it lists is present as recorded.

    Each file must exist with the size and ETag that the staging run recorded. The check reads the manifest
    and lists the prefix; it does not download the weights. AWS errors are returned as a failed check, not
    raised, so that the caller can report them the same way.
    """
    location = f"s3://{bucket}/{prefix}"
    key = manifest_key(prefix)

    # List first: a GET of a missing key returns 403 rather than 404 to a role whose ListBucket permission
    # is limited to a prefix, and the listing is needed for the comparison anyway.
    try:
        objects = list_objects(s3_client, bucket, prefix)
    except (ClientError, BotoCoreError) as error:
        return _not_ok(f"Could not list the weights at {location}: {_error_text(error)}")
    if key not in objects:
        return _not_ok(f"The weights at {location} have no manifest ({key} not found)")

    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as error:
        return _not_ok(f"Could not read the weights manifest s3://{bucket}/{key}: {_error_text(error)}")

    try:
        manifest = Manifest.from_json(body)
    except ManifestError as error:
        return _not_ok(f"The weights manifest s3://{bucket}/{key} is invalid: {error}")

    problems = compare_with_objects(manifest, prefix, objects)
    if problems:
        return _not_ok(
            f"The weights at {location} are incomplete: {len(problems)} of {len(manifest.files)} files "
            f"do not match the manifest ({summarize_problems(problems)})",
            manifest,
            problems,
        )

    return WeightsCheck(
        ok=True,
        message=(
            f"The weights at {location} are complete: {len(manifest.files)} files, {manifest.total_bytes} bytes "
            f"of {manifest.repository} at {manifest.commit or manifest.revision}"
        ),
        manifest=manifest,
    )


def _error_text(error: Exception) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', '')}".rstrip(": ")
    return str(error)


def _not_ok(reason: str, manifest: Manifest | None = None, problems: list[FileProblem] | None = None) -> WeightsCheck:
    return WeightsCheck(
        ok=False,
        message=f"{reason}. Stage them with `{STAGE_COMMAND}`.",
        manifest=manifest,
        problems=tuple(problems or ()),
    )
