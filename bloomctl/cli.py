"""Entry point of ``bloomctl``: one argparse sub-command per module in ``bloomctl/commands``.

Each command module defines ``register(subparsers)``, which adds its parser and sets ``func`` to a function
that takes the parsed arguments and returns the exit code.
"""

import argparse
import importlib
import sys

from bloomctl.context import CdkJsonError

# Command modules, in the order they appear in --help.
COMMAND_MODULES = ("control", "weights", "invoke", "local", "cost")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bloomctl",
        description="Operate a BLOOM deployment: start and stop the endpoint, call the model, stage weights.",
    )
    parser.add_argument(
        "--prefix",
        default=None,
        help="name prefix of the deployment (the namePrefix context value; default: from cdk.json, else bloom)",
    )
    parser.add_argument("--region", default=None, help="AWS region (default: from the AWS configuration)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"bloomctl.commands.{module_name}")
        module.register(subparsers)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CdkJsonError as error:
        print(f"bloomctl: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
