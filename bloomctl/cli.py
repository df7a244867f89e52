"""Entry point of ``bloomctl``: one argparse sub-command per module in ``bloomctl/commands``.

Each command module defines ``register(subparsers)``, which adds its parser and sets ``func`` to a function
that takes the parsed arguments and returns the exit code.
"""

import argparse
import importlib
import sys

from bloomctl.context import UsageError

# Command modules, in the order they appear in --help.
COMMAND_MODULES = ("control", "weights", "invoke", "local", "cost")


def add_global_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    """Add --prefix and --region, which every command reads as ``args.prefix`` and ``args.region``."""
    parser.add_argument(
        "--prefix",
        default=default,
        help="name prefix of the deployment (the namePrefix context value; default: from cdk.json, else bloom)",
    )
    parser.add_argument(
        "--region",
        default=default,
        help="AWS region (default: AWS_DEFAULT_REGION, else the region that aws configure set)",
    )


class CommandParser(argparse.ArgumentParser):
    """Parser of a sub-command, which accepts the global options after the sub-command's name too.

    Their default is SUPPRESS, so a value given after the sub-command replaces the one given before it, and
    leaving them out keeps that value (argparse copies only the sub-command's parsed values). Sub-commands
    of a sub-command, such as ``weights stage``, get this class too, because add_subparsers uses the class
    of the parser that it is called on.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        add_global_options(self, default=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bloomctl",
        description="Operate a BLOOM deployment: start and stop the endpoint, call the model, stage weights.",
    )
    add_global_options(parser)
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=CommandParser
    )

    for module_name in COMMAND_MODULES:
        module = importlib.import_module(f"bloomctl.commands.{module_name}")
        module.register(subparsers)

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as error:
        print(f"bloomctl: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
