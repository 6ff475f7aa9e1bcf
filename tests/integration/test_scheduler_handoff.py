"""The scheduler's hand-off of a long-delayed message through `relay dev`'s runtime (LocalRelay), as a
user sees it: sent to the queue once, delivered at its time, re-driven when its queue copy is lost,
never sent once cancelled.

The queue's lead is a few seconds here (compress_queue_lead), so a message due seconds after its
acceptance waits in the scheduler's shards as one due in hours does when deployed. The scheduler runs
only when a test invokes it (as its minute's EventBridge event does, IAM enforced): its worker's
period is an hour. No timing is asserted beyond order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from functions.contract.key_prefixes import SCHEDULER_SHARD_PREFIX
from functions.contract.settings_names import Setting
from relay.client import RelayClient
from relay.local.runtime import LocalRelay
from relay.local.targets import TargetServer
from tests.support import (
    NO_BREAKER,
    QueueSends,
    compress_queue_lead,
    delivery_relay,
    send_accepted,
    stored_due_entry,
    wait_for,
)

LEAD_SECONDS = 3
DELAY_SECONDS = 6  # over the lead: the message waits in the scheduler's shards
REDRIVE_AFTER_SECONDS = 1
SWEEP_EVENT = {"source": "aws.events", "detail-type": "Scheduled Event"}


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    environment = {**NO_BREAKER, Setting.REDRIVE_AFTER_SECONDS: str(REDRIVE_AFTER_SECONDS)}
    with delivery_relay(environment, schedule_every_seconds=3600, reconcile_every_seconds=0.5) as running:
        yield running


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> QueueSends:
    compress_queue_lead(monkeypatch, LEAD_SECONDS)
    return QueueSends(monkeypatch)


def sweep(relay: LocalRelay) -> dict[str, int]:
    """The scheduler's minute, as EventBridge invokes it (its role's grants enforced)."""
    return dict(relay.local.invoke("relay-scheduler", SWEEP_EVENT))


def due_entry(message_id: str) -> tuple[str, int]:
    return stored_due_entry("dev", message_id)


def sleep_until(epoch: float) -> None:
    time.sleep(max(0.0, epoch - time.time()) + 0.05)


def send_long_delayed(client: RelayClient, target: TargetServer) -> dict[str, Any]:
    message = send_accepted(client, targetUrl=f"{target.url}/ok", delaySeconds=DELAY_SECONDS)
    shard, _ = due_entry(message["messageId"])
    assert shard.startswith(SCHEDULER_SHARD_PREFIX)
    return message


def received(target: TargetServer, message_id: str) -> int:
    return len([r for r in target.requests_to("/ok") if r.header("webhook-id") == f"dev:{message_id}"])


def test_a_long_delayed_message_is_sent_once_and_keeps_its_entry_until_claimed(
    relay: LocalRelay, client: RelayClient, target: TargetServer, sends: QueueSends
) -> None:
    # Given a message that waits in the scheduler's shards
    message = send_long_delayed(client, target)
    message_id = message["messageId"]
    _, due_at = due_entry(message_id)
    # When the scheduler sweeps once its entry is due
    sleep_until(due_at)
    counts = sweep(relay)
    # Then it is sent to the queue, and its entry is left in the scheduler's shard (nothing written)
    assert counts["queued"] >= 1 and counts["errors"] == 0
    assert sends.of(message_id) == 1
    shard, _ = due_entry(message_id)
    assert shard.startswith(SCHEDULER_SHARD_PREFIX)
    # When the scheduler sweeps again
    sweep(relay)
    # Then it is not sent again
    assert sends.of(message_id) == 1
    # And it is delivered once, and its claim removed its entry
    wait_for(client, message_id, ("DELIVERED",), timeout=30)
    assert received(target, message_id) == 1
    assert due_entry(message_id) == ("", 0)
    sweep(relay)
    assert sends.of(message_id) == 1


def test_a_handed_message_whose_queue_copy_is_lost_is_redriven_after_its_window(
    relay: LocalRelay, client: RelayClient, target: TargetServer, sends: QueueSends
) -> None:
    # Given a message that waits in the scheduler's shards, whose queue copy is lost when handed
    message = send_long_delayed(client, target)
    message_id = message["messageId"]
    sends.lose.add(message_id)
    _, due_at = due_entry(message_id)
    sleep_until(due_at)
    sweep(relay)
    assert sends.of(message_id) == 1
    sends.lose.clear()
    # When the scheduler sweeps again before its time and re-drive window have passed
    sweep(relay)
    # Then nothing is sent, and it is still SCHEDULED in the scheduler's shard
    assert sends.of(message_id) == 1
    assert client.status(message_id).body["status"] == "SCHEDULED"
    # When the scheduler sweeps once its time and a re-drive window have passed
    sleep_until(due_at + LEAD_SECONDS + REDRIVE_AFTER_SECONDS)
    counts = sweep(relay)
    # Then it goes to the reconciler, which re-drives it, and it is delivered once
    assert counts["unclaimed"] == 1
    delivered = wait_for(client, message_id, ("DELIVERED",), timeout=30)
    assert "REDRIVEN" in [event["type"] for event in delivered["events"]]
    assert received(target, message_id) == 1
    # And later sweeps never send it again
    sweep(relay)
    assert sends.of(message_id) == 2  # the lost copy and the reconciler's


def test_a_cancelled_long_delayed_message_is_never_sent(
    relay: LocalRelay, client: RelayClient, target: TargetServer, sends: QueueSends
) -> None:
    # Given a message that waits in the scheduler's shards, cancelled
    message = send_long_delayed(client, target)
    message_id = message["messageId"]
    _, due_at = due_entry(message_id)
    assert client.cancel(message_id).body["status"] == "CANCELLED"
    # When the scheduler sweeps once it would have been due, and after its time
    sleep_until(due_at)
    sweep(relay)
    sleep_until(due_at + LEAD_SECONDS + REDRIVE_AFTER_SECONDS)
    sweep(relay)
    # Then it is never sent, stays CANCELLED, and its target never gets it
    assert sends.of(message_id) == 0
    assert client.status(message_id).body["status"] == "CANCELLED"
    assert received(target, message_id) == 0
    assert due_entry(message_id) == ("", 0)
