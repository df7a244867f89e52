"""bloomctl's command line: the global options in either position, help texts, and argument checks."""

import re

import pytest
from moto import mock_aws

from bloomctl import cli
from bloomctl.cli import build_parser
from bloomctl.commands import control, invoke, weights

# One command line per sub-command, with the positional arguments that each one needs.
COMMANDS = [
    ["status"],
    ["start"],
    ["stop"],
    ["weights", "stage"],
    ["weights", "verify"],
    ["invoke", "Hello"],
    ["local", "serve"],
    ["cost"],
]


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch):
    """Route any AWS call to moto, so that a command that reaches AWS by mistake never leaves this machine."""
    monkeypatch.delenv("BLOOM_API_KEY", raising=False)
    with mock_aws():
        yield


def command_help(capsys, *argv: str) -> str:
    """Return the --help output of a sub-command, with runs of white space joined to one space."""
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*argv, "--help"])

    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


# Global options


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_global_options_after_command(argv):
    args = build_parser().parse_args([*argv, "--prefix", "team-x", "--region", "us-west-2"])

    assert args.prefix == "team-x"
    assert args.region == "us-west-2"


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_global_options_before_command(argv):
    args = build_parser().parse_args(["--prefix", "team-x", "--region", "us-west-2", *argv])

    assert args.prefix == "team-x"
    assert args.region == "us-west-2"


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_global_options_default_to_none(argv):
    args = build_parser().parse_args(argv)

    assert args.prefix is None
    assert args.region is None


def test_command_option_wins_over_global():
    args = build_parser().parse_args(["--prefix", "outer", "--region", "eu-west-1", "status", "--prefix", "inner"])

    assert args.prefix == "inner"
    assert args.region == "eu-west-1"


def test_global_options_between_nested_commands():
    args = build_parser().parse_args(["weights", "--prefix", "team-x", "verify", "--region", "us-west-2"])

    assert args.prefix == "team-x"
    assert args.region == "us-west-2"
    assert args.func is weights.run_verify


def test_status_reads_prefix_after_command(monkeypatch, capsys):
    """The prefix given after the sub-command reaches the command: it names the settings parameter."""
    code = cli.main(["status", "--prefix", "team-x"])

    assert code == control.EXIT_USAGE
    assert "SSM parameter /team-x/control/settings not found" in capsys.readouterr().err


# Region messages


@pytest.mark.parametrize("argv", [["status"], ["start"], ["weights", "verify"], ["invoke", "Hello"]], ids=" ".join)
def test_missing_region_names_every_source(argv, monkeypatch, capsys):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")

    code = cli.main(argv)

    error = capsys.readouterr().err
    assert code == 2
    assert "--region" in error
    assert "AWS_DEFAULT_REGION" in error
    assert "aws configure" in error
    assert re.search(r"\bAWS_REGION\b", error) is None
    assert ".." not in error


# Help texts


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["start"], "status checks with --wait (default: 15 s)"),
        (["stop"], "(default: 90 min)"),
        (["weights", "stage"], "status checks with --wait (default: 15 s)"),
        (["weights", "verify"], "status checks with --wait (default: 15 s)"),
        (["invoke"], f"(default: {invoke.DEFAULT_TIMEOUT_SECONDS} s)"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_help_shows_defaults_with_units(argv, expected, capsys):
    assert expected in command_help(capsys, *argv)


def test_status_has_description(capsys):
    assert "Show the endpoint's state" in command_help(capsys, "status")


@pytest.mark.parametrize("argv", [["weights"], ["local"], ["local", "serve"], ["weights", "stage"]], ids=" ".join)
def test_help_has_no_markup(argv, capsys):
    assert "`" not in command_help(capsys, *argv)


# Argument checks


@pytest.mark.parametrize("port", ["99999", "-1", "65536", "http"])
def test_local_serve_rejects_invalid_port(port, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["local", "serve", "--port", port])

    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "--port" in error
    assert "0 to 65535" in error


@pytest.mark.parametrize("port", ["0", "8000", "65535"])
def test_local_serve_accepts_valid_port(port):
    assert build_parser().parse_args(["local", "serve", "--port", port]).port == int(port)


@pytest.mark.parametrize("model", ["/nonexistent/bloom", "./missing-model", "~/missing-bloom-folder", "models/a/b"])
def test_local_serve_rejects_missing_model_folder(model, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["local", "serve", "--model", model])

    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "no such folder" in error
    assert "Hub" not in error.split("no such folder")[0]


@pytest.mark.parametrize("model", ["tiny", "bigscience/bloom-560m", "bloom-560m"])
def test_local_serve_keeps_hub_ids(model):
    assert build_parser().parse_args(["local", "serve", "--model", model]).model == model


def test_local_serve_accepts_existing_folder(tmp_path):
    assert build_parser().parse_args(["local", "serve", "--model", str(tmp_path)]).model == str(tmp_path)


@pytest.mark.parametrize("url", ["notaurl", "ftp://example.invalid/v1/", "http://", "https:///v1/", "http://host:99999/"])
def test_invoke_rejects_invalid_url(url, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["invoke", "--url", url, "Hello"])

    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "--url" in error
    assert "http://" in error
