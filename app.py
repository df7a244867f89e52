#!/usr/bin/env python3
"""CDK app: BLOOM on a SageMaker endpoint in your own account, behind an API, switched on and off."""

import aws_cdk as cdk

from stacks.app_builder import build_app


def main() -> None:
    app = cdk.App()
    build_app(app)
    app.synth()


if __name__ == "__main__":
    main()
