"""Which resources of a CloudFormation template moto's CloudFormation skips, and what refers to them.

moto creates a resource only if it models the resource type. It logs "No Moto CloudFormation support" for the
others and leaves them out, so a Ref to a skipped resource resolves to nothing and a Fn::GetAtt on it fails
the stack. The deploy cycle prints ``coverage_report`` when a deploy fails.
"""

import re
from dataclasses import dataclass

from moto.cloudformation.parsing import get_model_map

# Resource types of the app (profile bloom-1b7, cdk.json defaults) that moto 5.2.1 does not create, and what
# the deploy cycle therefore does not prove. docs/deploy-cycle.md has the same list.
KNOWN_SKIPPED_TYPES = {
    "AWS::CDK::Metadata": "nothing: CDK's version report",
    "AWS::S3::BucketPolicy": "the TLS-only bucket policies",
    "AWS::CodeBuild::Project": "the weight staging job in CodeBuild",
    "AWS::ApiGateway::Stage": "the deployed stage, its throttling and access logs",
    "AWS::ApiGateway::ApiKey": "API keys",
    "AWS::ApiGateway::UsagePlan": "usage plans, their throttle and quota",
    "AWS::ApiGateway::UsagePlanKey": "that every key belongs to a usage plan",
    "AWS::ApiGateway::Model": "request body models",
    "AWS::ApiGateway::GatewayResponse": "the JSON bodies of API Gateway's own errors",
    "AWS::ApiGateway::DocumentationPart": "the published API description",
    "AWS::ApiGateway::DocumentationVersion": "the published API description",
    "AWS::Scheduler::Schedule": "start and stop schedules",
    "AWS::Scheduler::ScheduleGroup": "start and stop schedules",
    "AWS::SNS::TopicPolicy": "who may publish to the notification topic",
}

# A ${LogicalId} or ${LogicalId.Attribute} inside a Fn::Sub string.
SUB_REFERENCE = re.compile(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}")


@dataclass(frozen=True)
class Reference:
    """A resource or output (``source``) that refers to a resource moto skips (``target``)."""

    source: str
    target: str
    target_type: str


def skipped_resources(template: dict) -> dict[str, str]:
    """Return the logical id and type of every resource that moto leaves out of the stack.

    moto creates ``Custom::*`` resources by invoking their function. It leaves out every type without a model,
    including those that it ignores on purpose, such as AWS::CloudFormation::WaitConditionHandle.
    """
    modelled = get_model_map()
    return {
        logical_id: resource["Type"]
        for logical_id, resource in template.get("Resources", {}).items()
        if resource["Type"] not in modelled and not resource["Type"].startswith("Custom::")
    }


def referenced_ids(node) -> set[str]:
    """Return the logical ids that Ref, Fn::GetAtt and Fn::Sub name anywhere inside ``node``."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= referenced_ids(item)
        return found
    if not isinstance(node, dict):
        return found

    if isinstance(node.get("Ref"), str):
        found.add(node["Ref"])
    if "Fn::GetAtt" in node:
        target = node["Fn::GetAtt"]
        found.add(target[0] if isinstance(target, list) else str(target).split(".")[0])
    if "Fn::Sub" in node:
        text = node["Fn::Sub"][0] if isinstance(node["Fn::Sub"], list) else node["Fn::Sub"]
        if isinstance(text, str):
            found.update(SUB_REFERENCE.findall(text))
    for value in node.values():
        found |= referenced_ids(value)
    return found


def references_to_skipped(template: dict) -> list[Reference]:
    """Return the created resources and the outputs whose values depend on a skipped resource."""
    skipped = skipped_resources(template)
    references = []
    sources = {
        **{logical_id: resource.get("Properties", {}) for logical_id, resource in template.get("Resources", {}).items()
           if logical_id not in skipped},
        **{f"Outputs.{name}": output for name, output in template.get("Outputs", {}).items()},
    }
    for source, body in sources.items():
        for target in sorted(referenced_ids(body) & set(skipped)):
            references.append(Reference(source, target, skipped[target]))
    return references


def coverage_report(templates: dict[str, dict]) -> str:
    """Describe, per stack, the resource types moto skips and what refers to them."""
    lines = []
    for stack_name, template in sorted(templates.items()):
        skipped_types = sorted(set(skipped_resources(template).values()))
        lines.append(f"{stack_name}: moto skips {', '.join(skipped_types) or 'nothing'}")
        for reference in references_to_skipped(template):
            lines.append(f"  {reference.source} refers to {reference.target} ({reference.target_type})")
    return "\n".join(lines)
