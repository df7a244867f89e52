"""S3 side of staging: single and multipart uploads that verify what landed, and resume interrupted ones.

An object gets the ``sha256`` metadata only when its upload completes, and an upload completes only after
the content's hash matched the expected one. An object that carries the expected sha256 and size was
therefore verified by an earlier run and can be skipped.
"""

import logging
import threading
from collections import deque
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from botocore.exceptions import ClientError

from weights_manifest.manifest import normalize_etag
from weights_staging.integrity import ContentDigest, md5_base64, multipart_etag, single_part_etag

logger = logging.getLogger(__name__)

# S3 accepts parts of 5 MiB to 5 GiB (the last part may be smaller) and at most 10,000 parts per object.
MIN_PART_BYTES = 5 * 1024 * 1024
MAX_PARTS = 10_000
SHA256_METADATA = "sha256"
GIT_OID_METADATA = "git-sha1"


class IntegrityError(RuntimeError):
    """The content read from the source, or the object that landed in S3, does not match the expected hash."""


class StaleUploadError(RuntimeError):
    """A resumed upload completed with metadata from an earlier run; the object must be uploaded again."""


@dataclass
class TransferCounters:
    """Counts of what a run sent to S3, taken from the requests it made."""

    parts_uploaded: int = 0
    bytes_uploaded: int = 0
    parts_reused: int = 0
    bytes_reused: int = 0
    objects_put: int = 0
    uploads_aborted: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


@dataclass(frozen=True)
class UploadedObject:
    key: str
    size: int
    sha256: str
    etag: str


class ObjectUploader:
    """Uploads verified objects to one bucket; parts go through ``executor``, at most ``max_parts_in_flight`` per file."""

    def __init__(
        self,
        s3_client: Any,
        bucket: str,
        part_size: int,
        executor: Executor,
        max_parts_in_flight: int = 4,
        counters: TransferCounters | None = None,
    ) -> None:
        if part_size < MIN_PART_BYTES:
            raise ValueError(f"part size {part_size} is below S3's minimum of {MIN_PART_BYTES} bytes")
        self.s3 = s3_client
        self.bucket = bucket
        self.part_size = part_size
        self._executor = executor
        self._max_in_flight = max(1, max_parts_in_flight)
        self.counters = counters or TransferCounters()

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def check_part_count(self, key: str, size: int) -> None:
        if size > self.part_size * MAX_PARTS:
            raise ValueError(
                f"{key} has {size} bytes, more than {MAX_PARTS} parts of {self.part_size} bytes: raise the part size"
            )

    def find_resumable_uploads(self, prefix: str, multipart_keys: set[str]) -> dict[str, str]:
        """Return the newest unfinished upload of each key in ``multipart_keys``, and abort every other one.

        Uploads of keys that this run does not stage as multipart (files of an earlier revision, or files now
        small enough for one request) would only cost storage, so they are aborted.
        """
        uploads: dict[str, list[dict[str, Any]]] = {}
        paginator = self.s3.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                uploads.setdefault(upload["Key"], []).append(upload)

        resumable = {}
        for key, found in uploads.items():
            found.sort(key=lambda upload: upload["Initiated"], reverse=True)
            keep = found[0] if key in multipart_keys else None
            if keep:
                resumable[key] = keep["UploadId"]
            for upload in found:
                if upload is not keep:
                    self._abort(key, upload["UploadId"], "not needed by this run")
        return resumable

    def put_small(self, key: str, data: bytes, sha256: str, metadata: dict[str, str]) -> UploadedObject:
        """Upload content that was already hashed and verified in one PutObject, and check the ETag."""
        response = self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentMD5=md5_base64(data),
            Metadata={**metadata, SHA256_METADATA: sha256},
        )
        self.counters.add(objects_put=1, bytes_uploaded=len(data))

        expected_etag = single_part_etag(data)
        if normalize_etag(response["ETag"]) != expected_etag:
            self.delete(key)
            raise IntegrityError(f"S3 returned ETag {response['ETag']} for {key}, expected {expected_etag}")
        return UploadedObject(key=key, size=len(data), sha256=sha256, etag=expected_etag)

    def put_multipart(
        self,
        key: str,
        chunks: Iterator[bytes],
        size: int,
        expected_sha256: str,
        metadata: dict[str, str],
        resume_upload_id: str | None = None,
        on_bytes: Callable[[int], None] = lambda count: None,
    ) -> UploadedObject:
        """Stream content into a multipart upload, hashing it on the way, and complete only if it matches.

        With ``resume_upload_id``, parts that S3 already has with the same size and MD5 are not sent again.
        The content is still read from the start, because the sha256 covers all of it. An error from
        ``chunks`` leaves the upload open so that the next run resumes it; a hash mismatch aborts it.
        """
        self.check_part_count(key, size)
        done_parts = self._list_parts(key, resume_upload_id) if resume_upload_id else {}
        upload_id = resume_upload_id or self.s3.create_multipart_upload(
            Bucket=self.bucket, Key=key, Metadata={**metadata, SHA256_METADATA: expected_sha256}
        )["UploadId"]
        if resume_upload_id:
            logger.info("Resuming the upload of %s: %d parts already in S3", key, len(done_parts))

        digest = ContentDigest(size)
        part_md5s = self._send_parts(key, upload_id, chunks, digest, done_parts, on_bytes)

        if digest.sha256 != expected_sha256:
            self._abort(key, upload_id, "the content's sha256 does not match")
            raise IntegrityError(f"sha256 of {key} is {digest.sha256}, expected {expected_sha256}")

        self.s3.complete_multipart_upload(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": number, "ETag": f'"{md5}"'} for number, md5 in enumerate(part_md5s, 1)]
            },
        )
        return self._check_landed(key, size, expected_sha256, multipart_etag(part_md5s))

    def _send_parts(
        self,
        key: str,
        upload_id: str,
        chunks: Iterator[bytes],
        digest: ContentDigest,
        done_parts: dict[int, tuple[int, str]],
        on_bytes: Callable[[int], None],
    ) -> list[str]:
        part_md5s: list[str] = []
        pending: deque[Future] = deque()
        try:
            for number, part in enumerate(_split_parts(chunks, self.part_size), 1):
                digest.update(part)
                md5 = single_part_etag(part)
                part_md5s.append(md5)

                if done_parts.get(number) == (len(part), md5):
                    self.counters.add(parts_reused=1, bytes_reused=len(part))
                    on_bytes(len(part))
                    continue

                while len(pending) >= self._max_in_flight:
                    pending.popleft().result()
                pending.append(self._executor.submit(self._upload_part, key, upload_id, number, part, md5, on_bytes))

            while pending:
                pending.popleft().result()
        finally:
            # Never leave part uploads running behind an error: the caller may abort the upload next.
            wait(list(pending))
        return part_md5s

    def _upload_part(
        self, key: str, upload_id: str, number: int, part: bytes, md5: str, on_bytes: Callable[[int], None]
    ) -> None:
        response = self.s3.upload_part(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=part,
            ContentMD5=md5_base64(part),
        )
        if normalize_etag(response["ETag"]) != md5:
            raise IntegrityError(f"S3 returned ETag {response['ETag']} for part {number} of {key}, expected {md5}")
        self.counters.add(parts_uploaded=1, bytes_uploaded=len(part))
        on_bytes(len(part))

    def _list_parts(self, key: str, upload_id: str) -> dict[int, tuple[int, str]]:
        parts = {}
        paginator = self.s3.get_paginator("list_parts")
        for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
            for part in page.get("Parts", []):
                parts[part["PartNumber"]] = (part["Size"], normalize_etag(part["ETag"]))
        return parts

    def _check_landed(self, key: str, size: int, sha256: str, etag: str) -> UploadedObject:
        head = self.head(key)
        if head is None:
            raise IntegrityError(f"{key} is missing right after its upload completed")
        if head["ContentLength"] != size or normalize_etag(head["ETag"]) != etag:
            self.delete(key)
            raise IntegrityError(
                f"{key} landed with {head['ContentLength']} bytes and ETag {head['ETag']}, expected {size} bytes "
                f"and ETag {etag}"
            )
        if head.get("Metadata", {}).get(SHA256_METADATA) != sha256:
            # The resumed upload was started by a run that expected other content for this key.
            self.delete(key)
            raise StaleUploadError(f"{key} completed with the sha256 metadata of an earlier run")
        return UploadedObject(key=key, size=size, sha256=sha256, etag=etag)

    def _abort(self, key: str, upload_id: str, reason: str) -> None:
        logger.info("Aborting the unfinished upload of %s (%s)", key, reason)
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise
        self.counters.add(uploads_aborted=1)


def _split_parts(chunks: Iterator[bytes], part_size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for chunk in chunks:
        buffer.extend(chunk)
        while len(buffer) >= part_size:
            yield bytes(buffer[:part_size])
            del buffer[:part_size]
    if buffer:
        yield bytes(buffer)
