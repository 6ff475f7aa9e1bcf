"""Hold at size: waiting never FAILs a message, a long history stays bounded, a second run never
sends twice, a cancel never hides an attempt's result, a run that gives up leaves nothing idle, and
one bad message never stalls the reconciler.

Runs `relay dev` in-process (real handlers, real state machines on moto) with the re-drive window
compressed to one second, so a backlog outlasts many windows within a test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from bench.cost_model import item_size
from functions.adapters.messages.items import HEAD_SORT_KEY
from functions.adapters.queue import DeliveryQueue
from functions.adapters.repository import MessageRepository
from functions.domain.config import get_settings
from functions.domain.exceptions import DeliveryRetryable
from functions.domain.model import Event, EventType, MessageKey, Status, fencing_token
from functions.services.delivery import LaneEvent, dependencies, finish_run
from functions.services.reconciler import reconcile
from relay.admin import SenderAdmin
from relay.client import RelayClient
from relay.local.runtime import LocalRelay
from relay.local.targets import TargetServer
from tests.conftest import make_message
from tests.support import quick_reconciling_relay, reconciler_paused, wait_for


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    with quick_reconciling_relay() as running:
        yield running


@pytest.fixture(scope="module")
def client(relay: LocalRelay) -> RelayClient:
    assert relay.local is not None
    return RelayClient(relay.url, token=SenderAdmin(relay.local.table_name).create("holder")["token"])


@pytest.fixture(scope="module")
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


def _message(target: TargetServer, path: str, **overrides: Any) -> dict[str, Any]:
    return make_message(senderId="holder", targetUrl=f"{target.url}{path}", **overrides)


def _head_item(message_id: str) -> dict[str, Any]:
    key = MessageKey("holder", message_id)
    table = get_settings().table_name
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=table, Key={"pk": {"S": key.partition_key}, "sk": {"S": HEAD_SORT_KEY}}
    )["Item"]
    return dict(item)


def test_a_backlog_that_outlasts_many_redrive_windows_is_delivered_not_failed(
    client: RelayClient, target: TargetServer
) -> None:
    # Given a target limited to 2 messages a second, one at a time, and a re-drive window of 1 s
    path = "/ok/backlog"
    assert client.put_target(target.url, 2, 1).status == 200
    try:
        messages = [_message(target, path) for _ in range(16)]
        # When 16 messages are sent at once (a backlog of ~8 s: about 8 re-drive windows)
        for message in messages:
            assert client.send(message).status == 202
        records = [wait_for(client, m["messageId"], timeout=90) for m in messages]
    finally:
        client.delete_target(target.url)
    # Then every one is DELIVERED at its first attempt, and the target got each exactly once
    assert {r["status"] for r in records} == {"DELIVERED"}
    assert {r["attempts"] for r in records} == {1}
    assert len(target.requests_to(path)) == len(messages)


def test_a_long_history_keeps_the_head_small_and_pages_the_events(client: RelayClient, target: TargetServer) -> None:
    # Given a delivered message
    message = _message(target, "/ok/replayed")
    assert client.send(message).status == 202
    wait_for(client, message["messageId"])
    # When it is replayed 40 times, each replay delivered
    for _ in range(40):
        assert client.replay(message["messageId"]).status == 202
        wait_for(client, message["messageId"], ("DELIVERED",))
    record = client.status(message["messageId"]).body
    # Then the head stays small (its older events moved out) and GET ends with the latest DELIVERED
    # (2 KB: any transition of it bills at most 2 write units)
    assert item_size(_head_item(message["messageId"])) <= 2048
    assert record["events"][-1]["type"] == "DELIVERED"
    assert record["run"] == 40
    # And the whole history (one page: under 500 events) is there, oldest first
    events = list(record["events"])
    assert "eventsCursor" not in record
    _assert_whole_history(events, replays=40)
    # And, paged 30 events at a time from the newest, the pages join up into the same history
    repository = MessageRepository(get_settings().table_name)
    stored = repository.get_head(MessageKey("holder", message["messageId"]))
    assert stored is not None and stored.overflow_chunks > 0
    paged, cursor = repository.get_history(stored, None, page_events=30)
    pages = 1
    while cursor is not None:
        earlier, cursor = repository.get_history(stored, cursor, page_events=30)
        paged, pages = earlier + paged, pages + 1
    assert pages > 2
    assert [event.to_dict() for event in paged] == events


def _assert_whole_history(events: list[dict[str, Any]], replays: int) -> None:
    types = [event["type"] for event in events]
    assert types[0] == "RECEIVED"
    assert types.count("REPLAYED") == replays
    assert types.count("DELIVERED") == replays + 1
    assert [event["at"] for event in events] == sorted(event["at"] for event in events)


def test_a_cancel_during_an_attempt_does_not_hide_its_result(client: RelayClient, target: TargetServer) -> None:
    # Given a message whose target takes 2 s to answer 200
    message = _message(target, "/slow/2000")
    assert client.send(message).status == 202
    wait_for(client, message["messageId"], ("DELIVERING",), timeout=20)
    # When it is cancelled while the attempt is in flight
    assert client.cancel(message["messageId"]).status == 200
    record = wait_for(client, message["messageId"], ("DELIVERED",), timeout=20)
    # Then the history shows the cancel, then the attempt's result; the status is what the target did
    types = [event["type"] for event in record["events"]]
    assert types[-3:] == ["ATTEMPT_STARTED", "CANCELLED", "DELIVERED"]
    assert record["status"] == "DELIVERED"


def test_two_runs_of_one_message_send_once_and_record_one_result(
    relay: LocalRelay, client: RelayClient, target: TargetServer
) -> None:
    # Given a message that has just been claimed for a fast-lane run named "race" (as the dispatcher does)
    assert relay.local is not None
    message = _message(target, "/slow/500/503", retry={"maxAttempts": 5})
    assert client.send(message).status == 202
    wait_for(client, message["messageId"], ("RETRYING",), timeout=20)
    key = MessageKey("holder", message["messageId"])
    repository = MessageRepository(get_settings().table_name)
    # (once a lane run holds it: under the execution ARN its latest ATTEMPT_STARTED names; between
    # the fast lane's hand-off and the slow lane's first attempt the owner is already the slow lane's)
    deadline = time.monotonic() + 30
    while True:
        head = repository.get_head(key)
        assert head is not None and time.monotonic() < deadline
        started = head.last_event(EventType.ATTEMPT_STARTED)
        arn = str(started.details.get("executionArn") or "") if started is not None else ""
        if head.status == Status.RETRYING and arn and head.owned_by(fencing_token(arn)):
            break
        time.sleep(0.02)
    handed = arn
    sent_before = len(target.requests_to("/slow/500/503"))
    # When two runs handed that token (an at-least-once start) attempt it at the same moment
    base = {"senderId": "holder", "messageId": message["messageId"], "run": head.run, "lane": "fast"}
    results: list[Any] = []

    def run(arn: str) -> None:
        payload = {**base, "owner": handed, "executionArn": arn}
        try:
            results.append(relay.local.invoke("relay-deliver", payload))  # type: ignore[union-attr]
        except DeliveryRetryable as retryable:  # the attempt that went got the target's 503, as a Retry sees it
            results.append(retryable)

    threads = [threading.Thread(target=run, args=(f"arn:race:{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then at most one of the two began an attempt (the message's own run may go on retrying
    # meanwhile), every request to the target is one counted attempt, and each has its one result
    time.sleep(0.2)
    sent = len(target.requests_to("/slow/500/503")) - sent_before
    after = repository.get_head(key)
    assert after is not None
    racers = [
        event
        for event in after.events
        if event.type == EventType.ATTEMPT_STARTED
        and str(event.details.get("executionArn", "")).startswith("arn:race:")
    ]
    assert len(racers) <= 1
    assert after.attempts - head.attempts == sent
    assert after.results == after.attempts


def test_a_run_that_gives_up_releases_its_lease_and_is_due_now(client: RelayClient, target: TargetServer) -> None:
    # Given a message held by a delivery (its target never answers)
    message = _message(target, "/hang")
    assert client.send(message).status == 202
    key = MessageKey("holder", message["messageId"])
    repository = MessageRepository(get_settings().table_name)
    deadline = time.monotonic() + 30
    head = repository.get_head(key)
    while time.monotonic() < deadline and (head is None or not head.owner or head.lease_until is None):
        time.sleep(0.05)
        head = repository.get_head(key)
    assert head is not None and head.owner and head.lease_until
    # When it is handed to a run named "giving-up" (as a hand-off does) and a run that does not own
    # it gives up, nothing changes; when the owner gives up, it is released
    deps = dependencies(get_settings())
    moved = Event(EventType.MOVED_TO_SLOW_LANE, datetime.now(UTC), head.run, head.attempts, {})
    lease = int(time.time()) + 3600
    handed = repository.hand_to_slow_lane(head, lease, "giving-up", moved, (head.owner,), fencing_token("giving-up"))
    assert handed is not None
    stranger = {**key.to_dict(), "run": head.run, "giveUp": True, "owner": "someone-else"}
    finish_run(LaneEvent.from_event(stranger), deps)
    assert repository.get_head(key).lease_until == lease  # type: ignore[union-attr]
    owner = {**key.to_dict(), "run": head.run, "giveUp": True, "owner": "giving-up"}
    finish_run(LaneEvent.from_event(owner), deps)
    released = repository.get_head(key)
    assert released is not None and not released.is_terminal
    assert released.lease_until is None
    assert released.due_at is not None and released.due_at <= int(time.time()) + 1
    client.cancel(message["messageId"])


def test_one_bad_message_does_not_stall_the_reconciler(
    relay: LocalRelay, client: RelayClient, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given two messages that are due now, the first of which breaks the reconciler's read
    repository = MessageRepository(get_settings().table_name)
    keys = []
    for _ in range(2):
        message = _message(target, "/ok/due")
        assert client.send(message).status == 202
        wait_for(client, message["messageId"])
        keys.append(MessageKey("holder", message["messageId"]))
    real_get_head = MessageRepository.get_head

    def broken(self: MessageRepository, key: MessageKey, consistent: bool = True) -> Any:
        if key == keys[0]:
            raise RuntimeError("a head no one can read")
        return real_get_head(self, key, consistent)

    settings = get_settings()
    # (relay dev's own scheduled rounds wait: this test's round is the only one that sees them due)
    with reconciler_paused(relay):
        epoch = int(time.time())
        for key in keys:
            repository.set_due(key, epoch - 5)
        monkeypatch.setattr(MessageRepository, "get_head", broken)
        # When a round runs
        reconcile(repository, DeliveryQueue(settings.queue_url), settings, lambda *_: None, sweep=False)
        monkeypatch.undo()
        # Then the round ends (no exception), the other message is handled (finished: its due time
        # cleared) and the bad one is pushed back instead of blocking the next round
        second = repository.get_head(keys[1])
        pushed = repository.get_head(keys[0])
    assert second is not None and second.due_at is None
    assert pushed is not None and pushed.due_at is not None and pushed.due_at > epoch
