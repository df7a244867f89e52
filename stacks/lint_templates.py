"""Run cfn-lint on every synthesized template and fail on any error.

Usage: ``python -m stacks.lint_templates cdk.out``. Warnings are printed but do not fail the run; errors do.
"""

import subprocess
import sys
from pathlib import Path

# cfn-lint's exit code is a bit mask: 2 errors, 4 warnings, 8 informational findings.
CFN_LINT_ERROR_BIT = 2


def lint(assembly_dir: Path) -> int:
    templates = sorted(assembly_dir.glob("*.template.json"))
    if not templates:
        print(f"cfn-lint: no templates found in {assembly_dir}; run cdk synth first", file=sys.stderr)
        return 1

    result = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--format", "parseable", *map(str, templates)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.stdout:
        print(result.stdout, end="")
    if result.stderr:
        print(result.stderr, end="", file=sys.stderr)

    if result.returncode & CFN_LINT_ERROR_BIT or result.returncode == 1:
        print(f"cfn-lint: errors in {len(templates)} template(s)", file=sys.stderr)
        return 1

    print(f"cfn-lint: {len(templates)} template(s), no errors")
    return 0


def main() -> None:
    assembly_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "cdk.out")
    sys.exit(lint(assembly_dir))


if __name__ == "__main__":
    main()
