"""The data-access layer over SQS: the delivery queue and the failed-messages queue."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.shared import aws
from functions.shared.exceptions import QueueUnavailable
from functions.shared.model import MessageKey


class MessageQueue:
    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url

    def send_json(self, payload: dict[str, Any]) -> str:
        """Send one JSON message; returns the SQS message id."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        try:
            response = aws.client("sqs").send_message(QueueUrl=self.queue_url, MessageBody=body)
        except (ClientError, BotoCoreError) as error:
            code = error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""
            raise QueueUnavailable(f"SQS did not accept the message ({code or type(error).__name__})") from error
        return str(response["MessageId"])

    def receive_json(self, max_messages: int = 10) -> list[tuple[str, dict[str, Any]]]:
        """Up to `max_messages` waiting messages as (receipt handle, payload); no wait."""
        try:
            response = aws.client("sqs").receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=0
            )
        except (ClientError, BotoCoreError) as error:
            raise QueueUnavailable(f"SQS did not answer ({type(error).__name__})") from error
        received = []
        for message in response.get("Messages", []):
            try:
                payload = json.loads(message["Body"])
            except ValueError:
                payload = {}
            received.append((str(message["ReceiptHandle"]), payload if isinstance(payload, dict) else {}))
        return received

    def delete(self, receipt_handle: str) -> None:
        try:
            aws.client("sqs").delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle)
        except (ClientError, BotoCoreError) as error:
            raise QueueUnavailable(f"SQS did not delete the message ({type(error).__name__})") from error


class DeliveryQueue(MessageQueue):
    def send(self, key: MessageKey, run: int = 0) -> str:
        """Enqueue a message key for delivery (the content stays in DynamoDB)."""
        return self.send_json({**key.to_dict(), "run": run})
