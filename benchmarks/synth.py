"""Wall time and peak memory of ``cdk synth`` with the pinned CDK CLI, as ``make synth`` runs it.

Each run starts ``node_modules/.bin/cdk synth --quiet --no-notices`` into a fresh temporary folder, with no
AWS credentials, so the CLI makes no AWS call and fetches no notices. The whole process tree (the CLI,
``python3 app.py`` and the jsii runtime under it) is sampled with psutil every 50 ms. The peak of the sum of
the processes' resident set sizes is the tree's peak RSS. That sum counts pages shared between processes once
per process, so it is an upper bound. The largest single process's peak, from ``getrusage(RUSAGE_CHILDREN)``,
is printed beside it.

Run: ``make bench-synth`` or ``.venv/bin/python -m benchmarks.synth``.
"""

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.common import AWS_ISOLATION, REPO_ROOT, print_header, verdict

TARGET_SECONDS = 30.0
SAMPLE_INTERVAL_SECONDS = 0.05
# A synth that runs longer than this is stopped; it would miss the target many times over.
RUN_TIMEOUT_SECONDS = 600

CDK_CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"
# Variables that would give the CDK CLI credentials, and with them a reason to call STS.
CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@dataclass(frozen=True)
class SynthRun:
    seconds: float
    peak_tree_rss_bytes: int
    processes_seen: int


def synth_environment() -> dict[str, str]:
    """Return the Makefile's environment for synth: the pinned Node and CDK CLI first on PATH, no credentials."""
    environment = {key: value for key, value in os.environ.items() if key not in CREDENTIAL_VARIABLES}
    path_entries = [str(REPO_ROOT / "node_modules" / ".bin"), str(Path(sys.executable).parent)]
    environment["PATH"] = os.pathsep.join([*path_entries, environment.get("PATH", "")])
    environment.update(AWS_ISOLATION, CDK_DISABLE_CLI_TELEMETRY="true", JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION="1")
    return environment


def run_synth(output_dir: Path, extra_arguments: list[str]) -> SynthRun:
    """Run one synth and sample its process tree until it exits; raise if the synth fails."""
    command = [str(CDK_CLI), "synth", "--quiet", "--no-notices", "--output", str(output_dir), *extra_arguments]
    log_path = output_dir.parent / f"{output_dir.name}.log"
    with open(log_path, "w") as log:
        started = time.perf_counter()
        process = psutil.Popen(command, cwd=REPO_ROOT, env=synth_environment(), stdout=log, stderr=log)
        peak, seen = _sample_tree(process)
        seconds = time.perf_counter() - started

    if process.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-30:])
        raise RuntimeError(f"cdk synth failed with exit code {process.returncode}:\n{tail}")
    return SynthRun(seconds=seconds, peak_tree_rss_bytes=peak, processes_seen=seen)


def _sample_tree(process: psutil.Popen) -> tuple[int, int]:
    peak = 0
    seen: set[int] = set()
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while process.poll() is None:
        if time.monotonic() > deadline:
            _stop_tree(process)
            raise RuntimeError(f"cdk synth ran longer than {RUN_TIMEOUT_SECONDS} s and was stopped")

        total = 0
        try:
            members = [process, *process.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for member in members:
            try:
                total += member.memory_info().rss
                seen.add(member.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        peak = max(peak, total)
        time.sleep(SAMPLE_INTERVAL_SECONDS)
    process.wait()
    return peak, len(seen)


def _stop_tree(process: psutil.Popen) -> None:
    for member in [*process.children(recursive=True), process]:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            continue
    process.wait()


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.synth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="synth runs (default: %(default)s); the median is reported")
    parser.add_argument(
        "--context", action="append", default=[], metavar="KEY=VALUE", help="a cdk context override (repeatable)"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    if not CDK_CLI.exists():
        print(f"{CDK_CLI} is missing: run `make setup` first", file=sys.stderr)
        return 2

    print_header("cdk synth wall time and peak memory")
    extra_arguments = [argument for pair in args.context for argument in ("-c", pair)]
    overrides = " ".join(extra_arguments)
    print(f"synth command: cdk synth --quiet --no-notices --output <temporary folder> {overrides}".rstrip())

    runs = []
    work_dir = Path(tempfile.mkdtemp(prefix="bench-synth-"))
    try:
        for number in range(1, args.runs + 1):
            run = run_synth(work_dir / f"cdk.out.{number}", extra_arguments)
            runs.append(run)
            print(
                f"run {number}: {run.seconds:6.1f} s, peak tree RSS {run.peak_tree_rss_bytes / 2**20:7.0f} MiB "
                f"({run.processes_seen} processes)",
                flush=True,
            )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    median_seconds = statistics.median(run.seconds for run in runs)
    peak_mib = max(run.peak_tree_rss_bytes for run in runs) / 2**20
    # ru_maxrss is in KiB on Linux.
    largest_process_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print()
    print(f"wall time: median {median_seconds:.1f} s over {len(runs)} runs")
    print(f"peak memory: process tree {peak_mib:.0f} MiB (sum of RSS), largest process {largest_process_mib:.0f} MiB")
    passed = median_seconds < TARGET_SECONDS
    print(f"target: synth under {TARGET_SECONDS:.0f} s: {median_seconds:.1f} s, {verdict(passed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
