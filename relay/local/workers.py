"""Background workers of `relay dev`: what AWS runs for the stack without being asked.

- QueueWorker plays the Lambda event source mapping: its pollers (as many at once as the
  mapping's MaximumConcurrency allows, scaled with the backlog) hand batches to the real
  dispatcher handler, deleting what it processed and leaving reported failures for redelivery
  (SQS dead-letters them after maxReceiveCount). Like the mapping, it reads and deletes with the
  function's role, so the role must grant the queue calls.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Self

import boto3

from relay.local import iam
from relay.local.emulator import REGION, LocalAws
from relay.local.template import QUEUE, QueueConsumerSpec, arn

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
class QueueWorker:
    """The delivery queue's consumer, scaled as Lambda scales an SQS event source mapping.

    Several pollers run at once, up to the mapping's MaximumConcurrency from the template
    (`dispatcherMaxConcurrency` in cdk.json): a poller that receives a batch while every other
    poller is busy starts one more, and a poller idle for `retire_after_idle_seconds` retires
    (one always stays). So a batch waiting on a slow target holds up only its own batch-mates,
    as on AWS, where the next batch goes to another invocation.
    """

    local: LocalAws
    queue_url: str
    # None: the event source mapping's, read from the template.
    function_name: str | None = None
    batch_size: int | None = None
    max_pollers: int | None = None
    idle_sleep_seconds: float = 0.05
    retire_after_idle_seconds: float = 2.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pollers: list[threading.Thread] = field(default_factory=list)
    _busy: int = 0
    _visibility: int | None = None
    peak_pollers: int = 0

    def start(self) -> Self:
        consumer = self._consumer()
        self.function_name = self.function_name or (consumer.function if consumer else "relay-dispatcher")
        self.batch_size = self.batch_size or (consumer.batch_size if consumer else 10)
        self.max_pollers = self.max_pollers or (consumer.max_concurrency if consumer else 1)
        self._spawn()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            pollers = list(self._pollers)
        for poller in pollers:
            poller.join(timeout=10)

    @property
    def pollers(self) -> int:
        with self._lock:
            return len(self._pollers)

    def _consumer(self) -> QueueConsumerSpec | None:
        topology = self.local.topology
        queue = self.queue_url.rsplit("/", 1)[-1]
        return topology.queue_consumers.get(queue) if topology is not None else None

    def _spawn(self) -> None:
        """One more poller, unless the cap is reached (called with a batch in hand, or at start)."""
        with self._lock:
            assert self.max_pollers is not None
            if len(self._pollers) >= self.max_pollers or self._stop.is_set():
                return
            poller = threading.Thread(
                target=self._run, name=f"worker-{self.function_name}-{len(self._pollers)}", daemon=True
            )
            self._pollers.append(poller)
            self.peak_pollers = max(self.peak_pollers, len(self._pollers))
        poller.start()

    def _retire(self) -> bool:
        with self._lock:
            if len(self._pollers) <= 1:
                return False
            self._pollers.remove(threading.current_thread())
            return True

    def _run(self) -> None:
        sqs = boto3.client("sqs", region_name=REGION)
        idle_since = time.monotonic()
        while not self._stop.is_set():
            try:
                received = self.receive_batch(sqs)
            except Exception:  # the worker must outlive a failing poll, as the event source does
                LOG.exception("Polling %s failed; retrying", self.function_name)
                self._stop.wait(0.5)
                continue
            if not received:
                if time.monotonic() - idle_since > self.retire_after_idle_seconds and self._retire():
                    return
                self._stop.wait(self.idle_sleep_seconds)
                continue
            idle_since = time.monotonic()
            self._process_in_turn(sqs, received)

    def _process_in_turn(self, sqs: Any, received: list[dict[str, Any]]) -> None:
        with self._lock:
            self._busy += 1
            everyone_busy = self._busy >= len(self._pollers)
        if everyone_busy:
            self._spawn()  # someone keeps polling while this batch is attempted
        try:
            self._process(sqs, received)
        finally:
            with self._lock:
                self._busy -= 1

    def poll_once(self) -> int:
        """Receive and process one batch in the calling thread (tests); the number received."""
        sqs = boto3.client("sqs", region_name=REGION)
        received = self.receive_batch(sqs)
        if received:
            self._process(sqs, received)
        return len(received)

    @contextmanager
    def _kept_invisible(self, sqs: Any, received: list[dict[str, Any]]) -> Iterator[None]:
        """Keep a batch invisible while its invocation runs, as AWS does by construction.

        On AWS the function's timeout is shorter than the queue's visibility timeout, so a batch is
        never received twice while it runs. Here the visibility is scaled down (a crashed batch
        comes back quickly) but an invocation is as slow as the emulator under load: without this,
        a long batch would be received again, run twice and, after maxReceiveCount, dead-lettered.
        Extending stops with the invocation, so a crashed batch still comes back after one timeout.
        """
        visibility = self._visibility_seconds(sqs)
        finished = threading.Event()

        def extend() -> None:
            while not finished.wait(visibility / 2):
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": visibility}
                    for i, m in enumerate(received)
                ]
                for start in range(0, len(entries), 10):
                    try:
                        sqs.change_message_visibility_batch(
                            QueueUrl=self.queue_url, Entries=entries[start : start + 10]
                        )
                    except Exception:  # a lost extension only risks the redelivery it guards against
                        LOG.debug("Extending visibility on %s failed", self.queue_url, exc_info=True)

        keeper = threading.Thread(target=extend, name=f"visibility-{self.function_name}", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            finished.set()
            keeper.join(timeout=5)

    def _visibility_seconds(self, sqs: Any) -> int:
        if self._visibility is None:
            attributes = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout"])
            self._visibility = max(1, int(attributes["Attributes"]["VisibilityTimeout"]))
        return self._visibility

    def receive_batch(self, sqs: Any) -> list[dict[str, Any]]:
        assert self.function_name is not None
        with iam.acting_as(self.local.role_of(self.function_name)):
            messages: list[dict[str, Any]] = sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self.batch_size or 10,
                AttributeNames=["All"],
            ).get("Messages", [])
        return messages

    def _process(self, sqs: Any, received: list[dict[str, Any]]) -> None:
        """Invoke the function with the batch; delete what it processed, leave its reported failures."""
        assert self.function_name is not None
        event = {"Records": [_sqs_record(dict(message), self.queue_url) for message in received]}
        try:
            with self._kept_invisible(sqs, received):
                answer = self.local.invoke(self.function_name, event) or {}
            failed = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
        except Exception:
            failed = {message["MessageId"] for message in received}
        done = [m for m in received if m["MessageId"] not in failed]
        with iam.acting_as(self.local.role_of(self.function_name)):
            for start in range(0, len(done), 10):
                sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done[start : start + 10])
                    ],
                )


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
        "eventSourceARN": arn(QUEUE, queue_name),
        "awsRegion": REGION,
    }
