"""Changes to the synthesized templates that moto_server 5.2.1 needs before it can create the stacks.

The deploy cycle synthesizes the app exactly as ``make synth`` does and then rewrites the templates in the
cloud assembly with ``adapt_assembly``. Each change works around one gap of moto's CloudFormation or
SageMaker models, found by deploying the unchanged templates into moto_server; docs/deploy-cycle.md lists
them. Only the test applies them: a real deployment gets the templates of ``make synth`` unchanged.
"""

import json
import re
from pathlib import Path

from tests.e2e.moto_coverage import SUB_REFERENCE, skipped_resources

# moto checks ProductionVariants[].InstanceType against a fixed list of older types: ml.g5, ml.g6, ml.p4d,
# ml.p4de and ml.p5 are missing, so every profile's EndpointConfig fails with a ValidationException.
# ml.g4dn.xlarge is on the list and, like the bloom-1b7 profile's ml.g5.xlarge, has one GPU.
MOTO_INSTANCE_TYPE = "ml.g4dn.xlarge"
PLACEHOLDER_PREFIX = "moto-skipped-"
# A resource type that moto accepts and creates as nothing.
NO_OP_TYPE = "AWS::CloudFormation::WaitConditionHandle"


def adapt_assembly(assembly_dir: Path) -> dict[str, list[str]]:
    """Rewrite every stack template of a cloud assembly in place; return the changes made, by template file."""
    manifest = json.loads((assembly_dir / "manifest.json").read_text())
    changes = {}
    for artifact in manifest["artifacts"].values():
        if artifact["type"] != "aws:cloudformation:stack":
            continue
        path = assembly_dir / artifact["properties"]["templateFile"]
        template = json.loads(path.read_text())
        changes[path.name] = adapt_template(template)
        path.write_text(json.dumps(template, indent=1))
    return changes


def adapt_template(template: dict) -> list[str]:
    """Apply every change for moto to one template in place; return a line for each change."""
    changes = []
    changes += remove_ssm_parameter_tags(template)
    changes += use_moto_instance_type(template)
    changes += replace_custom_resources(template)
    changes += replace_references_to_skipped(template)
    return changes


def remove_ssm_parameter_tags(template: dict) -> list[str]:
    """Remove the tags of SSM parameters.

    CloudFormation gives AWS::SSM::Parameter tags as a key-value map; moto reads them as a list of Key/Value
    pairs and fails the whole CreateStack with a TypeError.
    """
    changes = []
    for logical_id, resource in _resources_of_type(template, "AWS::SSM::Parameter"):
        if resource.get("Properties", {}).pop("Tags", None) is not None:
            changes.append(f"{logical_id}: removed Tags")
    return changes


def use_moto_instance_type(template: dict) -> list[str]:
    changes = []
    for logical_id, resource in _resources_of_type(template, "AWS::SageMaker::EndpointConfig"):
        for variant in resource["Properties"]["ProductionVariants"]:
            changes.append(f"{logical_id}: InstanceType {variant.get('InstanceType')} -> {MOTO_INSTANCE_TYPE}")
            variant["InstanceType"] = MOTO_INSTANCE_TYPE
    return changes


def replace_custom_resources(template: dict) -> list[str]:
    """Replace every ``Custom::*`` resource with a resource that moto creates as nothing.

    moto invokes a custom resource's function in Docker and keeps the stack in CREATE_IN_PROGRESS until the
    function sends its response. Without Docker no response comes. Sending it from the test does not work
    either. moto handles requests concurrently, and a stack creates its resources lazily on first access, so
    a request that reads the stack while CreateStack runs can create a resource twice (a second SageMaker Model
    appeared in one test run). References to the replaced resources become placeholders through
    ``replace_references_to_skipped``.
    """
    changes = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource["Type"].startswith("Custom::"):
            changes.append(f"{logical_id}: {resource['Type']} -> {NO_OP_TYPE}")
            resource["Type"] = NO_OP_TYPE
            resource.pop("Properties", None)
    return changes


def replace_references_to_skipped(template: dict) -> list[str]:
    """Replace Ref, Fn::GetAtt and Fn::Sub references to resources that moto skips with placeholder text.

    moto leaves out resource types that it does not model. A Ref to such a resource resolves to nothing (an
    SSM parameter with that value then fails with a ValidationException), and a Fn::GetAtt on it fails the
    stack. The placeholder is ``moto-skipped-<logical id>``.
    """
    skipped = skipped_resources(template)
    if not skipped:
        return []

    replaced: list[str] = []
    for logical_id, resource in template.get("Resources", {}).items():
        if logical_id not in skipped and "Properties" in resource:
            resource["Properties"] = _replace(resource["Properties"], skipped, logical_id, replaced)
    for name, output in template.get("Outputs", {}).items():
        template["Outputs"][name] = _replace(output, skipped, f"Outputs.{name}", replaced)
    return replaced


def _replace(node, skipped: dict[str, str], source: str, replaced: list[str]):
    if isinstance(node, list):
        return [_replace(item, skipped, source, replaced) for item in node]
    if not isinstance(node, dict):
        return node

    if len(node) == 1 and isinstance(node.get("Ref"), str) and node["Ref"] in skipped:
        replaced.append(f"{source}: Ref {node['Ref']}")
        return PLACEHOLDER_PREFIX + node["Ref"]
    if len(node) == 1 and "Fn::GetAtt" in node:
        target = node["Fn::GetAtt"]
        target_id = target[0] if isinstance(target, list) else str(target).split(".")[0]
        if target_id in skipped:
            replaced.append(f"{source}: Fn::GetAtt {target_id}")
            return PLACEHOLDER_PREFIX + target_id
    if len(node) == 1 and "Fn::Sub" in node:
        return {"Fn::Sub": _replace_in_sub(node["Fn::Sub"], skipped, source, replaced)}

    return {key: _replace(value, skipped, source, replaced) for key, value in node.items()}


def _replace_in_sub(value, skipped: dict[str, str], source: str, replaced: list[str]):
    def substitute(match: re.Match) -> str:
        if match.group(1) not in skipped:
            return match.group(0)
        replaced.append(f"{source}: Fn::Sub ${{{match.group(1)}}}")
        return PLACEHOLDER_PREFIX + match.group(1)

    if isinstance(value, str):
        return SUB_REFERENCE.sub(substitute, value)
    text, variables = value
    return [SUB_REFERENCE.sub(substitute, text), _replace(variables, skipped, source, replaced)]


def _resources_of_type(template: dict, resource_type: str):
    return [
        (logical_id, resource)
        for logical_id, resource in template.get("Resources", {}).items()
        if resource["Type"] == resource_type
    ]
