"""Manifest format, and the comparison of a manifest with what the weights prefix holds.

A staging run writes ``weights-manifest.json`` under the weights prefix after it has verified every file.
The manifest lists only the weights. Other objects under the prefix, such as the ``serving.properties`` that
the hosting stack uploads, are not part of it and never count as a difference.
"""

import json
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

MANIFEST_NAME = "weights-manifest.json"
MANIFEST_FORMAT = "bloom-weights-manifest/1"

# How a file was proven equal to its source. The Hub publishes a sha256 for LFS files and a git blob sha1
# for the others; a local directory publishes nothing, so only the computed size and ETag tie the object
# to the bytes that were read.
VERIFIED_BY = ("lfs-sha256", "git-sha1", "size-and-etag")


class ManifestError(ValueError):
    """A manifest is not valid JSON or does not have the expected fields."""


@dataclass(frozen=True)
class ManifestFile:
    """One staged file: its path relative to the weights prefix, size in bytes, content hash and S3 ETag."""

    path: str
    size: int
    sha256: str
    etag: str
    verified_by: str


@dataclass(frozen=True)
class Manifest:
    """The record of one complete, verified staging run."""

    repository: str
    revision: str
    # Commit the revision resolved to when the files were listed; empty for a local directory.
    commit: str
    source: str
    created_at: str
    files: tuple[ManifestFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(file.size for file in self.files)

    def to_json(self) -> str:
        document = {
            "format": MANIFEST_FORMAT,
            "repository": self.repository,
            "revision": self.revision,
            "commit": self.commit,
            "source": self.source,
            "created_at": self.created_at,
            "file_count": len(self.files),
            "total_bytes": self.total_bytes,
            "files": [asdict(file) for file in self.files],
        }
        return json.dumps(document, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> "Manifest":
        try:
            document = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ManifestError(f"the manifest is not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise ManifestError("the manifest is not a JSON object")
        if document.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"unknown manifest format {document.get('format')!r}: expected {MANIFEST_FORMAT}")

        files = tuple(_parse_file(entry) for entry in _require(document, "files", list))
        manifest = cls(
            repository=_require(document, "repository", str),
            revision=_require(document, "revision", str),
            commit=_require(document, "commit", str),
            source=_require(document, "source", str),
            created_at=_require(document, "created_at", str),
            files=files,
        )
        _check_totals(document, manifest)
        return manifest


def _require(document: Mapping[str, Any], key: str, kind: type) -> Any:
    value = document.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ManifestError(f"the manifest field {key!r} is missing or not a {kind.__name__}")
    return value


def _parse_file(entry: Any) -> ManifestFile:
    if not isinstance(entry, dict):
        raise ManifestError("a manifest file entry is not a JSON object")

    file = ManifestFile(
        path=_require(entry, "path", str),
        size=_require(entry, "size", int),
        sha256=_require(entry, "sha256", str),
        etag=_require(entry, "etag", str),
        verified_by=_require(entry, "verified_by", str),
    )
    if file.size < 0 or len(file.sha256) != 64 or file.verified_by not in VERIFIED_BY:
        raise ManifestError(f"the manifest entry for {file.path!r} has an invalid size, sha256 or verified_by")
    return file


def _check_totals(document: Mapping[str, Any], manifest: Manifest) -> None:
    """Reject a manifest whose totals disagree with its file list, such as one cut short while written."""
    if not manifest.files:
        raise ManifestError("the manifest lists no files")
    if document.get("file_count") != len(manifest.files):
        raise ManifestError(
            f"the manifest is inconsistent: file_count={document.get('file_count')!r} but it lists {len(manifest.files)} files"
        )
    if document.get("total_bytes") != manifest.total_bytes:
        raise ManifestError(
            f"the manifest is inconsistent: total_bytes={document.get('total_bytes')!r} but its files add up to "
            f"{manifest.total_bytes}"
        )

    paths = [file.path for file in manifest.files]
    if len(set(paths)) != len(paths):
        raise ManifestError("the manifest lists a file more than once")


def manifest_key(prefix: str) -> str:
    return f"{prefix}{MANIFEST_NAME}"


def normalize_etag(etag: str) -> str:
    """Return an S3 ETag without the double quotes that S3 puts around it."""
    return etag.strip().strip('"')


@dataclass(frozen=True)
class StoredObject:
    """Size and ETag of an object as ListObjectsV2 or HeadObject returns them."""

    size: int
    etag: str


def list_objects(s3_client: Any, bucket: str, prefix: str) -> dict[str, StoredObject]:
    """Return every object under the prefix by key, following ListObjectsV2 pagination."""
    objects: dict[str, StoredObject] = {}
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            objects[item["Key"]] = StoredObject(size=item["Size"], etag=normalize_etag(item["ETag"]))
    return objects


@dataclass(frozen=True)
class FileProblem:
    """A manifest file that the bucket does not hold as recorded."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def compare_with_objects(
    manifest: Manifest, prefix: str, objects: Mapping[str, StoredObject]
) -> list[FileProblem]:
    """List the manifest files that are missing under the prefix or differ in size or ETag.

    Objects that the manifest does not list are ignored.
    """
    problems = []
    for file in manifest.files:
        stored = objects.get(prefix + file.path)
        if stored is None:
            problems.append(FileProblem(file.path, "missing"))
        elif stored.size != file.size:
            problems.append(FileProblem(file.path, f"size is {stored.size} bytes, manifest says {file.size}"))
        elif stored.etag != normalize_etag(file.etag):
            problems.append(FileProblem(file.path, "ETag differs from the manifest: the object changed after staging"))
    return problems


def summarize_problems(problems: Iterable[FileProblem], limit: int = 3) -> str:
    """Return the first few problems as one line, with a count of the rest."""
    problems = list(problems)
    shown = "; ".join(str(problem) for problem in problems[:limit])
    rest = len(problems) - limit
    return f"{shown}; and {rest} more" if rest > 0 else shown
