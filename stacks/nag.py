"""Acknowledge cdk-nag findings with a reason, through CDK's Validations API (cdk-nag 3)."""

import aws_cdk as cdk
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on a construct and its children.

    ``rule_id`` is the rule, or the rule with the finding for rules that report several per resource,
    such as ``AwsSolutions-IAM5[Resource::*]``. The reason must be true for this project: it is the audit
    trail that a reviewer reads.
    """
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule_id, reason=reason))
