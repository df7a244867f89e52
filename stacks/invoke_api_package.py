"""Import the invoke function's package at synth time.

The package in ``lambda/invoke_api`` owns the request schema, the OpenAPI description, the generation bounds and
the timeout chain. The stacks use the same modules, so the template and the function cannot disagree.
Those modules import only the standard library.
"""

import sys

from stacks.python_function import LAMBDA_CODE_DIR

if str(LAMBDA_CODE_DIR) not in sys.path:
    sys.path.append(str(LAMBDA_CODE_DIR))

from invoke_api import bounds, openapi, schema, timeouts  # noqa: E402

__all__ = ["bounds", "openapi", "schema", "timeouts"]
