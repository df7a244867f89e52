"""Shared fixtures: fake AWS credentials for every test, and a cached synth of the app per context."""

import json
import os
from functools import lru_cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK_JSON_CONTEXT = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]

# jsii starts the first `node` on PATH when aws_cdk is imported; prefer the Node 22 pinned in package.json
# so that a plain `pytest` run behaves like `make test`.
_PINNED_NODE_BIN = REPO_ROOT / "node_modules" / ".bin"
if _PINNED_NODE_BIN.is_dir():
    os.environ["PATH"] = f"{_PINNED_NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(autouse=True)
def fake_aws_credentials(monkeypatch):
    """Keep every test away from real AWS: fake keys, a fixed region, no shared config files."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class SynthResult:
    """A synthesized app: the stack handles, the templates by stack id and the validation report."""

    def __init__(self, bloom_app, assembly_dir: Path):
        self.app = bloom_app
        self.assembly_dir = assembly_dir
        self.templates = {
            stack.node.id: json.loads((assembly_dir / f"{stack.artifact_id}.template.json").read_text())
            for stack in bloom_app.stacks
        }
        report = assembly_dir / "validation-report.json"
        self.validation_report = json.loads(report.read_text()) if report.exists() else None


@lru_cache(maxsize=16)
def _synth_cached(context_items: tuple, outdir: str) -> SynthResult:
    import aws_cdk as cdk

    from stacks.app_builder import build_app

    context = {**CDK_JSON_CONTEXT, **dict(context_items)}
    app = cdk.App(context=context, outdir=outdir)
    bloom_app = build_app(app)
    app.synth()
    return SynthResult(bloom_app, Path(outdir))


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """Return a function that synthesizes the app with context overrides, caching by context."""

    def run(**context) -> SynthResult:
        items = tuple(sorted((key, json.dumps(value) if isinstance(value, (dict, list)) else value)
                             for key, value in context.items()))
        outdir = tmp_path_factory.mktemp("cdk-out")
        return _synth_cached(items, str(outdir))

    return run


@pytest.fixture(scope="session")
def default_synth(synth) -> SynthResult:
    """The app as ``make synth`` builds it: the default BLOOM-176B INT8 profile."""
    return synth()
