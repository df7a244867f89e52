#!/usr/bin/env python3
"""CDK app: BLOOM on a SageMaker endpoint in your own account, behind an API, switched on and off."""

import sys

import aws_cdk as cdk

from stacks.app_builder import build_app
from stacks.config import ConfigError


def main() -> int:
    app = cdk.App()
    try:
        build_app(app)
    except ConfigError as error:
        # A configuration mistake is the user's to fix: the message names the key, the value and what is
        # allowed, so a traceback would only hide it.
        print(f"Invalid configuration: {error}", file=sys.stderr)
        print("Change the value in cdk.json or in the -c option, then synthesize again.", file=sys.stderr)
        return 1

    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
