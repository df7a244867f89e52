"""The control table in DynamoDB: the desired-state record, the reconciler's status record and its lease.

DynamoDB rather than an SSM parameter, because the reconciler needs conditional writes: the lease that keeps
two reconcilers from acting at once, and the version check that stops a schedule-derived record from
overwriting a request written a moment earlier. The table has one string key, ``pk``.
"""

import json
import logging
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError

from control_plane.desired import DesiredState

logger = logging.getLogger(__name__)

KEY = "pk"
DESIRED_KEY = "desired"
PARTIAL_READ_RETRIES = 5
PARTIAL_READ_PAUSE_SECONDS = 0.05
STATUS_KEY = "status"
LEASE_KEY = "lease"


class ControlStore:
    """Reads and writes the control table through a low-level DynamoDB client."""

    def __init__(self, dynamodb, table_name: str) -> None:
        self.dynamodb = dynamodb
        self.table_name = table_name

    # Desired state

    def get_desired(self) -> DesiredState | None:
        item = self._get(DESIRED_KEY)
        for _ in range(PARTIAL_READ_RETRIES):
            if item is None or "state" in item:
                break
            # DynamoDB applies an update atomically, but moto, which the tests use, applies it attribute by
            # attribute, so a concurrent read there can see an item whose update has only begun.
            time.sleep(PARTIAL_READ_PAUSE_SECONDS)
            item = self._get(DESIRED_KEY)
        if item is None:
            return None
        return DesiredState(
            state=item["state"]["S"],
            source=item["source"]["S"],
            requested_by=item["requested_by"]["S"],
            requested_at=datetime.fromisoformat(item["requested_at"]["S"]),
            until=datetime.fromisoformat(item["until"]["S"]) if "until" in item else None,
            reason=item["reason"]["S"],
            version=int(item["version"]["N"]),
        )

    def put_request(self, desired: DesiredState) -> DesiredState:
        """Write a request unconditionally (the newest request wins) and return it with its new version."""
        names, values, assignments = self._desired_update(desired)
        assignments.append("#version = if_not_exists(#version, :zero) + :one")
        names["#version"] = "version"
        values[":zero"] = {"N": "0"}
        values[":one"] = {"N": "1"}

        response = self.dynamodb.update_item(
            TableName=self.table_name,
            Key={KEY: {"S": DESIRED_KEY}},
            UpdateExpression=self._update_expression(assignments, desired),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        version = int(response["Attributes"]["version"]["N"])
        return replace(desired, version=version)

    def replace_if_unchanged(self, desired: DesiredState, previous_version: int | None) -> bool:
        """Write ``desired`` only if the stored record still has ``previous_version`` (None: no record)."""
        names, values, assignments = self._desired_update(desired)
        assignments.append("#version = :version")
        names["#version"] = "version"
        values[":version"] = {"N": str(desired.version)}
        if previous_version is None:
            condition = f"attribute_not_exists({KEY})"
        else:
            condition = "#version = :previous"
            values[":previous"] = {"N": str(previous_version)}

        try:
            self.dynamodb.update_item(
                TableName=self.table_name,
                Key={KEY: {"S": DESIRED_KEY}},
                UpdateExpression=self._update_expression(assignments, desired),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    @staticmethod
    def _desired_update(desired: DesiredState) -> tuple[dict, dict, list[str]]:
        fields = {
            "state": desired.state,
            "source": desired.source,
            "requested_by": desired.requested_by,
            "requested_at": desired.requested_at.isoformat(),
            "reason": desired.reason,
        }
        if desired.until is not None:
            fields["until"] = desired.until.isoformat()

        names = {f"#{name}": name for name in fields}
        names["#until"] = "until"
        values = {f":{name}": {"S": value} for name, value in fields.items()}
        assignments = [f"#{name} = :{name}" for name in fields]
        return names, values, assignments

    @staticmethod
    def _update_expression(assignments: list[str], desired: DesiredState) -> str:
        expression = "SET " + ", ".join(assignments)
        if desired.until is None:
            expression += " REMOVE #until"
        return expression

    # Status record: what the reconciler observed and did, as one JSON document.

    def get_status(self) -> dict[str, Any]:
        item = self._get(STATUS_KEY)
        return json.loads(item["data"]["S"]) if item else {}

    def put_status(self, status: dict[str, Any]) -> None:
        self.dynamodb.put_item(
            TableName=self.table_name,
            Item={KEY: {"S": STATUS_KEY}, "data": {"S": json.dumps(status, sort_keys=True, default=str)}},
        )

    # Lease: at most one reconciler acts on the endpoint at a time.

    def acquire_lease(self, owner: str, now: datetime, seconds: int) -> bool:
        now_epoch = int(now.timestamp())
        try:
            self.dynamodb.put_item(
                TableName=self.table_name,
                Item={
                    KEY: {"S": LEASE_KEY},
                    "owner": {"S": owner},
                    "expires_at": {"N": str(now_epoch + seconds)},
                },
                ConditionExpression=f"attribute_not_exists({KEY}) OR expires_at < :now OR #owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":now": {"N": str(now_epoch)}, ":owner": {"S": owner}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release_lease(self, owner: str) -> None:
        try:
            self.dynamodb.delete_item(
                TableName=self.table_name,
                Key={KEY: {"S": LEASE_KEY}},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            logger.warning("Lease was already taken over by another reconciler", extra={"owner": owner})

    def _get(self, key: str) -> dict | None:
        response = self.dynamodb.get_item(TableName=self.table_name, Key={KEY: {"S": key}}, ConsistentRead=True)
        return response.get("Item")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
