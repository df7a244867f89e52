"""Cold import time of each Lambda handler module: a fresh interpreter per sample, median of several.

A handler module is a module under ``lambda/`` that defines ``lambda_handler`` at the top level. Each sample
starts a new Python process with ``lambda/`` on its path, as the Lambda runtime puts the code asset's root on
its path, and times ``import <module>`` inside it, so the interpreter's own start-up is not counted. One
untimed run per module first writes the bytecode caches, so the samples read compiled modules from a warm
disk cache. One more run with ``-X importtime`` shows which packages the time goes to.

Run: ``make bench-import`` or ``.venv/bin/python -m benchmarks.cold_import``.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import AWS_ISOLATION, LAMBDA_CODE_DIR, print_header, verdict

TARGET_MS = 300.0

HANDLER_DEFINITION = re.compile(r"^(def lambda_handler\b|lambda_handler\s*=)", re.MULTILINE)

TIMED_IMPORT = (
    "import importlib, sys, time\n"
    "started = time.perf_counter()\n"
    "importlib.import_module(sys.argv[1])\n"
    "print((time.perf_counter() - started) * 1000)\n"
)

# One line of -X importtime: "import time:  self [us] |  cumulative |  <indent>module".
IMPORT_TIME_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)$")


@dataclass(frozen=True)
class ImportTiming:
    module: str
    samples_ms: tuple[float, ...]
    heaviest: tuple[tuple[str, float], ...]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)


def find_handler_modules(code_dir: Path = LAMBDA_CODE_DIR) -> list[str]:
    """Return the dotted names of the modules under ``code_dir`` that define ``lambda_handler``."""
    modules = []
    for path in sorted(code_dir.rglob("*.py")):
        if "__pycache__" in path.parts or not HANDLER_DEFINITION.search(path.read_text()):
            continue
        relative = path.relative_to(code_dir).with_suffix("")
        modules.append(".".join(relative.parts))
    return modules


def _environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = str(LAMBDA_CODE_DIR)
    environment.update(AWS_ISOLATION)
    return environment


def time_import(module: str, samples: int) -> ImportTiming:
    environment = _environment()
    command = [sys.executable, "-c", TIMED_IMPORT, module]
    # Untimed: compiles the modules and fills the disk cache.
    subprocess.run(command, env=environment, check=True, capture_output=True, text=True, timeout=120)

    timings = []
    for _ in range(samples):
        result = subprocess.run(command, env=environment, check=True, capture_output=True, text=True, timeout=120)
        timings.append(float(result.stdout.strip().splitlines()[-1]))
    return ImportTiming(module, tuple(timings), heaviest_imports(module, environment))


def heaviest_imports(module: str, environment: dict[str, str], count: int = 6) -> tuple[tuple[str, float], ...]:
    """Return the top-level packages whose own module code takes the most import time, in milliseconds.

    Each module's self time (``-X importtime``'s first column) counts for its top-level package, so that no
    module is counted twice.
    """
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=environment, check=True, capture_output=True, text=True, timeout=120,
    )
    totals: dict[str, float] = {}
    # The interpreter's start-up imports come first and end with ``site``; only the lines after it count.
    lines = result.stderr.splitlines()
    site_lines = [index for index, line in enumerate(lines) if line.rstrip().endswith("| site")]
    for line in lines[site_lines[-1] + 1 if site_lines else 0:]:
        match = IMPORT_TIME_LINE.match(line)
        if match is not None:
            package = match.group(4).split(".")[0]
            totals[package] = totals.get(package, 0.0) + int(match.group(1)) / 1000

    ranked = sorted(totals.items(), key=lambda item: item[1], reverse=True)
    return tuple(ranked[:count])


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_import", description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=9, help="fresh processes per module (default: %(default)s)")
    parser.add_argument("--module", action="append", help="time only this module (repeatable)")
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    print_header("Cold import time of the Lambda handler modules")
    modules = args.module or find_handler_modules()
    print(f"{len(modules)} handler modules, {args.samples} fresh processes each (median), bytecode cache warm\n")

    timings = [time_import(module, args.samples) for module in modules]
    width = max(len(timing.module) for timing in timings)
    for timing in timings:
        spread = f"min {min(timing.samples_ms):6.1f}  max {max(timing.samples_ms):6.1f}"
        print(f"{timing.module:<{width}}  median {timing.median_ms:6.1f} ms  ({spread} ms)")
        heaviest = ", ".join(f"{name} {milliseconds:.0f} ms" for name, milliseconds in timing.heaviest)
        print(f"{'':<{width}}  own time by package: {heaviest}")
    print()

    slowest = max(timings, key=lambda timing: timing.median_ms)
    passed = slowest.median_ms < TARGET_MS
    print(
        f"target: cold import under {TARGET_MS:.0f} ms: slowest median {slowest.median_ms:.1f} ms "
        f"({slowest.module}), {verdict(passed)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
