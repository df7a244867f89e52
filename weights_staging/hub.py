"""A small client for the Hugging Face Hub's public HTTP API, on the standard library only.

It uses three routes:

* ``GET {endpoint}/api/models/{repo}/revision/{revision}``: model info; ``sha`` is the commit that the
  revision resolves to.
* ``GET {endpoint}/api/models/{repo}/tree/{commit}?recursive=true``: the file list with sizes, the git blob
  ``oid`` of every file and ``lfs.oid``, the sha256 of the content, for LFS files. The ``oid`` of an LFS file
  is that of its pointer file. Long lists are paginated with a ``Link: <url>; rel="next"`` header.
* ``GET {endpoint}/{repo}/resolve/{commit}/{path}``: the file content. LFS files redirect to a storage host.

The endpoint has no default: callers pass the Hub's base URL explicitly (the CLI and the job read it from
``--hub-url``, ``HF_ENDPOINT`` or the ``hubEndpoint`` context value).
"""

import http.client
import json
import logging
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Iterator
from urllib.parse import quote, urlencode, urljoin, urlsplit

from weights_staging.validation import validate_endpoint, validate_repository, validate_revision

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_BYTES = 1024 * 1024
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
LINK_NEXT_PATTERN = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class HubError(RuntimeError):
    """A Hub request failed; the message names the URL and what to do."""


class HubAccessError(HubError):
    """The Hub refused access (401 or 403): a gated or private repository, or a missing or invalid token."""


class HubNotFoundError(HubError):
    """The repository, revision or file does not exist on the Hub."""


@dataclass(frozen=True)
class RepoFile:
    """A file of a Hub repository at one commit."""

    path: str
    size: int
    # sha256 of the content, published for LFS files only.
    sha256: str | None
    # git blob sha1 of the content, for files that are not in LFS.
    git_oid: str | None


class _AuthOnSameHostRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but send the token only to the host that it was meant for.

    LFS downloads redirect to a storage host with a signed URL; forwarding the Hub token there would leak it.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new_request = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new_request is not None and urlsplit(newurl).netloc != urlsplit(req.full_url).netloc:
            new_request.remove_header("Authorization")
        return new_request


class HubClient:
    """Reads repository metadata and file content from a Hub endpoint, with retries on transient errors."""

    def __init__(
        self,
        endpoint: str,
        token: str | None = None,
        *,
        timeout_seconds: float = 60.0,
        max_retries: int = 5,
        backoff_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = validate_endpoint(endpoint)
        self._token = token or None
        self._timeout = timeout_seconds
        self._max_retries = max_retries
        self._backoff = backoff_seconds
        self._sleep = sleep
        self._opener = urllib.request.build_opener(_AuthOnSameHostRedirect())

    def resolve_commit(self, repository: str, revision: str) -> str:
        """Return the commit hash that a branch, tag or commit of the repository points to."""
        validate_repository(repository)
        validate_revision(revision)
        url = f"{self.endpoint}/api/models/{repository}/revision/{quote(revision, safe='')}"
        info, _ = self._get_json(url)

        commit = info.get("sha") if isinstance(info, dict) else None
        if not isinstance(commit, str) or not commit:
            raise HubError(f"{url} returned no commit hash (field 'sha'); is {self.endpoint} a Hub endpoint?")
        return commit

    def list_files(self, repository: str, commit: str) -> list[RepoFile]:
        """Return every file of the repository at the commit, following the listing's pagination."""
        validate_repository(repository)
        validate_revision(commit)
        query = urlencode({"recursive": "true", "expand": "false"})
        url: str | None = f"{self.endpoint}/api/models/{repository}/tree/{quote(commit, safe='')}?{query}"

        files = []
        while url:
            entries, headers = self._get_json(url)
            if not isinstance(entries, list):
                raise HubError(f"{url} did not return a list of files")
            files.extend(_parse_tree_entry(entry) for entry in entries if entry.get("type") == "file")
            url = self._next_page(url, headers.get("Link", ""))
        return files

    def _next_page(self, url: str, link_header: str) -> str | None:
        """Return the next page's URL from a Link header; it must stay on the endpoint's host, which gets the token."""
        match = LINK_NEXT_PATTERN.search(link_header or "")
        if not match:
            return None

        next_url = urljoin(url, match.group(1))
        if urlsplit(next_url).netloc != urlsplit(self.endpoint).netloc:
            raise HubError(f"the file listing's next page {next_url} is not on {self.endpoint}")
        return next_url

    def file_url(self, repository: str, commit: str, path: str) -> str:
        return f"{self.endpoint}/{repository}/resolve/{quote(commit, safe='')}/{quote(path)}"

    def iter_file(
        self, repository: str, commit: str, file: RepoFile, chunk_bytes: int = DEFAULT_CHUNK_BYTES
    ) -> Iterator[bytes]:
        """Yield the file's content in chunks; a dropped connection resumes at the last byte with a Range request.

        Raises ``HubError`` once ``max_retries`` attempts in a row made no progress, or when the server sends
        more bytes than the listing's size.
        """
        url = self.file_url(repository, commit, file.path)
        offset = 0
        failures = 0

        while offset < file.size:
            try:
                headers = {"Range": f"bytes={offset}-"} if offset else {}
                with self._open(url, headers) as response:
                    skip = offset if offset and response.status == 200 else 0
                    for chunk in _read_chunks(response, chunk_bytes):
                        if skip:
                            dropped = min(skip, len(chunk))
                            chunk, skip = chunk[dropped:], skip - dropped
                        if not chunk:
                            continue
                        offset += len(chunk)
                        failures = 0
                        if offset > file.size:
                            raise HubError(f"{url} sent more than the listed {file.size} bytes")
                        yield chunk
                if offset < file.size:
                    raise ConnectionError(f"the response ended at byte {offset} of {file.size}")
            except (_RetryableError, ConnectionError, TimeoutError, http.client.HTTPException,
                    urllib.error.URLError) as error:
                # _open raises _RetryableError; reading the body raises the others.
                cause = error.cause if isinstance(error, _RetryableError) else error
                failures += 1
                if failures > self._max_retries:
                    raise HubError(
                        f"download of {file.path} failed at byte {offset} of {file.size} after "
                        f"{self._max_retries} retries: {cause}"
                    ) from cause
                self._wait_before_retry(url, failures, cause)

    def _get_json(self, url: str) -> tuple[Any, Any]:
        failures = 0
        while True:
            try:
                with self._open(url, {"Accept": "application/json"}) as response:
                    return json.loads(response.read()), response.headers
            except _RetryableError as error:
                failures += 1
                if failures > self._max_retries:
                    raise HubError(f"{url} failed after {self._max_retries} retries: {error.cause}") from error.cause
                self._wait_before_retry(url, failures, error.cause)
            except json.JSONDecodeError as error:
                raise HubError(f"{url} did not return JSON: {error}") from None

    def _open(self, url: str, headers: dict[str, str]):
        """Open a URL; map HTTP errors to HubError types and mark transient failures for a retry."""
        request = urllib.request.Request(url, headers=headers)
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")

        try:
            return self._opener.open(request, timeout=self._timeout)
        except urllib.error.HTTPError as error:
            error.close()
            if error.code in RETRYABLE_STATUS:
                raise _RetryableError(error) from None
            raise _http_error(url, error.code, bool(self._token)) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException) as error:
            raise _RetryableError(error) from None

    def _wait_before_retry(self, url: str, failures: int, cause: BaseException) -> None:
        delay = self._backoff * 2 ** (failures - 1)
        logger.warning("Hub request failed, retrying in %.1f s (%d of %d): %s: %s", delay, failures,
                       self._max_retries, url, cause)
        self._sleep(delay)


class _RetryableError(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _http_error(url: str, status: int, has_token: bool) -> HubError:
    if status in (401, 403):
        hint = (
            "the token has no access to it: accept the repository's terms on the Hub with the token's account"
            if has_token
            else "the repository is gated or private: give a Hub token (hubTokenSecretName in the CDK context, "
            "or HF_TOKEN for a local run)"
        )
        return HubAccessError(f"{url} returned {status}: {hint}")
    if status == 404:
        return HubNotFoundError(f"{url} returned 404: check the repository id, the revision and the Hub endpoint")
    return HubError(f"{url} returned HTTP {status}")


def _parse_tree_entry(entry: dict) -> RepoFile:
    path = entry.get("path")
    size = entry.get("size")
    if not isinstance(path, str) or not isinstance(size, int) or size < 0:
        raise HubError(f"the Hub's file listing has an entry without a valid path and size: {entry!r}")
    if path.startswith("/") or ".." in path.split("/"):
        raise HubError(f"the Hub's file listing has an unsafe path: {path!r}")

    lfs = entry.get("lfs") or {}
    sha256 = lfs.get("oid") if isinstance(lfs, dict) else None
    if sha256 is not None and (lfs.get("size") != size or not re.fullmatch(r"[0-9a-f]{64}", str(sha256))):
        raise HubError(f"the Hub's file listing has an invalid LFS entry for {path!r}: {lfs!r}")

    # For an LFS file, "oid" is the git blob sha1 of the small pointer file that git stores, not of the content.
    git_oid = entry.get("oid") if sha256 is None else None
    return RepoFile(path=path, size=size, sha256=sha256, git_oid=git_oid if isinstance(git_oid, str) else None)




def _read_chunks(response, chunk_bytes: int) -> Iterator[bytes]:
    while True:
        chunk = response.read(chunk_bytes)
        if not chunk:
            return
        yield chunk
