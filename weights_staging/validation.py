"""Checks of the values that name what to stage, shared by the CDK config, the job and the CLI.

Each check returns the cleaned value or raises ``ValueError`` with a message that says what is allowed;
callers add the name of the setting that held the value.
"""

import re
from urllib.parse import urlsplit

# Hub repository ids are "<owner>/<name>" with letters, digits, ".", "_" and "-".
REPOSITORY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
# A commit hash, a branch or a tag. Slashes are allowed for names such as refs/pr/1.
REVISION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
COMMIT_PATTERN = re.compile(r"^[0-9a-f]{40}$")
# Secrets Manager names: 1-512 characters of letters, digits and /_+=.@-
SECRET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def validate_repository(value: object) -> str:
    if not isinstance(value, str) or not REPOSITORY_PATTERN.match(value) or ".." in value:
        raise ValueError("expected a Hub repository id such as bigscience/bloom-1b7")
    return value


def validate_revision(value: object) -> str:
    if not isinstance(value, str) or not REVISION_PATTERN.match(value) or ".." in value or value.endswith("/"):
        raise ValueError(
            "expected a commit hash (40 hexadecimal characters), a branch or a tag of the Hub repository"
        )
    return value


def is_commit_hash(revision: str) -> bool:
    return bool(COMMIT_PATTERN.match(revision))


def validate_endpoint(value: object) -> str:
    """Return the Hub base URL without a trailing slash; plain http is allowed only for loopback addresses."""
    if not isinstance(value, str):
        raise ValueError("expected the Hub's base URL, for example https://huggingface.co")

    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("expected the Hub's base URL, for example https://huggingface.co")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError("use https: plain http is accepted only for a stand-in Hub on 127.0.0.1 or localhost")
    return value.strip().rstrip("/")


def validate_secret_name(value: object) -> str:
    if not isinstance(value, str) or not SECRET_NAME_PATTERN.match(value):
        raise ValueError("expected a Secrets Manager secret name: 1-512 letters, digits and /_+=.@- characters")
    return value


def validate_prefix(value: object) -> str:
    """Return an S3 key prefix that ends with a slash."""
    if not isinstance(value, str) or not value or value.startswith("/") or "//" in value:
        raise ValueError("expected a key prefix inside the bucket, such as weights/bloom-1b7/")
    return value if value.endswith("/") else value + "/"
