"""The failures the fault suite found, each replayed once, on purpose, against `relay dev` in-process.

Every test breaks exactly one write (or one run) of one message and checks the history that remains:
the step that comes next repairs what the failed one could not record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.deliver import handler as deliver_handler
from functions.shared import aws, delivery
from functions.shared.config import get_settings
from functions.shared.model import EventType, MessageKey
from functions.shared.repository import MessageRepository, event_sort_key
from relay.client import RelayClient
from relay.local.emulator import stop_execution
from relay.local.runtime import DEV_SENDER, LocalRelay
from relay.local.targets import TargetServer
from tests.conftest import make_message
from tests.faults.harness import running_executions
from tests.support import delivery_executions

POLICY = {
    "fastLane": {"intervalSeconds": 1, "maxAttempts": 2, "backoffRate": 2.0},
    "slowLane": {"initialWaitSeconds": 2, "intervalSeconds": 2, "maxAttempts": 1},
}


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    # The circuit breaker (its own suites) must not pause these repairs' shared target.
    environment = {"RELAY_TOTAL_TIMEOUT_SECONDS": "1", "RELAY_BREAKER_FAILURE_THRESHOLD": "1000000"}
    with LocalRelay(port=0, time_scale=0.01, policy=POLICY, environment=environment) as running:
        yield running


@pytest.fixture
def client(relay: LocalRelay) -> RelayClient:
    return RelayClient(relay.url, token=relay.dev_token)


def fail_write_once(
    monkeypatch: pytest.MonkeyPatch, operation: str, message_id: str, sort_key_part: str, times: int = 1
) -> list[str]:
    """The first `times` `operation`s (put_item/update_item) on `message_id` whose sort key contains
    `sort_key_part` fail with InternalServerError, unapplied. Returns the list it logs hits into."""
    real = aws.client
    hits: list[str] = []

    class Failing:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            attribute = getattr(self.inner, name)
            if name != operation:
                return attribute

            def call(**kwargs: Any) -> Any:
                item = kwargs.get("Item") or kwargs.get("Key") or {}
                pk, sk = item.get("pk", {}).get("S", ""), item.get("sk", {}).get("S", "")
                if len(hits) < times and pk.endswith(f"#{message_id}") and sort_key_part in sk:
                    hits.append(sk)
                    raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, operation)
                return attribute(**kwargs)

            return call

    monkeypatch.setattr(aws, "client", lambda name: Failing(real(name)) if name == "dynamodb" else real(name))
    return hits


def wait_until_terminal(relay: LocalRelay, message_id: str, timeout: float = 30) -> dict[str, Any]:
    """Wait until the message is terminal and none of its delivery runs is still running (the step
    after the one that made it terminal may still be writing its history)."""
    assert relay.local is not None
    client = RelayClient(relay.url, token=relay.dev_token)
    deadline = time.monotonic() + timeout
    while True:
        answer = client.status(message_id)
        running = [r for r in running_executions(relay.local) if r.input_data.get("messageId") == message_id]
        if answer.ok and answer.body["status"] in ("DELIVERED", "FAILED") and not running:
            return dict(client.status(message_id).body)
        assert time.monotonic() < deadline, answer.body
        time.sleep(0.05)


def history(message_id: str) -> list[tuple[str, int, str]]:
    """(type, slot, error) of every event, in sort-key order."""
    stored = MessageRepository(get_settings().table_name).get_message(MessageKey(DEV_SENDER, message_id))
    assert stored is not None
    events = sorted(stored.events, key=lambda event: event["sk"])
    return [(event["type"], int(event["sk"].split("#")[2]), str(event.get("error", ""))) for event in events]


def test_delivered_event_is_written_by_the_retry_when_its_first_write_failed(
    client: RelayClient, relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a healthy target, and the write of the DELIVERED event failing once (the head is updated)
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/ok")
    hits = fail_write_once(monkeypatch, "put_item", message["messageId"], "DELIVERED")
    # When the message is delivered
    assert client.send(message).status == 202
    record = wait_until_terminal(relay, message["messageId"])
    # Then the redelivered queue message (the inline attempt crashed; with `firstAttempt:
    # stateMachine`, the retried step) finds it DELIVERED, writes the missing event and does not
    # send again
    assert hits, "the fault was not injected"
    assert (record["status"], record["attempts"]) == ("DELIVERED", 1)
    deadline = time.monotonic() + 30
    while history(message["messageId"])[-1][0] != "DELIVERED":
        assert time.monotonic() < deadline, history(message["messageId"])
        time.sleep(0.1)
    assert [kind for kind, _, _ in history(message["messageId"])] == [
        "RECEIVED",
        "ENQUEUED",
        "ATTEMPT_STARTED",
        "DELIVERED",
    ]
    webhook = f"{DEV_SENDER}:{message['messageId']}"
    assert sum(1 for r in target.requests_to("/ok") if r.header("webhook-id") == webhook) == 1


def test_attempt_whose_result_was_not_recorded_gets_one_from_the_next_attempt(
    client: RelayClient, relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a target failing once, and the write of that failure (ATTEMPT_FAILED) failing
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/flaky/1")
    hits = fail_write_once(monkeypatch, "put_item", message["messageId"], "ATTEMPT_FAILED")
    # When it is delivered on the next attempt
    assert client.send(message).status == 202
    record = wait_until_terminal(relay, message["messageId"])
    # Then attempt 1 has a result after all: interrupted, recorded by attempt 2
    assert hits
    assert (record["status"], record["attempts"]) == ("DELIVERED", 2)
    assert history(message["messageId"]) == [
        ("RECEIVED", 0, ""),
        ("ENQUEUED", 0, ""),
        ("ATTEMPT_STARTED", 1, ""),
        ("ATTEMPT_FAILED", 1, "AttemptInterrupted"),
        ("ATTEMPT_STARTED", 2, ""),
        ("DELIVERED", 2, ""),
    ]


def test_the_next_attempt_waits_until_the_interrupted_one_has_its_result(
    client: RelayClient, relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a target failing once, and both the failure's write and its repair's first write failing
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/flaky/1")
    hits = fail_write_once(monkeypatch, "put_item", message["messageId"], "ATTEMPT_FAILED", times=2)
    # When it is delivered
    assert client.send(message).status == 202
    record = wait_until_terminal(relay, message["messageId"])
    # Then the step was retried until attempt 1 had its result, and only then attempt 2 counted
    assert len(hits) == 2
    assert (record["status"], record["attempts"]) == ("DELIVERED", 2)
    assert [(kind, slot) for kind, slot, _ in history(message["messageId"])] == [
        ("RECEIVED", 0),
        ("ENQUEUED", 0),
        ("ATTEMPT_STARTED", 1),
        ("ATTEMPT_FAILED", 1),
        ("ATTEMPT_STARTED", 2),
        ("DELIVERED", 2),
    ]


def test_last_attempt_without_a_result_gets_one_before_failed(
    client: RelayClient, relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a target answering 404 (failed at once), and the write of that failure failing
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/missing")
    hits = fail_write_once(monkeypatch, "put_item", message["messageId"], "ATTEMPT_FAILED")
    # When the message is failed
    assert client.send(message).status == 202
    record = wait_until_terminal(relay, message["messageId"])
    # Then its one attempt has a result before FAILED
    assert hits
    assert (record["status"], record["attempts"]) == ("FAILED", 1)
    assert history(message["messageId"]) == [
        ("RECEIVED", 0, ""),
        ("ENQUEUED", 0, ""),
        ("ATTEMPT_STARTED", 1, ""),
        ("ATTEMPT_FAILED", 1, "AttemptInterrupted"),
        ("FAILED", 1, ""),
    ]


def test_message_redriven_after_its_slow_lane_run_died_gets_a_new_slow_lane_run(
    client: RelayClient, target: TargetServer, relay: LocalRelay
) -> None:
    # Given a message handed to the slow lane whose run then died (the process went away)
    assert relay.local is not None
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/hang")
    key = MessageKey(DEV_SENDER, message["messageId"])
    repository = MessageRepository(get_settings().table_name)
    assert client.send(message).status == 202
    deps = delivery.dependencies(get_settings())
    deadline = time.monotonic() + 30
    while not (runs := [r for r in running_executions(relay.local) if ":relay-delivery-slow:" in r.exec_arn]):
        assert time.monotonic() < deadline, "the message never reached the slow lane"
        time.sleep(0.05)
    first = runs[0]
    assert stop_execution(first)
    # When a re-drive's fast-lane run counts another attempt and hands it over again
    head = repository.get_head(key)
    assert head is not None
    repository.begin_attempt(key, 0, head["updatedAt"], "arn:test")
    outcome = delivery.move_to_slow_lane({**key.to_dict(), "run": 0, "reason": "test"}, deps)
    # Then a new slow-lane run starts (the dead one's name is not reused)
    assert outcome["outcome"] == "MOVED_TO_SLOW_LANE"
    assert outcome["executionArn"] != first.exec_arn
    assert any(run.exec_arn == outcome["executionArn"] for run in running_executions(relay.local))
    record = wait_until_terminal(relay, message["messageId"], timeout=60)
    assert record["status"] == "FAILED"


def test_redrive_keeps_the_lease_of_a_run_claimed_after_the_reconciler_read_the_head(
    client: RelayClient, relay: LocalRelay, target: TargetServer
) -> None:
    # Given a message whose run holds the lease (the reconciler read the head just before the claim)
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/slow/600")
    key = MessageKey(DEV_SENDER, message["messageId"])
    repository = MessageRepository(get_settings().table_name)
    assert client.send(message).status == 202
    deadline = time.monotonic() + 30
    while not (head := repository.get_head(key)) or "leaseUntil" not in head:
        assert time.monotonic() < deadline, "the message was never claimed"
        time.sleep(0.02)
    # When the reconciler goes on to re-drive it
    now = int(time.time())
    updated = repository.note_redrive(key, 0, now + 60, now)
    # Then nothing is re-driven and the run keeps its lease (no second run can be claimed)
    assert updated is None
    after = repository.get_head(key)
    assert after is not None and after.get("leaseUntil") == head["leaseUntil"]
    assert not delivery.dependencies(get_settings()).repository.claim_delivery(key, 0, "second", now + 60, now)
    record = wait_until_terminal(relay, message["messageId"])
    assert (record["status"], record["attempts"]) == ("DELIVERED", 1)


def test_failed_message_whose_failed_event_was_never_written_gets_it_from_the_redelivery(
    client: RelayClient, relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a message failed at once (404) whose FAILED event write fails every time its step tries
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/missing")
    failed_event = event_sort_key(EventType.FAILED, run=0, slot=1)
    hits = fail_write_once(monkeypatch, "put_item", message["messageId"], failed_event, times=1_000)
    assert client.send(message).status == 202
    record = wait_until_terminal(relay, message["messageId"])
    assert hits and record["status"] == "FAILED"
    assert "FAILED" not in [kind for kind, _, _ in history(message["messageId"])]
    # When the storage recovers and its queue message is delivered again
    monkeypatch.undo()
    outcome = delivery.dispatch(
        {**MessageKey(DEV_SENDER, message["messageId"]).to_dict(), "run": 0}, delivery.dependencies(get_settings())
    )
    # Then the history says why it failed, and nothing was sent again
    assert outcome == "terminal"
    assert history(message["messageId"])[-1] == ("FAILED", 1, "")
    assert (
        len([r for r in target.requests_to("/missing") if message["messageId"] in (r.header("webhook-id") or "")]) == 1
    )


def test_crashing_deliver_step_in_the_slow_lane_is_retried_not_failed(
    client: RelayClient, relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a target failing once (so the dispatcher's inline attempt hands the message to the fast
    # lane), and a deliver step that crashes in every fast-lane run and in its first slow-lane run
    assert relay.local is not None
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/flaky/1")
    real_deliver = deliver_handler.lambda_handler
    slow_crashes: list[str] = []

    def deliver(event: dict[str, Any], context: Any) -> Any:
        if event["messageId"] == message["messageId"]:
            if event.get("lane") == "fast":
                raise RuntimeError("injected crash (fast lane)")
            if not slow_crashes:
                slow_crashes.append(event["messageId"])
                raise RuntimeError("injected crash (slow lane)")
        return real_deliver(event, context)

    monkeypatch.setitem(relay.local.overrides, "relay-deliver", deliver)
    # When the message is delivered
    assert client.send(message).status == 202
    record = wait_until_terminal(relay, message["messageId"], timeout=60)
    # Then the crash (not the target's answer) did not fail it: the retried step delivered it
    assert slow_crashes
    assert (record["status"], record["attempts"]) == ("DELIVERED", 2)
    assert [kind for kind, _, _ in history(message["messageId"])][-2:] == ["ATTEMPT_STARTED", "DELIVERED"]


def test_crashed_inline_attempt_gives_its_lease_back_and_the_redelivery_repairs_it(
    client: RelayClient, relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a healthy target, and the dispatcher's inline attempt crashing after it counted attempt 1
    # (its ATTEMPT_STARTED write fails)
    assert relay.local is not None
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/ok")
    hits = fail_write_once(monkeypatch, "put_item", message["messageId"], "ATTEMPT_STARTED")
    # When the message is delivered
    assert client.send(message).status == 202
    record = wait_until_terminal(relay, message["messageId"])
    # Then the queue's redelivery (the lease was given back) recorded attempt 1 as interrupted and
    # delivered it on attempt 2, still without any state machine run
    assert hits
    assert (record["status"], record["attempts"]) == ("DELIVERED", 2)
    assert history(message["messageId"]) == [
        ("RECEIVED", 0, ""),
        ("ENQUEUED", 0, ""),
        ("ATTEMPT_FAILED", 1, "AttemptInterrupted"),
        ("ATTEMPT_STARTED", 2, ""),
        ("DELIVERED", 2, ""),
    ]
    assert delivery_executions(relay.local, message["messageId"]) == []
