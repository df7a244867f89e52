"""Stage a source into the weights prefix: skip what is already verified, resume the rest, write the manifest last.

One run:

1. lists the source (for the Hub, at the commit that the revision resolves to);
2. skips every file whose object already carries the expected sha256 and size;
3. removes the manifest before it changes anything, so that no start uses a half-changed prefix;
4. resumes or aborts the unfinished multipart uploads it finds, and stages the other files;
5. deletes objects that an earlier run staged but the source no longer has;
6. writes the manifest, only after every file has been verified.
"""

import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from botocore.exceptions import ClientError

from weights_manifest.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    ManifestFile,
    StoredObject,
    list_objects,
    manifest_key,
    normalize_etag,
)
from weights_staging.hub import HubError
from weights_staging.integrity import ContentDigest
from weights_staging.progress import (
    PROGRESS_NAME,
    ProgressSnapshot,
    ProgressTracker,
    delete_progress_record,
    progress_key,
    write_progress_record,
)
from weights_staging.sources import Source, SourceFile, SourceSnapshot
from weights_staging.uploader import (
    GIT_OID_METADATA,
    SHA256_METADATA,
    IntegrityError,
    ObjectUploader,
    StaleUploadError,
    TransferCounters,
    UploadedObject,
)
from weights_staging.validation import validate_prefix

logger = logging.getLogger(__name__)

# Files without a published sha256 are read into a spooled temporary file first, in memory up to this size.
SPOOL_MEMORY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class StagingOptions:
    # 64 MiB parts keep a 180 GB checkpoint far below S3's 10,000 parts for any single file up to 625 GiB.
    part_size: int = 64 * 1024 * 1024
    part_concurrency: int = 4
    file_concurrency: int = 2
    progress_interval_seconds: float = 30.0
    # Delete objects that an earlier run staged (they carry sha256 metadata) but the source no longer lists.
    prune: bool = True
    # Write the progress record under the prefix for ``bloomctl weights stage --wait``.
    write_progress: bool = True


@dataclass
class StagingResult:
    manifest: Manifest
    files_staged: int
    files_skipped: int
    objects_pruned: int
    counters: TransferCounters
    already_complete: bool = False


class StagingError(RuntimeError):
    """Staging did not complete; ``failures`` maps each failed file to its error. No manifest was written."""

    def __init__(self, message: str, failures: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or {}


@dataclass
class _Plan:
    snapshot: SourceSnapshot
    skipped: dict[str, ManifestFile] = field(default_factory=dict)
    to_stage: list[SourceFile] = field(default_factory=list)
    to_prune: list[str] = field(default_factory=list)
    objects: dict[str, StoredObject] = field(default_factory=dict)


def stage_weights(
    source: Source,
    s3_client: Any,
    bucket: str,
    prefix: str,
    options: StagingOptions = StagingOptions(),
    on_progress: Callable[[ProgressSnapshot], None] | None = None,
) -> StagingResult:
    """Copy every file of ``source`` to ``s3://bucket/prefix``, verified, and write the manifest last.

    Raises ``StagingError`` when any file fails; what was verified stays in place for the next run.
    """
    prefix = validate_prefix(prefix)
    snapshot = source.snapshot()
    _check_reserved_names(snapshot)
    logger.info(
        "Staging %d files (%d bytes) of %s at %s to s3://%s/%s",
        len(snapshot.files), snapshot.total_bytes, snapshot.repository, snapshot.commit or snapshot.revision,
        bucket, prefix,
    )

    counters = TransferCounters()
    with ThreadPoolExecutor(max_workers=options.part_concurrency, thread_name_prefix="part") as part_pool:
        uploader = ObjectUploader(s3_client, bucket, options.part_size, part_pool, options.part_concurrency, counters)
        plan = _plan(uploader, snapshot, prefix, options.prune)

        existing = _read_manifest(s3_client, bucket, prefix) if manifest_key(prefix) in plan.objects else None
        if not plan.to_stage and not plan.to_prune and _is_current(existing, snapshot, plan.skipped):
            logger.info("All %d files are already staged and the manifest is current", len(snapshot.files))
            if options.write_progress and progress_key(prefix) in plan.objects:
                delete_progress_record(s3_client, bucket, prefix)
            return StagingResult(existing, 0, len(plan.skipped), 0, counters, already_complete=True)

        # From here on the prefix changes, so a start must be refused until the new manifest is written.
        if manifest_key(prefix) in plan.objects:
            s3_client.delete_object(Bucket=bucket, Key=manifest_key(prefix))
        staged = _stage_files(uploader, source, plan, prefix, options, on_progress, bucket)

    for key in plan.to_prune:
        logger.info("Deleting %s: staged by an earlier run, not part of %s", key, snapshot.commit or snapshot.revision)
        uploader.delete(key)

    manifest = _build_manifest(snapshot, {**plan.skipped, **staged}, _utc_now())
    s3_client.put_object(
        Bucket=bucket, Key=manifest_key(prefix), Body=manifest.to_json().encode(), ContentType="application/json"
    )
    if options.write_progress:
        delete_progress_record(s3_client, bucket, prefix)

    logger.info(
        "Staged %d files, skipped %d, uploaded %d bytes in %d parts, reused %d parts, aborted %d stale uploads",
        len(staged), len(plan.skipped), counters.bytes_uploaded, counters.parts_uploaded, counters.parts_reused,
        counters.uploads_aborted,
    )
    return StagingResult(manifest, len(staged), len(plan.skipped), len(plan.to_prune), counters)


def _check_reserved_names(snapshot: SourceSnapshot) -> None:
    for file in snapshot.files:
        if file.path in (MANIFEST_NAME, PROGRESS_NAME):
            raise StagingError(f"the source has a file named {file.path}, which the staging run writes itself")


def _plan(uploader: ObjectUploader, snapshot: SourceSnapshot, prefix: str, prune: bool) -> _Plan:
    """Sort the source's files into already staged and to stage, and find objects left by earlier runs."""
    objects = list_objects(uploader.s3, uploader.bucket, prefix)
    plan = _Plan(snapshot, objects=objects)
    listed_keys = {prefix + file.path for file in snapshot.files}

    for file in snapshot.files:
        key = prefix + file.path
        head = uploader.head(key) if key in objects else None
        if head is not None and _is_verified(head, file):
            plan.skipped[file.path] = ManifestFile(
                path=file.path,
                size=file.size,
                sha256=head["Metadata"][SHA256_METADATA],
                etag=normalize_etag(head["ETag"]),
                verified_by=file.verified_by,
            )
        else:
            plan.to_stage.append(file)

    if prune:
        reserved = {manifest_key(prefix), progress_key(prefix)}
        for key in sorted(set(objects) - listed_keys - reserved):
            head = uploader.head(key)
            if head is not None and SHA256_METADATA in head.get("Metadata", {}):
                plan.to_prune.append(key)
    return plan


def _is_verified(head: dict[str, Any], file: SourceFile) -> bool:
    metadata = head.get("Metadata", {})
    if head.get("ContentLength") != file.size or SHA256_METADATA not in metadata:
        return False
    if file.sha256 is not None:
        return metadata[SHA256_METADATA] == file.sha256
    return file.git_oid is not None and metadata.get(GIT_OID_METADATA) == file.git_oid


def _stage_files(
    uploader: ObjectUploader,
    source: Source,
    plan: _Plan,
    prefix: str,
    options: StagingOptions,
    on_progress: Callable[[ProgressSnapshot], None] | None,
    bucket: str,
) -> dict[str, ManifestFile]:
    snapshot = plan.snapshot
    multipart_keys = {prefix + file.path for file in plan.to_stage if file.size > uploader.part_size}
    resumable = uploader.find_resumable_uploads(prefix, multipart_keys)

    def report(progress: ProgressSnapshot) -> None:
        if on_progress:
            on_progress(progress)
        if options.write_progress:
            write_progress_record(uploader.s3, bucket, prefix, "staging", progress)

    tracker = ProgressTracker(len(snapshot.files), snapshot.total_bytes, report, options.progress_interval_seconds)
    for file in snapshot.files:
        if file.path in plan.skipped:
            tracker.file_skipped(file.size)

    staged: dict[str, ManifestFile] = {}
    failures: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=options.file_concurrency, thread_name_prefix="file") as file_pool:
        futures = {
            file_pool.submit(_stage_one, uploader, source, file, prefix, resumable.get(prefix + file.path), tracker): file
            for file in plan.to_stage
        }
        for future, file in futures.items():
            try:
                staged[file.path] = future.result()
            except (HubError, IntegrityError, StaleUploadError, ClientError, OSError) as error:
                logger.error("Staging %s failed: %s", file.path, error)
                failures[file.path] = str(error)

    tracker.maybe_report(force=True)
    if failures:
        summary = "; ".join(f"{path}: {message}" for path, message in sorted(failures.items()))
        message = f"staging failed for {len(failures)} of {len(snapshot.files)} files: {summary}"
        if options.write_progress:
            write_progress_record(uploader.s3, bucket, prefix, "failed", tracker.snapshot(), message)
        raise StagingError(message, failures)
    return staged


def _stage_one(
    uploader: ObjectUploader,
    source: Source,
    file: SourceFile,
    prefix: str,
    resume_upload_id: str | None,
    tracker: ProgressTracker,
) -> ManifestFile:
    key = prefix + file.path
    started = time.monotonic()
    try:
        uploaded = _upload(uploader, source, file, key, resume_upload_id, tracker)
    except StaleUploadError:
        logger.warning("Uploading %s again from its start: the resumed upload belonged to an earlier run", key)
        uploaded = _upload(uploader, source, file, key, None, tracker)

    tracker.file_done()
    logger.info("Staged %s (%d bytes, sha256 %s) in %.1f s", file.path, file.size, uploaded.sha256,
                time.monotonic() - started)
    return ManifestFile(
        path=file.path, size=file.size, sha256=uploaded.sha256, etag=uploaded.etag, verified_by=file.verified_by
    )


def _upload(
    uploader: ObjectUploader,
    source: Source,
    file: SourceFile,
    key: str,
    resume_upload_id: str | None,
    tracker: ProgressTracker,
) -> UploadedObject:
    metadata = {GIT_OID_METADATA: file.git_oid} if file.git_oid else {}
    moved = 0

    def count(size: int) -> None:
        nonlocal moved
        moved += size
        tracker.bytes_moved(size)

    try:
        if file.sha256 is None or file.size <= uploader.part_size:
            return _upload_buffered(uploader, source, file, key, metadata, count)
        return uploader.put_multipart(
            key, source.iter_file(file), file.size, file.sha256, metadata, resume_upload_id, on_bytes=count
        )
    except StaleUploadError:
        tracker.rewind(moved)
        raise


def _upload_buffered(
    uploader: ObjectUploader,
    source: Source,
    file: SourceFile,
    key: str,
    metadata: dict[str, str],
    count: Callable[[int], None],
) -> UploadedObject:
    """Read the whole file, verify it against every published hash, then upload it.

    Small files go up in one request. Large files without a published sha256 spill to a temporary file and
    go up as a multipart upload. The Hub publishes only a git blob sha1 for files that are not in LFS.
    """
    digest = ContentDigest(file.size, with_git_oid=file.git_oid is not None)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
        read = 0
        for chunk in source.iter_file(file):
            digest.update(chunk)
            spool.write(chunk)
            read += len(chunk)

        _verify_read(file, read, digest)
        spool.seek(0)
        if file.size <= uploader.part_size:
            uploaded = uploader.put_small(key, spool.read(), digest.sha256, metadata)
            count(file.size)
            return uploaded
        return uploader.put_multipart(
            key, _iter_spool(spool), file.size, digest.sha256, metadata, None, on_bytes=count
        )


def _verify_read(file: SourceFile, read: int, digest: ContentDigest) -> None:
    if read != file.size:
        raise IntegrityError(f"{file.path}: read {read} bytes, the source lists {file.size}")
    if file.sha256 is not None and digest.sha256 != file.sha256:
        raise IntegrityError(f"{file.path}: sha256 is {digest.sha256}, the source publishes {file.sha256}")
    if file.git_oid is not None and digest.git_oid != file.git_oid:
        raise IntegrityError(f"{file.path}: git blob sha1 is {digest.git_oid}, the source publishes {file.git_oid}")


def _iter_spool(spool, chunk_bytes: int = 8 * 1024 * 1024):
    while chunk := spool.read(chunk_bytes):
        yield chunk


def _read_manifest(s3_client: Any, bucket: str, prefix: str) -> Manifest | None:
    """Return the manifest under the prefix, or None when it is not valid (it is rewritten at the end)."""
    body = s3_client.get_object(Bucket=bucket, Key=manifest_key(prefix))["Body"].read()
    try:
        return Manifest.from_json(body)
    except ManifestError:
        return None


def _build_manifest(snapshot: SourceSnapshot, files: dict[str, ManifestFile], created_at: str) -> Manifest:
    return Manifest(
        repository=snapshot.repository,
        revision=snapshot.revision,
        commit=snapshot.commit,
        source=snapshot.description,
        created_at=created_at,
        files=tuple(files[path] for path in sorted(files)),
    )


def _is_current(existing: Manifest | None, snapshot: SourceSnapshot, files: dict[str, ManifestFile]) -> bool:
    """Tell whether the manifest already records exactly these files of this source, whenever it was written."""
    if existing is None:
        return False
    return existing == _build_manifest(snapshot, files, existing.created_at)


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
