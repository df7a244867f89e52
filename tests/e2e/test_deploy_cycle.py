"""The deploy cycle end to end against moto_server on 127.0.0.1: bootstrap, deploy, start, stop, destroy.

The pinned CDK CLI bootstraps the fake account, deploys every stack of the app with ``--method=direct``
(CreateStack, no change sets) and destroys them again. In between, bloomctl stages a few bytes of fake
weights and starts and stops the endpoint through the control plane's reconciler. docs/deploy-cycle.md
describes what this proves and what moto skips.
"""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from control_plane.desired import OFF, ON
from control_plane.settings import ControlSettings, settings_parameter_name
from control_plane.store import ControlStore
from tests.e2e.cdk_cli import REPO_ROOT, CdkCli, CdkResult, assembly_stacks, aws_environment
from tests.e2e.moto_coverage import KNOWN_SKIPPED_TYPES, coverage_report, skipped_resources
from tests.e2e.moto_server import MotoServer, start_moto_server
from tests.e2e.moto_templates import adapt_assembly
from tests.e2e.refusing_proxy import RefusingProxy

REGION = "us-east-1"
NAME_PREFIX = "bloom"
# bloom-1b7 runs on one instance with one GPU and tensor parallel degree 1. moto rejects its ml.g5.xlarge, and
# tests/e2e/moto_templates.py puts ml.g4dn.xlarge in its place, which also has one GPU, so the configuration
# stays consistent. The default profile's ml.p4d.24xlarge is rejected as well and has eight GPUs.
PROFILE = "bloom-1b7"
BLOOMCTL_TIMEOUT_SECONDS = 180
# bloomctl --wait polls the endpoint this often; moto changes endpoint states at once.
POLL_ARGUMENTS = ("--wait", "--poll-seconds", "1", "--timeout-minutes", "2")
REASON = "deploy cycle test"


class MotoClients:
    """boto3 clients of one moto_server, with fake credentials and no retries."""

    def __init__(self, moto_url: str) -> None:
        self.session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        self.config = Config(retries={"total_max_attempts": 1})
        self.moto_url = moto_url

    def __getattr__(self, service: str):
        client = self.session.client(service, endpoint_url=self.moto_url, config=self.config)
        setattr(self, service, client)
        return client


@dataclass
class Cycle:
    """What the steps of one deploy cycle share: the fake AWS, the CLIs' settings and the step times."""

    moto: MotoServer
    proxy: RefusingProxy
    aws: MotoClients
    cdk: CdkCli
    work_dir: Path
    account: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def bloomctl(self, *arguments: str) -> subprocess.CompletedProcess:
        """Run bloomctl with the same AWS environment as the CDK CLI."""
        environment = aws_environment(self.moto.url, REGION, self.proxy.url) | {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
            "HOME": os.environ.get("HOME", str(self.work_dir)),
        }
        return subprocess.run(
            [sys.executable, "-m", "bloomctl", "--prefix", NAME_PREFIX, "--region", REGION, *arguments],
            cwd=REPO_ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=BLOOMCTL_TIMEOUT_SECONDS,
        )

    def parameter(self, name: str) -> str:
        return self.aws.ssm.get_parameter(Name=f"/{NAME_PREFIX}/{name}")["Parameter"]["Value"]

    def endpoint_names(self) -> list[str]:
        return [endpoint["EndpointName"] for endpoint in self.aws.sagemaker.list_endpoints()["Endpoints"]]

    def endpoint_config_names(self) -> list[str]:
        return [config["EndpointConfigName"] for config in self.aws.sagemaker.list_endpoint_configs()["EndpointConfigs"]]

    def model_names(self) -> list[str]:
        return [model["ModelName"] for model in self.aws.sagemaker.list_models()["Models"]]

    def active_stacks(self) -> dict[str, str]:
        stacks = self.aws.cloudformation.describe_stacks()["Stacks"]
        return {stack["StackName"]: stack["StackStatus"] for stack in stacks}

    def control_store(self) -> ControlStore:
        parameter = settings_parameter_name(f"/{NAME_PREFIX}")
        value = self.aws.ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
        settings = ControlSettings.from_json(value, parameter)
        return ControlStore(self.aws.dynamodb, settings.table_name)

    def time_step(self, step: str, started: float) -> None:
        self.timings[step] = round(time.monotonic() - started, 1)


def failure_report(step: str, result: CdkResult, *details: str) -> str:
    sections = [f"{step} failed with exit code {result.returncode}: {' '.join(result.command)}", result.tail()]
    sections += [detail for detail in details if detail]
    return "\n\n".join(sections)


def write_fake_weights(directory: Path) -> Path:
    """Write a few small files in the layout of a Hub checkpoint; only their bytes are staged and checked."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({"model_type": "bloom", "n_layer": 2}))
    (directory / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
    (directory / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    return directory


def bootstrap(cycle: Cycle) -> None:
    # From an empty directory, so that the CLI does not synthesize the app for it.
    empty_dir = cycle.work_dir / "bootstrap"
    empty_dir.mkdir()
    result = cycle.cdk.run("bootstrap", f"aws://{cycle.account}/{REGION}", cwd=empty_dir, timeout=180)

    assert result.returncode == 0, failure_report("cdk bootstrap", result, cycle.moto.problems())
    assert cycle.active_stacks() == {"CDKToolkit": "CREATE_COMPLETE"}


def synthesize_for_moto(cycle: Cycle) -> tuple[Path, dict[str, dict], dict[str, dict]]:
    """Synthesize as make synth does (app.py, cdk.json), then change the templates for moto.

    Returns the cloud assembly directory and the templates before and after the change, by stack name. The
    changes are listed in moto-template-changes.json.
    """
    assembly_dir = cycle.work_dir / "cdk.out"
    result = cycle.cdk.run("synth", "--quiet", "-c", f"profile={PROFILE}", "--output", str(assembly_dir))
    assert result.returncode == 0, failure_report("cdk synth", result)

    original = assembly_stacks(assembly_dir)
    changes = adapt_assembly(assembly_dir)
    (cycle.work_dir / "moto-template-changes.json").write_text(json.dumps(changes, indent=1))
    return assembly_dir, original, assembly_stacks(assembly_dir)


def deploy(cycle: Cycle, assembly_dir: Path, original: dict[str, dict], stacks: dict[str, dict]) -> None:
    result = cycle.cdk.run(
        "deploy", "--all", "--app", str(assembly_dir), "--method=direct", "--require-approval", "never",
        "--progress", "events", "--outputs-file", str(cycle.work_dir / "outputs.json"),
    )
    assert result.returncode == 0, failure_report(
        "cdk deploy",
        result,
        "What moto skips in the synthesized templates:\n" + coverage_report(original),
        "moto_server warnings and errors:\n" + cycle.moto.problems(),
    )

    deployed = cycle.active_stacks()
    for stack_name in stacks:
        assert deployed.get(stack_name) == "CREATE_COMPLETE", f"{stack_name} is {deployed.get(stack_name)}"

    # --method=direct: only the bootstrap stack has a change set. moto's ListChangeSets returns the change
    # sets of every stack, whatever the StackName parameter is.
    change_sets = cycle.aws.cloudformation.list_change_sets(StackName="CDKToolkit")["Summaries"]
    assert {change_set["StackName"] for change_set in change_sets} == {"CDKToolkit"}


def check_deployed_resources(cycle: Cycle) -> tuple[str, str]:
    """Check what the control plane reads from the hosting stack; return the endpoint and config names."""
    endpoint_name = cycle.parameter("endpoint-name")
    endpoint_config_name = cycle.parameter("endpoint-config-name")
    assert endpoint_name == f"{NAME_PREFIX}-endpoint"

    endpoint_config = cycle.aws.sagemaker.describe_endpoint_config(EndpointConfigName=endpoint_config_name)
    (variant,) = endpoint_config["ProductionVariants"]
    assert variant["ModelName"] == cycle.parameter("model-name")
    assert cycle.endpoint_config_names() == [endpoint_config_name]
    assert cycle.model_names() == [variant["ModelName"]]

    # CloudFormation does not own the endpoint, so the deploy creates none.
    assert cycle.endpoint_names() == []
    return endpoint_name, endpoint_config_name


def start_and_stop(cycle: Cycle, endpoint_name: str, endpoint_config_name: str) -> None:
    weights_dir = write_fake_weights(cycle.work_dir / "fake-weights")
    staged = cycle.bloomctl("weights", "stage", "--from-dir", str(weights_dir), "--profile", PROFILE)
    assert staged.returncode == 0, f"bloomctl weights stage failed:\n{staged.stdout}"

    started = cycle.bloomctl("start", *POLL_ARGUMENTS, "--reason", REASON)
    assert started.returncode == 0, f"bloomctl start failed:\n{started.stdout}"
    endpoint = cycle.aws.sagemaker.describe_endpoint(EndpointName=endpoint_name)
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == endpoint_config_name
    desired = cycle.control_store().get_desired()
    assert desired.state == ON
    assert desired.reason == REASON

    stopped = cycle.bloomctl("stop", *POLL_ARGUMENTS, "--reason", REASON)
    assert stopped.returncode == 0, f"bloomctl stop failed:\n{stopped.stdout}"
    assert cycle.endpoint_names() == []
    assert cycle.control_store().get_desired().state == OFF


def destroy(cycle: Cycle, assembly_dir: Path, endpoint_name: str) -> None:
    result = cycle.cdk.run("destroy", "--all", "--app", str(assembly_dir), "--force")
    assert result.returncode == 0, failure_report("cdk destroy", result, cycle.moto.problems())

    assert cycle.active_stacks() == {"CDKToolkit": "CREATE_COMPLETE"}
    assert cycle.endpoint_names() == []
    with pytest.raises(ClientError, match="Could not find endpoint"):
        cycle.aws.sagemaker.describe_endpoint(EndpointName=endpoint_name)
    # The hosting stack deleted its Model and EndpointConfig with it.
    assert cycle.endpoint_config_names() == []
    assert cycle.model_names() == []

    # keepWeightsOnDestroy is true by default: the model bucket and the staged weights stay.
    cycle.aws.s3.head_bucket(Bucket=f"{NAME_PREFIX}-models-{cycle.account}-{REGION}")


@pytest.mark.slow
def test_deploy_cycle_leaves_no_endpoint(tmp_path):
    with RefusingProxy() as proxy:
        moto = start_moto_server(tmp_path / "moto_server.log")
        try:
            cdk = CdkCli(moto.url, moto.port, REGION, proxy.url, tmp_path)
            cycle = Cycle(moto, proxy, MotoClients(moto.url), cdk, tmp_path)
            cycle.account = cycle.aws.sts.get_caller_identity()["Account"]

            started = time.monotonic()
            bootstrap(cycle)
            cycle.time_step("bootstrap", started)

            started = time.monotonic()
            assembly_dir, original, stacks = synthesize_for_moto(cycle)
            assert {f"{NAME_PREFIX}-storage", f"{NAME_PREFIX}-hosting", f"{NAME_PREFIX}-control"} <= set(stacks)
            cycle.time_step("synth", started)

            started = time.monotonic()
            deploy(cycle, assembly_dir, original, stacks)
            endpoint_name, endpoint_config_name = check_deployed_resources(cycle)
            cycle.time_step("deploy", started)

            started = time.monotonic()
            start_and_stop(cycle, endpoint_name, endpoint_config_name)
            cycle.time_step("start and stop", started)

            started = time.monotonic()
            destroy(cycle, assembly_dir, endpoint_name)
            cycle.time_step("destroy", started)
        finally:
            moto.stop()

    assert proxy.requests == [], "the CDK CLI or bloomctl sent a request to a host other than 127.0.0.1 or localhost"
    print(f"deploy cycle step times in seconds: {cycle.timings}")


@pytest.mark.synth
def test_moto_skips_only_documented_types(synth):
    """Every resource type of the app that moto does not create is listed, with what that leaves unproven."""
    result = synth(profile=PROFILE)

    skipped_types = {
        resource_type
        for template in result.templates.values()
        for resource_type in skipped_resources(template).values()
    }

    undocumented = skipped_types - set(KNOWN_SKIPPED_TYPES)
    assert not undocumented, (
        f"moto_server skips {sorted(undocumented)}: add each to KNOWN_SKIPPED_TYPES in tests/e2e/moto_coverage.py "
        "and to docs/deploy-cycle.md, with what the deploy cycle then does not prove"
    )
