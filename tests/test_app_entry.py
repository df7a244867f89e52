"""The CDK app's entry point: a configuration mistake ends synth with its message, not a traceback."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.synth


def test_invalid_context_prints_message_without_traceback(tmp_path):
    environment = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps({"profile": "bloom-560m"}),
        "CDK_OUTDIR": str(tmp_path),
    }

    result = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 1
    assert "Invalid configuration: profile='bloom-560m' is not a known profile" in result.stderr
    assert "Traceback" not in result.stderr
