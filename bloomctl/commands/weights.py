"""``bloomctl weights``: stage the model weights into the model bucket, follow the staging job, verify them.

Both actions work on the deployed profile, which the hosting stack publishes as the SSM parameter
``/<prefix>/profile`` (and its weights prefix as ``/<prefix>/weights-prefix``), so that they check the same
prefix as the weights check before a start. Before the hosting stack is deployed, the profile in cdk.json
applies.

``stage`` starts the storage stack's CodeBuild job by default, so 180 GB never pass through this machine.
``stage --local`` runs the same staging code here, from a Hub URL or a local directory, for small profiles.
``verify`` checks the staged weights against their manifest, the same check that a start runs.
"""

import argparse
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bloomctl.context import DEFAULT_NAME_PREFIX, aws_session, error_text, read_context
from stacks.config import ConfigError, DeploymentConfig, load_config
from stacks.profiles import DEFAULT_PROFILE
from stacks.weight_staging_settings import StagingSettings, load_staging_settings
from weights_manifest.check import check_weights
from weights_staging.hub import HubClient, HubError
from weights_staging.progress import ProgressSnapshot, format_progress, read_progress_record
from weights_staging.sources import HubSource, LocalDirectorySource
from weights_staging.stage import StagingError, StagingOptions, stage_weights
from weights_staging.validation import is_commit_hash, validate_endpoint, validate_revision
from weights_staging.verify import verify_weights

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# Profiles above this size are staged in the cloud unless --allow-large is given: a local run moves every
# byte through this machine twice (download and upload).
LOCAL_MAX_WEIGHTS_GB = 20
# updated_at of the job's progress record.
RECORD_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
DESCRIPTION = "Stage the model weights of the deployed profile into the model bucket, and verify them."


class CommandError(Exception):
    """An error that the user can fix, with a message that explains how. The command exits with status 2."""


@dataclass
class AwsClients:
    s3: Any
    codebuild: Any
    ssm: Any
    region: str
    account: str


@dataclass(frozen=True)
class DeployedProfile:
    """The profile and weights prefix that the hosting stack published, or None for a missing parameter."""

    profile: str | None
    weights_prefix: str | None
    name_prefix: str

    @property
    def profile_parameter(self) -> str:
        return f"/{self.name_prefix}/profile"


@dataclass(frozen=True)
class Target:
    """The deployment and profile that a command acts on."""

    config: DeploymentConfig
    settings: StagingSettings
    bucket: str

    @property
    def prefix(self) -> str:
        return self.config.weights_prefix


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "weights", help="stage the model weights into the model bucket and verify them", description=DESCRIPTION
    )
    commands = parser.add_subparsers(dest="weights_command", required=True, metavar="ACTION")

    stage = commands.add_parser("stage", help="copy the profile's weights from the Hub into the model bucket")
    _add_common_options(stage)
    stage.add_argument("--wait", action="store_true", help="follow the job until it ends, with progress and ETA")
    stage.add_argument("--revision", help="commit hash of the Hub repository to stage (default: weightsRevision)")
    stage.add_argument("--hub-url", help="base URL of the Hub (default: HF_ENDPOINT, then hubEndpoint)")
    stage.add_argument("--local", action="store_true", help="run the staging here instead of in CodeBuild")
    stage.add_argument("--from-dir", type=Path, help="stage the files of a local directory (implies --local)")
    stage.add_argument(
        "--allow-large", action="store_true",
        help=f"allow --local for profiles with more than {LOCAL_MAX_WEIGHTS_GB} GB of weights",
    )
    stage.add_argument("--part-size-mib", type=int, default=64, help="multipart upload part size in MiB (min 5)")
    stage.set_defaults(func=run_stage)

    verify = commands.add_parser("verify", help="check the staged weights against their manifest")
    _add_common_options(verify)
    verify.add_argument("--deep", action="store_true", help="also read every object and check its sha256")
    verify.add_argument(
        "--in-cloud", action="store_true", help="run the check in the CodeBuild job instead of on this machine"
    )
    verify.add_argument("--wait", action="store_true", help="with --in-cloud: follow the job until it ends")
    verify.add_argument(
        "--allow-large", action="store_true",
        help=f"allow --deep on this machine for profiles with more than {LOCAL_MAX_WEIGHTS_GB} GB of weights",
    )
    verify.set_defaults(func=run_verify)


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        help="model profile; it must be the deployed one (default: the deployed profile, from the SSM parameter "
        "/<prefix>/profile, else the profile in cdk.json)",
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=15.0,
        help="seconds between two status checks with --wait (default: %(default)g s)",
    )


# Command handlers


def run_stage(args: argparse.Namespace) -> int:
    try:
        clients = make_clients(args)
        target = resolve_target(args, clients)
        if args.local or args.from_dir:
            return _stage_locally(args, clients, target)
        return _stage_in_cloud(args, clients, target)
    except CommandError as error:
        _error(str(error))
        return EXIT_USAGE


def run_verify(args: argparse.Namespace) -> int:
    try:
        clients = make_clients(args)
        target = resolve_target(args, clients)
        if args.in_cloud:
            action = "verify-deep" if args.deep else "verify"
            build_id = _start_build(clients, target, {"STAGING_ACTION": action})
            print(f"Started the {action} build {build_id} of {target.settings.project_name}.")
            return _follow_build(args, clients, target, build_id) if args.wait else EXIT_OK
        _reject_large_local_run(target, args.allow_large or not args.deep, "--deep")
    except CommandError as error:
        _error(str(error))
        return EXIT_USAGE

    def show(path: str, size: int) -> None:
        if args.deep:
            print(f"  checked {path} ({size} bytes)")

    report = verify_weights(clients.s3, target.bucket, target.prefix, deep=args.deep, on_file=show)
    print(report.message)
    for problem in report.problems:
        print(f"  {problem}")
    return EXIT_OK if report.ok else EXIT_FAILED


# Target resolution


def make_clients(args: argparse.Namespace) -> AwsClients:
    session = aws_session(args)
    try:
        account = session.client("sts").get_caller_identity()["Account"]
    except (ClientError, BotoCoreError) as error:
        raise CommandError(f"Could not read the AWS account from the credentials: {error_text(error)}") from None
    return AwsClients(
        s3=session.client("s3"),
        codebuild=session.client("codebuild"),
        ssm=session.client("ssm"),
        region=session.region_name,
        account=account,
    )


def resolve_target(args: argparse.Namespace, clients: AwsClients) -> Target:
    """Read cdk.json (from the working directory, else the repository) and apply --prefix and the profile.

    The profile is the deployed one. --profile must name it, and cdk.json applies only while no hosting
    stack has published one.
    """
    context = read_context()
    if getattr(args, "prefix", None):
        context["namePrefix"] = args.prefix
    deployed = read_deployed_profile(clients.ssm, context.get("namePrefix") or DEFAULT_NAME_PREFIX)
    context.update(_profile_context(args.profile, deployed, context.get("profile")))

    try:
        config = load_config(context.get)
        settings = load_staging_settings(config)
    except ConfigError as error:
        raise CommandError(str(error)) from None
    bucket = config.bucket_name_pattern.format(account=clients.account, region=clients.region)
    return Target(config, settings, bucket)


def read_deployed_profile(ssm: Any, name_prefix: str) -> DeployedProfile:
    """Read the profile and weights prefix that the hosting stack publishes under ``/<name_prefix>``."""
    values = {}
    for name in ("profile", "weights-prefix"):
        parameter = f"/{name_prefix}/{name}"
        try:
            values[name] = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ParameterNotFound":
                raise CommandError(f"Could not read the SSM parameter {parameter}: {error_text(error)}") from None
            values[name] = None
        except BotoCoreError as error:
            raise CommandError(
                f"Could not read the SSM parameter {parameter}: {error_text(error)}. Check --region and your "
                "credentials"
            ) from None
    return DeployedProfile(values["profile"], values["weights-prefix"], name_prefix)


def _profile_context(requested: str | None, deployed: DeployedProfile, configured: str | None) -> dict[str, str]:
    """Return the context values that select the profile: the deployed one, --profile or cdk.json's."""
    parameter = deployed.profile_parameter
    if deployed.profile is None:
        if requested is None:
            print(
                f"Note: the SSM parameter {parameter} does not exist (the hosting stack {deployed.name_prefix}-hosting "
                f"publishes it), so the profile in cdk.json ({configured or DEFAULT_PROFILE}) applies.",
                file=sys.stderr,
            )
            return {}
        return {"profile": requested}

    if requested is not None and requested != deployed.profile:
        raise CommandError(
            f"--profile {requested} is not the deployed profile {deployed.profile} (SSM parameter {parameter}): a "
            f"start checks the weights of {deployed.profile} only. Deploy with -c profile={requested} first, or "
            "drop --profile."
        )
    if requested is None and configured and configured != deployed.profile:
        print(
            f"Note: using the deployed profile {deployed.profile} (SSM parameter {parameter}), not {configured} "
            "from cdk.json.",
            file=sys.stderr,
        )
    values = {"profile": deployed.profile}
    if deployed.weights_prefix:
        values["weightsPrefix"] = deployed.weights_prefix
    return values


def _reject_large_local_run(target: Target, allowed: bool, option: str) -> None:
    profile = target.config.profile
    if profile.weights_size_gb > LOCAL_MAX_WEIGHTS_GB and not allowed:
        raise CommandError(
            f"{profile.name} has about {profile.weights_size_gb} GB of weights: {option} on this machine moves all "
            "of them through it. Run it in the cloud (drop --local, or add --in-cloud to verify), or pass "
            "--allow-large."
        )


# Local staging


def _stage_locally(args: argparse.Namespace, clients: AwsClients, target: Target) -> int:
    if args.part_size_mib < 5:
        raise CommandError(f"--part-size-mib={args.part_size_mib} is invalid: S3 parts are at least 5 MiB")

    if args.from_dir:
        source = LocalDirectorySource(args.from_dir, repository=target.settings.repository)
        where = f"the local directory {args.from_dir}"
    else:
        _reject_large_local_run(target, args.allow_large, "--local")
        revision = _revision(args.revision or target.settings.revision)
        endpoint = _hub_endpoint(args.hub_url or os.environ.get("HF_ENDPOINT") or target.settings.hub_endpoint)
        source = HubSource(HubClient(endpoint, os.environ.get("HF_TOKEN")), target.settings.repository, revision)
        where = f"{target.settings.repository} at {revision} from {endpoint}"

    print(f"Staging {where} to s3://{target.bucket}/{target.prefix}")
    options = StagingOptions(part_size=args.part_size_mib * 1024 * 1024, progress_interval_seconds=5.0)
    try:
        result = stage_weights(source, clients.s3, target.bucket, target.prefix, options, on_progress=_print_progress)
    except (StagingError, HubError, FileNotFoundError) as error:
        _error(f"Staging failed: {error}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _error("Interrupted. Files already verified stay in place; run the same command again to resume.")
        return EXIT_INTERRUPTED

    manifest = result.manifest
    if result.already_complete:
        print(f"Already staged: {len(manifest.files)} files, {manifest.total_bytes} bytes. Nothing to do.")
    else:
        counters = result.counters
        print(
            f"Staged {len(manifest.files)} files, {manifest.total_bytes} bytes: {result.files_staged} uploaded "
            f"({counters.bytes_uploaded} bytes), {result.files_skipped} already in place, "
            f"{counters.parts_reused} parts of interrupted uploads reused."
        )
    print(f"Manifest written to s3://{target.bucket}/{target.prefix}weights-manifest.json")
    return EXIT_OK


def _checked_setting(value: str | None, check, missing: str, label: str) -> str:
    """Return the validated value; raise CommandError with ``missing`` when it is not set."""
    if not value:
        raise CommandError(missing)
    try:
        return check(value)
    except ValueError as error:
        raise CommandError(f"{label}={value!r} is invalid: {error}") from None


def _revision(value: str | None) -> str:
    revision = _checked_setting(
        value,
        validate_revision,
        "No revision to stage: pass --revision with the commit hash of the Hub repository, or set the "
        "weightsRevision context value in cdk.json",
        "revision",
    )
    if not is_commit_hash(revision):
        print(
            f"Warning: {revision} is a branch or tag, not a commit hash. The manifest records the commit it "
            "resolves to now, but a later run may stage other files.",
            file=sys.stderr,
        )
    return revision


def _hub_endpoint(value: str | None) -> str:
    return _checked_setting(
        value,
        validate_endpoint,
        "No Hub endpoint: pass --hub-url, set HF_ENDPOINT, or set the hubEndpoint context value in cdk.json "
        "(the public Hub is https://huggingface.co)",
        "Hub endpoint",
    )


def _print_progress(snapshot: ProgressSnapshot) -> None:
    print(f"  {format_progress(snapshot)}", flush=True)


# Cloud staging


def _stage_in_cloud(args: argparse.Namespace, clients: AwsClients, target: Target) -> int:
    project = _describe_project(clients, target)
    project_env = {
        variable["name"]: variable.get("value", "")
        for variable in project.get("environment", {}).get("environmentVariables", [])
    }

    deployed_profile = project_env.get("BLOOM_PROFILE")
    if deployed_profile and deployed_profile != target.config.profile.name:
        raise CommandError(
            f"The staging job of this deployment was deployed for profile {deployed_profile} and can write only "
            f"its weights prefix. Deploy the storage stack with -c profile={target.config.profile.name} first, "
            f"or pass --profile {deployed_profile}."
        )

    overrides = {}
    revision = _revision(args.revision or project_env.get("WEIGHTS_REVISION"))
    if args.revision:
        overrides["WEIGHTS_REVISION"] = revision
    endpoint_override = args.hub_url or os.environ.get("HF_ENDPOINT")
    _hub_endpoint(endpoint_override or project_env.get("HF_ENDPOINT"))
    if endpoint_override:
        overrides["HF_ENDPOINT"] = _hub_endpoint(endpoint_override)

    build_id = _start_build(clients, target, {"STAGING_ACTION": "stage", **overrides})
    print(f"Started the staging build {build_id}: {target.settings.repository} at {revision} to "
          f"s3://{target.bucket}/{target.prefix}")
    if not args.wait:
        print("The build runs in the cloud. Follow it with --wait next time, and check the result with "
              "`bloomctl weights verify`.")
        return EXIT_OK
    return _follow_build(args, clients, target, build_id)


def _describe_project(clients: AwsClients, target: Target) -> dict[str, Any]:
    name = target.settings.project_name
    try:
        projects = clients.codebuild.batch_get_projects(names=[name]).get("projects", [])
    except (ClientError, BotoCoreError) as error:
        raise CommandError(f"Could not read the CodeBuild project {name}: {error_text(error)}") from None
    if not projects:
        raise CommandError(
            f"The CodeBuild project {name} does not exist in {clients.region}: deploy the storage stack "
            f"({target.config.stack_name('storage')}) first"
        )
    return projects[0]


def _start_build(clients: AwsClients, target: Target, variables: dict[str, str]) -> str:
    overrides = [{"name": name, "value": value, "type": "PLAINTEXT"} for name, value in variables.items()]
    try:
        response = clients.codebuild.start_build(
            projectName=target.settings.project_name, environmentVariablesOverride=overrides
        )
    except (ClientError, BotoCoreError) as error:
        raise CommandError(
            f"Could not start the CodeBuild project {target.settings.project_name}: {error_text(error)}"
        ) from None
    return response["build"]["id"]


def _follow_build(
    args: argparse.Namespace,
    clients: AwsClients,
    target: Target,
    build_id: str,
) -> int:
    """Poll the build and the job's progress record until the build ends; return the exit status."""
    last_line = None
    try:
        while True:
            build = clients.codebuild.batch_get_builds(ids=[build_id])["builds"][0]
            record = _record_of_build(read_progress_record(clients.s3, target.bucket, target.prefix), build)
            line = _build_line(build, record)
            if line != last_line:
                print(line, flush=True)
                last_line = line
            if build.get("buildComplete"):
                return _report_build_end(build, record, clients, target)
            time.sleep(args.poll_seconds)
    except KeyboardInterrupt:
        _error(f"Stopped following. The build {build_id} keeps running in the cloud.")
        return EXIT_INTERRUPTED


def _record_of_build(record: dict[str, Any] | None, build: dict[str, Any]) -> dict[str, Any] | None:
    """Return the progress record only if this build wrote it, not an earlier run."""
    started = build.get("startTime")
    if record is None or started is None:
        return record

    try:
        updated = datetime.strptime(str(record.get("updated_at")), RECORD_TIME_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return record if updated >= started.replace(microsecond=0) else None


def _build_line(build: dict[str, Any], record: dict[str, Any] | None) -> str:
    phase = build.get("currentPhase", "?")
    status = build.get("buildStatus", "?")
    progress = (record or {}).get("progress")
    if progress and (record or {}).get("status") == "staging":
        return f"[{status} {phase}] {format_progress(ProgressSnapshot.from_dict(progress))}"
    return f"[{status} {phase}]"


def _report_build_end(build: dict[str, Any], record: dict[str, Any] | None, clients: AwsClients, target: Target) -> int:
    status = build.get("buildStatus")
    if status == "SUCCEEDED":
        check = check_weights(clients.s3, target.bucket, target.prefix)
        print(check.message)
        return EXIT_OK if check.ok else EXIT_FAILED

    _error(f"The build {build.get('id')} ended with {status}.")
    if record and record.get("status") == "failed" and record.get("detail"):
        _error(f"  {record['detail']}")
    for phase in build.get("phases", []):
        for context in phase.get("contexts", []) or []:
            if context.get("message"):
                _error(f"  {phase.get('phaseType')}: {context['message']}")
    logs = build.get("logs", {})
    if logs.get("groupName"):
        _error(f"  Logs: CloudWatch log group {logs['groupName']}, stream {logs.get('streamName', '?')}")
    return EXIT_FAILED


def _error(message: str) -> None:
    print(message, file=sys.stderr)
