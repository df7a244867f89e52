"""Verify staged weights: the manifest check that a start runs, plus each object's sha256.

The quick check compares sizes, ETags and the ``sha256`` metadata with the manifest and reads no content.
The deep check also reads every object back and hashes it, which costs a GET of the whole checkpoint.
"""

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

from weights_manifest.check import STAGE_COMMAND, check_weights
from weights_manifest.manifest import FileProblem, Manifest, summarize_problems
from weights_staging.uploader import SHA256_METADATA

READ_CHUNK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    message: str
    manifest: Manifest | None
    problems: tuple[FileProblem, ...]
    deep: bool


def verify_weights(
    s3_client: Any,
    bucket: str,
    prefix: str,
    deep: bool = False,
    on_file: Callable[[str, int], None] | None = None,
) -> VerifyReport:
    """Check the staged weights against their manifest; ``on_file`` is called with each path and size checked."""
    check = check_weights(s3_client, bucket, prefix)
    if check.manifest is None:
        return VerifyReport(False, check.message, None, check.problems, deep)

    manifest = check.manifest
    problems = list(check.problems)
    failed = {problem.path for problem in problems}
    for file in manifest.files:
        if file.path in failed:
            continue
        problem = _check_object(s3_client, bucket, prefix + file.path, file.sha256, deep)
        if problem:
            problems.append(FileProblem(file.path, problem))
        if on_file:
            on_file(file.path, file.size)

    location = f"s3://{bucket}/{prefix}"
    if problems:
        message = (
            f"{len(problems)} of {len(manifest.files)} files at {location} do not match the manifest "
            f"({summarize_problems(problems)}). Stage them again with `{STAGE_COMMAND}`."
        )
        return VerifyReport(False, message, manifest, tuple(problems), deep)

    method = "sha256 of the content" if deep else "size, ETag and sha256 metadata"
    message = f"{len(manifest.files)} files, {manifest.total_bytes} bytes at {location} match the manifest ({method})"
    return VerifyReport(True, message, manifest, (), deep)


def _check_object(s3_client: Any, bucket: str, key: str, sha256: str, deep: bool) -> str | None:
    head = s3_client.head_object(Bucket=bucket, Key=key)
    recorded = head.get("Metadata", {}).get(SHA256_METADATA)
    if recorded != sha256:
        return f"sha256 metadata is {recorded!r}, the manifest says {sha256}"
    if not deep:
        return None

    digest = hashlib.sha256()
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in iter(lambda: body.read(READ_CHUNK_BYTES), b""):
        digest.update(chunk)
    if digest.hexdigest() != sha256:
        return f"content sha256 is {digest.hexdigest()}, the manifest says {sha256}"
    return None
