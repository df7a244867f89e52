"""Import the invoke function's package at synth time.

The package in ``lambda/invoke_api`` owns the request schema, the OpenAPI description, the generation bounds and
the timeout chain. The stacks use the same modules, so the template and the function cannot disagree.
Those modules import only the standard library.
"""

import sys
from pathlib import Path

# The shared Lambda code folder, as in stacks/python_function.py. Built here rather than imported from there, so
# that the CLI and local mode read the package without starting aws_cdk's jsii runtime.
LAMBDA_CODE_DIR = Path(__file__).resolve().parent.parent / "lambda"

if str(LAMBDA_CODE_DIR) not in sys.path:
    sys.path.append(str(LAMBDA_CODE_DIR))

from invoke_api import bounds, openapi, schema, timeouts  # noqa: E402

__all__ = ["bounds", "openapi", "schema", "timeouts"]
