"""Background workers of `relay dev`: what AWS runs for the stack without being asked.

- QueueWorker plays the Lambda event source mapping: it polls the delivery queue and hands
  batches to the real dispatcher handler, deleting what it processed and leaving reported
  failures for redelivery (SQS dead-letters them after maxReceiveCount). Like the mapping, it
  reads and deletes with the function's role, so the role must grant the queue calls.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

import boto3

from relay.local import iam
from relay.local.emulator import REGION, LocalAws

LOG = logging.getLogger("relay.local")


class _BackgroundWorker:
    """A daemon thread running `_run` until `stop()`."""

    function_name: str
    _stop: threading.Event
    _thread: threading.Thread | None

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=f"worker-{self.function_name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        raise NotImplementedError


@dataclass
class QueueWorker(_BackgroundWorker):
    local: LocalAws
    queue_url: str
    function_name: str = "relay-dispatcher"
    batch_size: int = 10
    idle_sleep_seconds: float = 0.05
    _sqs: Any = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def poll_once(self) -> int:
        if self._sqs is None:
            self._sqs = boto3.client("sqs", region_name=REGION)
        sqs = self._sqs
        role = self.local.role_of(self.function_name)
        with iam.acting_as(role):
            received = sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self.batch_size,
                AttributeNames=["All"],
            ).get("Messages", [])
        if not received:
            return 0
        event = {"Records": [_sqs_record(dict(message), self.queue_url) for message in received]}
        try:
            answer = self.local.invoke(self.function_name, event) or {}
            failed = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
        except Exception:
            failed = {message["MessageId"] for message in received}
        done = [m for m in received if m["MessageId"] not in failed]
        with iam.acting_as(role):
            for start in range(0, len(done), 10):
                sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done[start : start + 10])
                    ],
                )
        return len(received)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.poll_once() == 0:
                    self._stop.wait(self.idle_sleep_seconds)
            except Exception:  # the worker must outlive a failing poll, as the event source does
                LOG.exception("Polling %s failed; retrying", self.function_name)
                time.sleep(0.5)


@dataclass
class ScheduledWorker(_BackgroundWorker):
    """Plays an EventBridge schedule: invokes a handler every `every_seconds`."""

    local: LocalAws
    function_name: str
    every_seconds: float
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.every_seconds):
            try:
                self.local.invoke(self.function_name, {"source": "aws.events", "detail-type": "Scheduled Event"})
            except Exception:  # a failed round is retried on the next tick, as on AWS
                LOG.exception("Scheduled %s failed; next tick retries", self.function_name)


def _sqs_record(message: dict[str, Any], queue_url: str) -> dict[str, Any]:
    queue_name = queue_url.rsplit("/", 1)[-1]
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:{queue_name}",
        "awsRegion": REGION,
    }
