"""Where weights come from: a Hub repository at one commit, or a local directory."""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

from weights_staging.hub import HubClient, RepoFile

LOCAL_CHUNK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class SourceFile:
    """A file to stage, with the hashes known before its content is read."""

    path: str
    size: int
    # sha256 published by the Hub (LFS files) or computed from a local file; None when only a git blob
    # sha1 is published, in which case the stager computes it while it reads the file.
    sha256: str | None
    git_oid: str | None
    verified_by: str


@dataclass(frozen=True)
class SourceSnapshot:
    """The files of a source at one point in time, with where they came from."""

    repository: str
    revision: str
    commit: str
    description: str
    files: tuple[SourceFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(file.size for file in self.files)


class Source(Protocol):
    def snapshot(self) -> SourceSnapshot: ...

    def iter_file(self, file: SourceFile) -> Iterator[bytes]: ...


class HubSource:
    """A Hub repository at a revision; the revision is resolved to a commit once, and every file is read there."""

    def __init__(self, client: HubClient, repository: str, revision: str) -> None:
        self.client = client
        self.repository = repository
        self.revision = revision
        self._commit: str | None = None

    def snapshot(self) -> SourceSnapshot:
        self._commit = self.client.resolve_commit(self.repository, self.revision)
        files = tuple(
            SourceFile(
                path=file.path,
                size=file.size,
                sha256=file.sha256,
                git_oid=file.git_oid,
                verified_by="lfs-sha256" if file.sha256 else "git-sha1",
            )
            for file in self.client.list_files(self.repository, self._commit)
        )
        return SourceSnapshot(
            repository=self.repository,
            revision=self.revision,
            commit=self._commit,
            description=f"{self.client.endpoint}/{self.repository}",
            files=files,
        )

    def iter_file(self, file: SourceFile) -> Iterator[bytes]:
        if self._commit is None:
            raise RuntimeError("call snapshot() before iter_file()")
        repo_file = RepoFile(path=file.path, size=file.size, sha256=file.sha256, git_oid=file.git_oid)
        return self.client.iter_file(self.repository, self._commit, repo_file)


class LocalDirectorySource:
    """The files under a local directory, such as a checkout of a Hub repository.

    Hidden files and folders (``.git``, ``.cache``) are left out. Nothing publishes hashes for a local
    directory, so the sha256 is computed here and the uploaded object is checked by size and ETag.
    """

    def __init__(self, directory: Path, repository: str | None = None) -> None:
        self.directory = Path(directory).resolve()
        self.repository = repository or self.directory.name

    def snapshot(self) -> SourceSnapshot:
        if not self.directory.is_dir():
            raise FileNotFoundError(f"{self.directory} is not a directory")

        files = []
        for path in sorted(self.directory.rglob("*")):
            relative = path.relative_to(self.directory)
            if any(part.startswith(".") for part in relative.parts) or not path.is_file():
                continue
            files.append(
                SourceFile(
                    path=relative.as_posix(),
                    size=path.stat().st_size,
                    sha256=_sha256_of(path),
                    git_oid=None,
                    verified_by="size-and-etag",
                )
            )

        if not files:
            raise FileNotFoundError(f"{self.directory} contains no files to stage")
        return SourceSnapshot(
            repository=self.repository,
            revision="local",
            commit="",
            description=f"local directory {self.directory}",
            files=tuple(files),
        )

    def iter_file(self, file: SourceFile) -> Iterator[bytes]:
        with open(self.directory / file.path, "rb") as handle:
            while chunk := handle.read(LOCAL_CHUNK_BYTES):
                yield chunk


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(LOCAL_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
