"""The data-access layer over the delivery queue."""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError

from functions.shared import aws
from functions.shared.exceptions import QueueUnavailable
from functions.shared.model import MessageKey


class DeliveryQueue:
    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url

    def send(self, key: MessageKey, run: int = 0) -> str:
        """Enqueue a message key for delivery; returns the SQS message id."""
        body = json.dumps({**key.to_dict(), "run": run}, separators=(",", ":"))
        try:
            response = aws.client("sqs").send_message(QueueUrl=self.queue_url, MessageBody=body)
        except (ClientError, BotoCoreError) as error:
            code = error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""
            raise QueueUnavailable(f"SQS did not accept the message ({code or type(error).__name__})") from error
        return str(response["MessageId"])
