"""`relay dev` consumes the delivery queue as Lambda's event source mapping does: several
dispatcher invocations at once, up to the mapping's MaximumConcurrency (issue 20, item 5).

So a batch waiting on a slow target holds up only its own batch-mates; a healthy message sent
just after it is delivered at once, as on AWS.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import boto3
import pytest

from relay.client import RelayClient
from relay.local.emulator import REGION
from relay.local.runtime import DEV_SENDER, LocalRelay
from relay.local.targets import TargetServer
from stacks.settings import DEFAULT_DISPATCHER_MAX_CONCURRENCY
from tests.conftest import make_message
from tests.support import send_trickling_batch, wait_until_terminal


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    with LocalRelay(port=0, time_scale=0.01) as relay:
        yield relay


def delivered_at(record: dict[str, object]) -> datetime:
    events = record["events"]
    assert isinstance(events, list)
    return datetime.fromisoformat(next(e["at"] for e in events if e["type"] == "DELIVERED"))


def test_the_queue_is_consumed_up_to_the_mappings_maximum_concurrency(relay: LocalRelay) -> None:
    # Given relay dev running the synthesized template
    assert relay.local is not None and relay.local.topology is not None
    # Then its queue poller scales up to the event source mapping's MaximumConcurrency (cdk.json)
    consumer = relay.local.topology.queue_consumers[relay.local.queue_name]
    assert consumer.max_concurrency == DEFAULT_DISPATCHER_MAX_CONCURRENCY
    assert relay.workers[0].max_pollers == consumer.max_concurrency


def test_a_healthy_message_is_not_held_up_by_a_batch_waiting_on_a_slow_target(relay: LocalRelay) -> None:
    client = RelayClient(relay.url, token=relay.dev_token)
    with TargetServer() as target:
        # Given a batch of messages to a target that takes seconds to answer
        slow = send_trickling_batch(client, target.url)
        # When a message to a healthy target is sent right after them
        healthy = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/ok")
        assert client.send(healthy).status == 202
        # Then it is delivered before any of the slow ones has its answer
        healthy_record = wait_until_terminal(client, healthy, timeout=60)
        slow_records = [wait_until_terminal(client, message, timeout=60) for message in slow]
        assert healthy_record["status"] == "DELIVERED"
        assert all(record["status"] == "DELIVERED" for record in slow_records)
        assert delivered_at(healthy_record) < min(delivered_at(record) for record in slow_records)
        # And more than one dispatcher ran at once to do it
        assert relay.workers[0].peak_pollers > 1


def test_a_batch_that_outlives_the_visibility_timeout_is_not_received_again(
    relay: LocalRelay, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a dispatcher invocation that runs longer than the queue's (scaled) visibility timeout,
    # as one does when the emulator is busy (on AWS the function's timeout is shorter than it)
    assert relay.local is not None
    queue_url = relay.local.queue_urls[relay.local.queue_name]
    visibility = int(
        boto3.client("sqs", region_name=REGION).get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"]
        )["Attributes"]["VisibilityTimeout"]
    )
    received: list[str] = []
    invoke = relay.local.invoke

    def slow_dispatcher(function_name: str, event: dict[str, Any]) -> Any:
        if function_name == relay.workers[0].function_name:
            received.extend(record["messageId"] for record in event.get("Records", []))
            time.sleep(visibility + 2)
        return invoke(function_name, event)

    monkeypatch.setattr(relay.local, "invoke", slow_dispatcher)
    # (and another poller stays to receive whatever becomes visible meanwhile)
    monkeypatch.setattr(relay.workers[0], "retire_after_idle_seconds", 3600.0)
    client = RelayClient(relay.url, token=relay.dev_token)
    with TargetServer() as target:
        # When a message is sent
        message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/ok/outlived")
        assert client.send(message).status == 202
        # Then it is delivered at one attempt, and its queue message was handed to the dispatcher once
        record = wait_until_terminal(client, message, timeout=60)
        assert (record["status"], record["attempts"]) == ("DELIVERED", 1)
        assert len(received) == 1
