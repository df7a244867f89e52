"""bloomctl reads the deployment's cdk.json context the same way for every command."""

import argparse

import pytest

from botocore.exceptions import NoRegionError

from bloomctl import cli
from bloomctl.context import NO_REGION_MESSAGE, CdkJsonError, error_text, name_prefix, read_context


def test_working_directory_cdk_json_wins(tmp_path, monkeypatch):
    (tmp_path / "cdk.json").write_text('{"context": {"namePrefix": "team-b"}}')
    monkeypatch.chdir(tmp_path)

    assert read_context() == {"namePrefix": "team-b"}
    assert name_prefix(argparse.Namespace(prefix=None)) == "team-b"


def test_prefix_option_overrides_cdk_json(tmp_path, monkeypatch):
    (tmp_path / "cdk.json").write_text('{"context": {"namePrefix": "team-b"}}')
    monkeypatch.chdir(tmp_path)

    assert name_prefix(argparse.Namespace(prefix="team-c")) == "team-c"


def test_repository_cdk_json_used_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    assert read_context()["profile"] == "bloom-176b-int8"


def test_invalid_cdk_json_raises_with_path(tmp_path, monkeypatch):
    (tmp_path / "cdk.json").write_text("{not json")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(CdkJsonError, match="cdk.json is not a cdk.json file"):
        read_context()


def test_invalid_cdk_json_exits_2_with_message(tmp_path, monkeypatch, capsys):
    (tmp_path / "cdk.json").write_text('{"context": []}')
    monkeypatch.chdir(tmp_path)

    code = cli.main(["status"])

    assert code == 2
    assert "the context value must be an object" in capsys.readouterr().err


def test_error_text_names_region_sources():
    assert error_text(NoRegionError()) == NO_REGION_MESSAGE


def test_error_text_drops_final_period():
    assert error_text(ValueError("Stack with id bloom-api does not exist.")) == "Stack with id bloom-api does not exist"
