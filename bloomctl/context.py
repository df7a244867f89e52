"""The deployment that a bloomctl command acts on: the cdk.json context, the name prefix and the AWS session.

bloomctl finds a deployment's resources by the names that the configuration derives (stack names, SSM
parameter paths, the bucket name), so it reads the same context values as ``cdk synth``. They come from
``cdk.json`` in the working directory, else from the repository's own ``cdk.json``.
"""

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import boto3

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK_JSON_NAME = "cdk.json"
DEFAULT_NAME_PREFIX = "bloom"
# boto3 reads the region from AWS_DEFAULT_REGION or the config file that aws configure writes.
NO_REGION_MESSAGE = "No AWS region is set: pass --region, set AWS_DEFAULT_REGION, or run aws configure"


class UsageError(ValueError):
    """A problem with the command line or the local setup that the user can fix; bloomctl exits with 2."""


class CdkJsonError(UsageError):
    """A cdk.json file exists but cannot be read as a CDK app configuration."""


def cdk_json_path() -> Path | None:
    """Return the cdk.json that bloomctl reads: the working directory's, else the repository's."""
    for folder in (Path.cwd(), REPO_ROOT):
        path = folder / CDK_JSON_NAME
        if path.is_file():
            return path
    return None


def read_context() -> dict[str, Any]:
    """Return the context object of cdk.json, or an empty one when there is no cdk.json."""
    path = cdk_json_path()
    if path is None:
        return {}

    try:
        context = json.loads(path.read_text()).get("context", {})
    except (OSError, ValueError, AttributeError) as error:
        raise CdkJsonError(f"{path} is not a cdk.json file with a context object: {error}") from None
    if not isinstance(context, dict):
        raise CdkJsonError(f"{path}: the context value must be an object, not {type(context).__name__}")
    return dict(context)


def name_prefix(args: argparse.Namespace) -> str:
    """Return --prefix, else namePrefix from cdk.json, else the default prefix."""
    if getattr(args, "prefix", None):
        return args.prefix
    return read_context().get("namePrefix") or DEFAULT_NAME_PREFIX


def aws_session(args: argparse.Namespace) -> "boto3.Session":
    """Return a boto3 session in --region, else in the configured region; raise UsageError without one."""
    import boto3

    session = boto3.Session(region_name=getattr(args, "region", None))
    if not session.region_name:
        raise UsageError(NO_REGION_MESSAGE)
    return session


def error_text(error: Exception) -> str:
    """Return an AWS error's message without its final period, so that a sentence can go on after it."""
    from botocore.exceptions import NoRegionError

    if isinstance(error, NoRegionError):
        return NO_REGION_MESSAGE
    return str(error).rstrip().rstrip(".")
