"""Content hashes: the sha256 and git blob sha1 that the Hub publishes, and S3's multipart ETag."""

import base64
import hashlib


class ContentDigest:
    """sha256 and, when asked for, git blob sha1 of a byte stream, fed in chunks."""

    def __init__(self, size: int, with_git_oid: bool = False) -> None:
        self._sha256 = hashlib.sha256()
        # git hashes a blob as sha1(b"blob <size>\0" + content); the size must be known before the content.
        self._git = hashlib.sha1(f"blob {size}\0".encode()) if with_git_oid else None

    def update(self, chunk: bytes) -> None:
        self._sha256.update(chunk)
        if self._git is not None:
            self._git.update(chunk)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def git_oid(self) -> str | None:
        return self._git.hexdigest() if self._git is not None else None


def md5_base64(data: bytes) -> str:
    """Return the Content-MD5 header value for a request body; S3 rejects the body when it does not match."""
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def multipart_etag(part_md5_hex: list[str]) -> str:
    """Return the ETag that S3 gives a multipart object: md5 of the parts' binary md5s, dash, part count.

    This holds for objects encrypted with SSE-S3 (the model bucket's encryption), not for SSE-KMS.
    """
    joined = b"".join(bytes.fromhex(md5) for md5 in part_md5_hex)
    return f"{hashlib.md5(joined).hexdigest()}-{len(part_md5_hex)}"


def single_part_etag(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()
