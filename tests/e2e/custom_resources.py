"""Send the custom resource responses that moto waits for, in place of functions that moto cannot run here.

moto 5.2 creates a ``Custom::*`` resource by invoking its ServiceToken function in Docker. The stack then
stays in CREATE_IN_PROGRESS until a response arrives at ``/cloudformation_<region>/cfnresponse`` on the moto
server. Without Docker the invocation fails inside moto and no response ever comes, so ``cdk deploy`` would
wait forever. ``CustomResourceResponder`` polls for stacks in CREATE_IN_PROGRESS and sends SUCCESS with no
data for each of their custom resources, as the function would. The function's own code does not run.
"""

import json
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

POLL_SECONDS = 0.2
CUSTOM_RESOURCE_PREFIX = "Custom::"


@dataclass(frozen=True)
class RespondedResource:
    stack_name: str
    logical_id: str
    resource_type: str


def custom_resources(template: dict) -> dict[str, str]:
    """Return the logical id and type of every ``Custom::*`` resource in a template.

    moto treats only ``Custom::*`` types as custom resources. It skips ``AWS::CloudFormation::CustomResource``
    like any other type that it does not model, so no response is expected for it.
    """
    return {
        logical_id: resource["Type"]
        for logical_id, resource in template.get("Resources", {}).items()
        if resource["Type"].startswith(CUSTOM_RESOURCE_PREFIX)
    }


class CustomResourceResponder:
    """A background thread that sends SUCCESS for the custom resources of the stacks that moto creates."""

    def __init__(self, cloudformation, moto_url: str, region: str) -> None:
        self.cloudformation = cloudformation
        self.response_url = f"{moto_url}/cloudformation_{region}/cfnresponse"
        self.responded: list[RespondedResource] = []
        self.errors: list[str] = []
        self._responded_keys: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="custom-resource-responder", daemon=True)

    def __enter__(self) -> "CustomResourceResponder":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.respond_to_pending()
            except (BotoCoreError, ClientError, OSError) as error:
                # Kept for the test's failure message; the next poll tries again.
                self.errors.append(f"{type(error).__name__}: {error}")
            self._stop.wait(POLL_SECONDS)

    def respond_to_pending(self) -> None:
        """Send SUCCESS for each custom resource of a stack in CREATE_IN_PROGRESS that has no response yet."""
        for stack in self.cloudformation.describe_stacks()["Stacks"]:
            if stack["StackStatus"] != "CREATE_IN_PROGRESS":
                continue

            body = self.cloudformation.get_template(StackName=stack["StackId"])["TemplateBody"]
            template = json.loads(body) if isinstance(body, str) else body
            for logical_id, resource_type in custom_resources(template).items():
                key = (stack["StackId"], logical_id)
                if key in self._responded_keys:
                    continue
                self._send_success(stack["StackId"], logical_id)
                self._responded_keys.add(key)
                self.responded.append(RespondedResource(stack["StackName"], logical_id, resource_type))

    def _send_success(self, stack_id: str, logical_id: str) -> None:
        # A custom resource response object. moto reads Status, StackId, LogicalResourceId and Data.
        body = json.dumps(
            {
                "Status": "SUCCESS",
                "Reason": "sent by the deploy cycle test: moto cannot run the function without Docker",
                "PhysicalResourceId": logical_id,
                "StackId": stack_id,
                "RequestId": logical_id,
                "LogicalResourceId": logical_id,
                "Data": {},
            }
        ).encode()
        url = f"{self.response_url}?stack={urllib.parse.quote(stack_id, safe='')}"
        request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": "application/json"})

        # urlopen raises HTTPError for a status of 400 and above.
        with urllib.request.urlopen(request, timeout=10):
            pass
