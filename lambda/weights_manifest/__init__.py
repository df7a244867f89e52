"""The weights manifest: what a staging run put under the weights prefix, and the check that a start needs.

This package uses only the standard library and boto3, so the Lambda functions, the staging job and the CLI
read and write manifests with the same code.
"""
