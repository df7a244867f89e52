"""Run the project's pinned CDK CLI (node_modules/.bin/cdk) against moto_server, and nothing else.

The environment is built from scratch: fake credentials, every AWS endpoint on moto_server, no shared
config files, no instance metadata, CDK telemetry, notices and version check off, and a refusing proxy for
any host other than 127.0.0.1 and localhost.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_BIN = REPO_ROOT / "node_modules" / ".bin"
# Output kept in an assertion message; the full output is in the command's log file.
OUTPUT_TAIL_CHARS = 6000


@dataclass(frozen=True)
class CdkResult:
    command: list[str]
    returncode: int
    output: str

    def tail(self) -> str:
        return self.output[-OUTPUT_TAIL_CHARS:]


class CdkCli:
    """The CDK CLI, pointed at one moto_server, writing each command's output to a log file in ``work_dir``."""

    def __init__(self, moto_url: str, moto_port: int, region: str, proxy_url: str, work_dir: Path) -> None:
        cdk = NODE_BIN / "cdk"
        if not cdk.exists():
            raise FileNotFoundError(f"{cdk} is missing: run `make setup` (npm install) first")
        self.cdk = cdk
        self.work_dir = work_dir
        self.environment = aws_environment(moto_url, region, proxy_url) | {
            "PATH": os.pathsep.join([str(NODE_BIN), str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
            "HOME": os.environ.get("HOME", str(work_dir)),
            # CDK's own cache (notices, version check) stays in the test's directory.
            "CDK_HOME": str(work_dir / "cdk-home"),
            "CDK_DISABLE_CLI_TELEMETRY": "true",
            "CDK_DISABLE_VERSION_CHECK": "1",
            "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1",
            # The CLI passes CloudFormation the template as an S3 URL built from this endpoint. moto takes the
            # bucket from the URL's path only when the URL contains "localhost". For 127.0.0.1 it would read
            # the bucket "127" from the host name. moto never fetches the URL, so this host is only a label.
            "AWS_ENDPOINT_URL_S3_FOR_CLOUDFORMATION": f"http://localhost:{moto_port}",
        }

    def run(self, *arguments: str, cwd: Path = REPO_ROOT, timeout: float = 300) -> CdkResult:
        """Run one CDK command and return its exit code and combined output.

        Raises subprocess.TimeoutExpired after ``timeout`` seconds, having killed the command.
        """
        command = [str(self.cdk), *arguments, "--no-notices"]
        completed = subprocess.run(
            command,
            cwd=cwd,
            env=self.environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        log_name = f"cdk-{arguments[0]}.log"
        (self.work_dir / log_name).write_text(completed.stdout)
        return CdkResult(command, completed.returncode, completed.stdout)


def aws_environment(moto_url: str, region: str, proxy_url: str) -> dict[str, str]:
    """Return the environment that sends every AWS SDK call (JS SDK v3 and boto3) to moto_server."""
    return {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "HTTP_PROXY": proxy_url,
        "HTTPS_PROXY": proxy_url,
        "http_proxy": proxy_url,
        "https_proxy": proxy_url,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def assembly_stacks(assembly_dir: Path) -> dict[str, dict]:
    """Return the template of every stack in a cloud assembly, by CloudFormation stack name."""
    manifest = json.loads((assembly_dir / "manifest.json").read_text())
    stacks = {}
    for artifact_id, artifact in manifest["artifacts"].items():
        if artifact["type"] != "aws:cloudformation:stack":
            continue
        properties = artifact["properties"]
        stack_name = properties.get("stackName", artifact_id)
        stacks[stack_name] = json.loads((assembly_dir / properties["templateFile"]).read_text())
    return stacks
