"""Notifications through SNS: the endpoint is ready, stopped, stopped for idleness, or failed."""

import logging

from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)

READY = "ready"
STOPPED = "stopped"
IDLE_STOPPED = "stopped-idle"
FAILED = "failed"

SUBJECTS = {
    READY: "is ready",
    STOPPED: "stopped",
    IDLE_STOPPED: "stopped for idleness",
    FAILED: "failed",
}

# SNS rejects subjects longer than 100 characters.
MAX_SUBJECT_LENGTH = 100


class Notifier:
    """Publishes one message per event to the deployment's topic; without a topic it only logs."""

    def __init__(self, sns, topic_arn: str | None, deployment: str, endpoint_name: str) -> None:
        self.sns = sns
        self.topic_arn = topic_arn
        self.deployment = deployment
        self.endpoint_name = endpoint_name
        self.sent: list[tuple[str, str]] = []

    def send(self, kind: str, message: str) -> None:
        subject = f"[{self.deployment}] SageMaker endpoint {self.endpoint_name} {SUBJECTS[kind]}"
        self.sent.append((kind, message))
        logger.info("Notification", extra={"notification": kind, "notification_message": message})
        if not self.topic_arn or self.sns is None:
            return

        try:
            self.sns.publish(
                TopicArn=self.topic_arn,
                Subject=subject[:MAX_SUBJECT_LENGTH],
                Message=message,
                MessageAttributes={"kind": {"DataType": "String", "StringValue": kind}},
            )
        except ClientError as error:
            # A lost notification must not stop the reconciler from acting on the endpoint.
            logger.error("Publishing the notification failed", extra={"notification": kind, "error": str(error)})
