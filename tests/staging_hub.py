"""A stand-in for the Hugging Face Hub on 127.0.0.1, serving a tiny repository with real hashes.

It implements the routes that ``weights_staging.hub`` uses: model info at a revision, the paginated tree
listing with sizes, git blob oids and LFS sha256 values, and ``resolve`` downloads with Range support. LFS
downloads redirect to a second server, the "storage host", as the real Hub does. Faults can be switched on
per file: corrupted content, a connection that drops at a byte offset, and transient 503 responses.
"""

import hashlib
import json
import random
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import pytest
from moto import mock_aws

MIB = 1024 * 1024


@dataclass
class RepoContent:
    """Files of one repository at one commit; files listed in ``lfs`` are served as LFS files."""

    repository: str
    files: dict[str, bytes]
    lfs: set[str]

    @property
    def commit(self) -> str:
        digest = hashlib.sha1(self.repository.encode())
        for path in sorted(self.files):
            digest.update(path.encode() + hashlib.sha256(self.files[path]).digest())
        return digest.hexdigest()

    def tree_entry(self, path: str) -> dict:
        content = self.files[path]
        sha256 = hashlib.sha256(content).hexdigest()
        # git stores an LFS file as a pointer, so the entry's oid is the pointer's blob hash, not the content's.
        stored = (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(content)}\n".encode()
            if path in self.lfs
            else content
        )
        entry = {
            "type": "file",
            "path": path,
            "size": len(content),
            "oid": hashlib.sha1(b"blob %d\0" % len(stored) + stored).hexdigest(),
        }
        if path in self.lfs:
            entry["lfs"] = {"oid": sha256, "size": len(content), "pointerSize": len(stored)}
        return entry


def tiny_repository(repository: str = "bigscience/bloom-tiny") -> RepoContent:
    """A repository of about 18 MiB: three small git files and two LFS shards that span several 5 MiB parts."""
    generator = random.Random(20260101)
    files = {
        ".gitattributes": b"*.pt filter=lfs diff=lfs merge=lfs -text\n",
        "config.json": json.dumps({"model_type": "bloom", "n_layer": 2, "hidden_size": 64}).encode(),
        "tokenizer.json": generator.randbytes(200 * 1024),
        "shards/shard-00.pt": generator.randbytes(11 * MIB),
        "shards/shard-01.pt": generator.randbytes(7 * MIB),
    }
    return RepoContent(repository, files, lfs={"shards/shard-00.pt", "shards/shard-01.pt"})


@dataclass
class Faults:
    corrupt: set[str] = field(default_factory=set)
    # Every response for the file stops at this byte offset, until the fault is cleared.
    drop_after: dict[str, int] = field(default_factory=dict)
    # The next response for the file stops at this byte offset; later ones are complete.
    drop_once: dict[str, int] = field(default_factory=dict)
    transient_503: dict[str, int] = field(default_factory=dict)

    def clear(self) -> None:
        self.corrupt.clear()
        self.drop_after.clear()
        self.drop_once.clear()
        self.transient_503.clear()


class StandInHub:
    """Two HTTP servers on 127.0.0.1: the Hub API and the storage host that LFS downloads redirect to."""

    def __init__(self, repo: RepoContent, token: str | None = None, page_size: int = 2) -> None:
        self.repo = repo
        self.token = token
        self.page_size = page_size
        self.faults = Faults()
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.range_starts: list[tuple[str, int]] = []
        self.bytes_served: dict[str, int] = {}
        self.storage_auth_headers: list[str | None] = []
        self._hub = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, storage=False))
        self._storage = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, storage=True))
        self._threads = [
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            for server in (self._hub, self._storage)
        ]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    @property
    def storage_url(self) -> str:
        return f"http://127.0.0.1:{self._storage.server_address[1]}"

    def start(self) -> "StandInHub":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        for server in (self._hub, self._storage):
            server.shutdown()
            server.server_close()

    def content_for(self, path: str) -> bytes:
        content = self.repo.files[path]
        if path in self.faults.corrupt:
            # Same size, one byte changed in the middle: only a hash can tell.
            middle = len(content) // 2
            content = content[:middle] + bytes([content[middle] ^ 0xFF]) + content[middle + 1:]
        return content

    def record(self, kind: str, path: str, sent: int = 0) -> None:
        with self.lock:
            self.requests.append((kind, path))
            self.bytes_served[path] = self.bytes_served.get(path, 0) + sent

    def download_count(self, path: str) -> int:
        return sum(1 for kind, name in self.requests if kind == "download" and name == path)


def _handler(hub: StandInHub, storage: bool):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - the name is fixed by BaseHTTPRequestHandler
            pass

        def do_GET(self):
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            if storage:
                hub.storage_auth_headers.append(self.headers.get("Authorization"))
                return self._send_file(path.removeprefix("/lfs/"))
            if hub.token and self.headers.get("Authorization") != f"Bearer {hub.token}":
                return self._send_json(401, {"error": "Invalid credentials"})

            repo = hub.repo
            api = f"/api/models/{repo.repository}/"
            resolve = f"/{repo.repository}/resolve/"
            if path.startswith(api + "revision/"):
                return self._model_info(path.removeprefix(api + "revision/"))
            if path.startswith(api + "tree/"):
                return self._tree(path.removeprefix(api + "tree/"), parse_qs(parts.query))
            if path.startswith(resolve):
                revision, _, file_path = path.removeprefix(resolve).partition("/")
                if revision not in (repo.commit, "main") or file_path not in repo.files:
                    return self._send_json(404, {"error": "Entry not found"})
                if file_path in repo.lfs:
                    self.send_response(302)
                    self.send_header("Location", f"{hub.storage_url}/lfs/{file_path}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return self._send_file(file_path)
            return self._send_json(404, {"error": "Repository not found"})

        def _model_info(self, revision: str):
            repo = hub.repo
            hub.record("info", revision)
            if revision not in ("main", repo.commit):
                return self._send_json(404, {"error": f"Invalid rev id: {revision}"})
            siblings = [{"rfilename": path} for path in sorted(repo.files)]
            return self._send_json(200, {"id": repo.repository, "sha": repo.commit, "siblings": siblings})

        def _tree(self, revision: str, query: dict):
            repo = hub.repo
            hub.record("tree", revision)
            if revision != repo.commit or query.get("recursive") != ["true"]:
                return self._send_json(404, {"error": "expected the commit hash and recursive=true"})

            paths = sorted(repo.files)
            entries = [{"type": "directory", "path": "shards", "oid": "0" * 40, "size": 0}]
            entries += [repo.tree_entry(path) for path in paths]
            cursor = int(query.get("cursor", ["0"])[0])
            page = entries[cursor:cursor + hub.page_size]
            headers = {}
            if cursor + hub.page_size < len(entries):
                headers["Link"] = (
                    f'<{hub.url}/api/models/{repo.repository}/tree/{revision}?recursive=true&cursor='
                    f'{cursor + hub.page_size}>; rel="next"'
                )
            return self._send_json(200, page, headers)

        def _send_file(self, file_path: str):
            if file_path not in hub.repo.files:
                return self._send_json(404, {"error": "Entry not found"})
            with hub.lock:
                failures_left = hub.faults.transient_503.get(file_path, 0)
                if failures_left:
                    hub.faults.transient_503[file_path] = failures_left - 1
            if failures_left:
                hub.record("download-503", file_path)
                return self._send_json(503, {"error": "try again"})

            content = hub.content_for(file_path)
            start = 0
            status = 200
            range_header = self.headers.get("Range")
            if range_header and range_header.startswith("bytes="):
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                status = 206
                hub.range_starts.append((file_path, start))

            body = content[start:]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
            self.end_headers()

            with hub.lock:
                drop_at = hub.faults.drop_once.pop(file_path, hub.faults.drop_after.get(file_path))
            if drop_at is not None and start + len(body) > drop_at:
                # Send up to the drop offset, then close: the client sees a short body.
                sent = max(drop_at - start, 0)
                self.wfile.write(body[:sent])
                self.wfile.flush()
                self.close_connection = True
            else:
                sent = len(body)
                self.wfile.write(body)
            hub.record("download", file_path, sent)
            return None

        def _send_json(self, status: int, document, headers: dict | None = None):
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
            return None

    return Handler


BUCKET = "bloom-models-123456789012-eu-west-1"


@pytest.fixture
def stand_in_hub():
    """The stand-in Hub serving the tiny repository, stopped after the test."""
    hub = StandInHub(tiny_repository()).start()
    yield hub
    hub.stop()


@pytest.fixture
def s3_client():
    """A moto S3 client with the model bucket of the default deployment (account 123456789012, eu-west-1)."""
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-1")
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield client


class S3Requests:
    """Records every S3 request a client makes: operation, key, part number and body size."""

    def __init__(self, client) -> None:
        self.calls: list[tuple[str, str | None, int | None, int | None]] = []
        # provide-client-params receives the caller's parameters before botocore wraps bodies in file objects.
        client.meta.events.register("provide-client-params.s3", self._record)

    def _record(self, params, model, **_kwargs) -> None:
        body = params.get("Body")
        size = len(body) if isinstance(body, (bytes, bytearray)) else None
        self.calls.append((model.name, params.get("Key"), params.get("PartNumber"), size))

    def named(self, operation: str) -> list[tuple[str, str | None, int | None, int | None]]:
        return [call for call in self.calls if call[0] == operation]

    def clear(self) -> None:
        self.calls.clear()
