"""The data-access layer over SQS: the delivery queue and the failed-messages queue."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.adapters import aws
from functions.adapters.observability import logger
from functions.domain.exceptions import QueueUnavailable
from functions.domain.model import MessageKey

# SendMessageBatch takes at most 10 entries.
SQS_BATCH_SIZE = 10


class MessageQueue:
    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url

    def send_json(self, payload: dict[str, Any], delay_seconds: int = 0) -> str:
        """Send one JSON message (visible after `delay_seconds`, at most 900); returns the SQS message id."""
        extra = {"DelaySeconds": min(900, delay_seconds)} if delay_seconds > 0 else {}
        try:
            response = aws.client("sqs").send_message(QueueUrl=self.queue_url, MessageBody=_body(payload), **extra)
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

    def send_json_batch(self, payloads: list[dict[str, Any]]) -> list[str | None]:
        """Send JSON messages with SendMessageBatch, 10 a call; per payload, in order, its SQS
        message id, or None when SQS did not take it (a failed entry, or its call failed)."""
        ids: list[str | None] = [None] * len(payloads)
        for start in range(0, len(payloads), SQS_BATCH_SIZE):
            entries = [
                {"Id": str(index), "MessageBody": _body(payloads[index])}
                for index in range(start, min(start + SQS_BATCH_SIZE, len(payloads)))
            ]
            try:
                response = aws.client("sqs").send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (ClientError, BotoCoreError) as error:
                logger.warning("SQS did not accept a batch", extra={"error": type(error).__name__})
                continue
            for entry in response.get("Successful", []):
                ids[int(entry["Id"])] = str(entry["MessageId"])
            for entry in response.get("Failed", []):
                logger.warning("SQS did not accept a message", extra={"code": entry.get("Code")})
        return ids


def _body(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


class DeliveryQueue(MessageQueue):
    def send(self, key: MessageKey, run: int = 0, delay_seconds: int = 0) -> str:
        """Enqueue a message key for delivery (the content stays in DynamoDB), visible after `delay_seconds`."""
        return self.send_json(_delivery(key, run), delay_seconds)

    def send_batch(self, keys: list[MessageKey], run: int = 0) -> list[str | None]:
        """Enqueue message keys, 10 a call: per key, in order, its SQS message id or None (not taken)."""
        return self.send_json_batch([_delivery(key, run) for key in keys])

    def send_keys(self, keys: list[MessageKey]) -> list[str | None]:
        """Enqueue newly accepted message keys: per key, in order, its SQS message id or None (not taken).

        One key goes with SendMessage (the same price as a batch of one, and an outage is its error
        rather than a Failed entry); several with SendMessageBatch, and the keys SQS did not take are
        sent once more (SQS refuses entries of a batch one by one).
        """
        if len(keys) == 1:
            try:
                return [self.send(keys[0])]
            except QueueUnavailable as error:
                logger.warning("SQS did not accept the message", extra={"error": str(error)})
                return [None]
        ids = self.send_batch(keys)
        missed = [position for position, queue_id in enumerate(ids) if queue_id is None]
        for position, queue_id in zip(missed, self.send_batch([keys[p] for p in missed]), strict=True):
            ids[position] = queue_id
        return ids


def _delivery(key: MessageKey, run: int) -> dict[str, Any]:
    return {**key.to_dict(), "run": run}
