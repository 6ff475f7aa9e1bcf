"""The failures the fault suite found, each replayed once, on purpose, against `relay dev` in-process.

Every test breaks exactly one write (or one run, or one step) of one message and checks the history
that remains. A status and its event are one write of the head, so a failed write leaves neither;
the step that comes next (a retried step, the queue's redelivery) records both, once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.adapters import aws
from functions.adapters.messages.items import EVENT_TYPES
from functions.adapters.messages.table import from_item
from functions.adapters.repository import MessageRepository
from functions.adapters.secrets import SigningSecrets
from functions.contract.settings_names import Setting
from functions.deliver import handler as deliver_handler
from functions.domain.config import get_settings
from functions.domain.exceptions import StorageUnavailable
from functions.domain.model import Event, EventType, MessageHead, MessageKey, Status, fencing_token
from functions.services import delivery
from relay.client import RelayClient
from relay.local.emulator import ACCOUNT_ID, REGION, stop_execution
from relay.local.runtime import DEV_SENDER, LocalRelay
from relay.local.targets import TargetServer
from tests.conftest import make_message
from tests.faults.harness import queue_depth, running_executions
from tests.support import delivery_executions

POLICY = {
    "fastLane": {"intervalSeconds": 1, "maxAttempts": 2, "backoffRate": 2.0},
    "slowLane": {"initialWaitSeconds": 2, "intervalSeconds": 2, "maxAttempts": 1},
}


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    # The circuit breaker (its own suites) must not pause these repairs' shared target.
    environment = {Setting.TOTAL_TIMEOUT_SECONDS: "1", Setting.BREAKER_FAILURE_THRESHOLD: "1000000"}
    with LocalRelay(port=0, time_scale=0.01, policy=POLICY, environment=environment) as running:
        yield running


def appended_events(kwargs: dict[str, Any]) -> list[EventType]:
    """The events a put_item/update_item of a message head writes (its list of stored events)."""
    values = from_item({**(kwargs.get("Item") or {}), **(kwargs.get("ExpressionAttributeValues") or {})})
    return [
        EVENT_TYPES[str(event["e"])]
        for value in values.values()
        if isinstance(value, list)
        for event in value
        if isinstance(event, dict) and event.get("e") in EVENT_TYPES
    ]


def fail_write_once(
    monkeypatch: pytest.MonkeyPatch, message_id: str, event_type: EventType, times: int = 1, applied: bool = False
) -> list[list[EventType]]:
    """The first `times` writes of `message_id`'s head that append an `event_type` event fail with
    InternalServerError: unapplied, or `applied` (DynamoDB wrote it, then answered 500). Every
    status change is one such write, so the status fails with its event. Returns the events of
    every write it failed, in order."""
    real = aws.client
    hits: list[list[EventType]] = []

    class Failing:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            attribute = getattr(self.inner, name)
            if name not in ("put_item", "update_item"):
                return attribute

            def call(**kwargs: Any) -> Any:
                key = kwargs.get("Key") or kwargs.get("Item") or {}
                events = appended_events(kwargs)
                if len(hits) < times and key["pk"]["S"].endswith(f"#{message_id}") and event_type in events:
                    hits.append(events)
                    if applied:
                        attribute(**kwargs)
                    raise ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, name)
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


def stored_head(message_id: str) -> MessageHead:
    head = MessageRepository(get_settings().table_name).get_head(MessageKey(DEV_SENDER, message_id))
    assert head is not None
    return head


def history(message_id: str) -> list[tuple[EventType, int | None, str]]:
    """(type, attempt, error) of every event, in the order they were recorded."""
    return [(e.type, e.attempt, str(e.details.get("error", ""))) for e in stored_head(message_id).events]


def wait_for_lease_given_back(message_id: str, timeout: float = 4) -> MessageHead:
    """The head once no claim holds it (the queue redelivers the message 5 s after a failed dispatch)."""
    deadline = time.monotonic() + timeout
    while (head := stored_head(message_id)).lease_until is not None:
        assert time.monotonic() < deadline, head
        time.sleep(0.02)
    return head


def requests_of(target: TargetServer, path: str, message_id: str) -> int:
    return sum(1 for r in target.requests_to(path) if r.header("webhook-id") == f"{DEV_SENDER}:{message_id}")


def wait_until_queue_empty(relay: LocalRelay, timeout: float = 30) -> None:
    assert relay.local is not None
    deadline = time.monotonic() + timeout
    while queue_depth(relay.local):
        assert time.monotonic() < deadline, "the delivery queue never emptied"
        time.sleep(0.1)


RC, EQ, AS, AF, DL, FL = (
    EventType.RECEIVED,
    EventType.ENQUEUED,
    EventType.ATTEMPT_STARTED,
    EventType.ATTEMPT_FAILED,
    EventType.DELIVERED,
    EventType.FAILED,
)
INTERRUPTED = delivery.INTERRUPTED_ERROR


def test_delivered_write_that_failed_is_retried_and_the_history_is_complete(
    client: RelayClient, relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a healthy target, and the write of DELIVERED (status and event, one write) failing once
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/ok")
    hits = fail_write_once(monkeypatch, message["messageId"], DL)
    # When the message is delivered
    assert client.send(message).status == 202
    # Then the failed write left neither the status nor the event: attempt 1 is counted, unresolved,
    # and its lease is given back for the queue's redelivery
    deadline = time.monotonic() + 10
    while not hits:
        assert time.monotonic() < deadline, "the fault was not injected"
        time.sleep(0.02)
    assert hits == [[DL]]
    head = wait_for_lease_given_back(message["messageId"])
    assert (head.status, head.attempts, head.unresolved_attempt) == (Status.DELIVERING, 1, 1)
    assert DL not in [event.type for event in head.events]
    # And the redelivery records attempt 1 as interrupted, attempts again and records DELIVERED once
    record = wait_until_terminal(relay, message["messageId"])
    assert (record["status"], record["attempts"]) == ("DELIVERED", 2)
    assert history(message["messageId"]) == [
        (RC, None, ""),
        (EQ, None, ""),
        (AS, 1, ""),
        (AF, 1, INTERRUPTED),
        (AS, 2, ""),
        (DL, 2, ""),
    ]
    # (at-least-once: the request of attempt 1 reached the target; each request is a counted attempt)
    assert requests_of(target, "/ok", message["messageId"]) == 2


def test_delivered_write_applied_despite_its_error_is_not_repeated(
    client: RelayClient, relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a healthy target, and DynamoDB answering 500 to the DELIVERED write after applying it
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/ok")
    hits = fail_write_once(monkeypatch, message["messageId"], DL, applied=True)
    # When the message is delivered, and its queue message (the dispatch failed) delivered again
    assert client.send(message).status == 202
    record = wait_until_terminal(relay, message["messageId"])
    assert hits == [[DL]]
    wait_until_queue_empty(relay)
    # Then the redelivery found it DELIVERED: nothing sent or recorded twice
    assert (record["status"], record["attempts"]) == ("DELIVERED", 1)
    assert history(message["messageId"]) == [(RC, None, ""), (EQ, None, ""), (AS, 1, ""), (DL, 1, "")]
    assert requests_of(target, "/ok", message["messageId"]) == 1


def test_attempt_whose_result_was_not_recorded_gets_one_from_the_next_attempt(
    client: RelayClient, relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a target failing once, and the write of that failure (ATTEMPT_FAILED) failing
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/flaky/1")
    hits = fail_write_once(monkeypatch, message["messageId"], AF)
    # When it is delivered on the next attempt
    assert client.send(message).status == 202
    record = wait_until_terminal(relay, message["messageId"])
    # Then attempt 1 has a result after all: interrupted, recorded by attempt 2 in its own write
    assert hits == [[AF]]
    assert (record["status"], record["attempts"]) == ("DELIVERED", 2)
    assert history(message["messageId"]) == [
        (RC, None, ""),
        (EQ, None, ""),
        (AS, 1, ""),
        (AF, 1, INTERRUPTED),
        (AS, 2, ""),
        (DL, 2, ""),
    ]


def test_the_next_attempt_waits_until_the_interrupted_one_has_its_result(
    client: RelayClient, relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a target failing once, and both the failure's write and its repair's first write failing
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/flaky/1")
    hits = fail_write_once(monkeypatch, message["messageId"], AF, times=2)
    # When it is delivered
    assert client.send(message).status == 202
    record = wait_until_terminal(relay, message["messageId"])
    # Then the repair and the count of attempt 2 are one write: when it failed, attempt 2 was not
    # counted either; the fast lane does not retry a storage error (it counts against EXPRESS's
    # 300 s), so the slow lane's step recorded both, once
    assert hits == [[AF], [AF, AS]]
    assert (record["status"], record["attempts"]) == ("DELIVERED", 2)
    assert history(message["messageId"]) == [
        (RC, None, ""),
        (EQ, None, ""),
        (AS, 1, ""),
        (EventType.MOVED_TO_SLOW_LANE, 1, ""),
        (AF, 1, INTERRUPTED),
        (AS, 2, ""),
        (DL, 2, ""),
    ]
    assert requests_of(target, "/flaky/1", message["messageId"]) == 2


def test_last_attempt_without_a_result_gets_one_before_failed(
    client: RelayClient, relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a target answering 404 (failed at once), and the write of that failure failing
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/missing")
    hits = fail_write_once(monkeypatch, message["messageId"], AF)
    # When the message is failed
    assert client.send(message).status == 202
    record = wait_until_terminal(relay, message["messageId"])
    # Then its one attempt has a result, written with FAILED
    assert hits == [[AF]]
    assert (record["status"], record["attempts"]) == ("FAILED", 1)
    assert history(message["messageId"]) == [
        (RC, None, ""),
        (EQ, None, ""),
        (AS, 1, ""),
        (AF, 1, INTERRUPTED),
        (FL, 1, ""),
    ]


def settled_head(repository: MessageRepository, key: MessageKey, quiet_seconds: float = 2.0) -> MessageHead:
    """The head once no write has changed it for longer than an in-flight attempt can take (the
    target's 1 s timeout here), so the test's own writes do not race a step still finishing."""
    deadline = time.monotonic() + 30
    head = repository.get_head(key)
    while True:
        time.sleep(quiet_seconds)
        again = repository.get_head(key)
        if again == head and again is not None:
            return again
        assert time.monotonic() < deadline, "the head never settled"
        head = again


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
    # (a step the run had already begun still finishes, as a Lambda outliving its run would)
    head = settled_head(repository, key)
    # When a re-drive's fast-lane run counts another attempt and hands it over again
    now = datetime.now(UTC)
    unresolved = head.unresolved_attempt
    interrupted = None if unresolved is None else Event(AF, now, head.run, unresolved, {"error": INTERRUPTED})
    arn = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:express:relay-delivery-fast:redrive-test:1"
    started = Event(AS, now, head.run, head.attempts + 1, {"lane": "fast", "executionArn": arn})
    # (the run it was handed to, under the dead run's token, takes it over under its own ARN)
    assert head.owner is not None
    taken = (head.owner, fencing_token(arn))
    assert repository.begin_attempt(head, started, interrupted, taken, int(now.timestamp()) + 60)
    event = {**key.to_dict(), "run": 0, "reason": "test", "owner": "redrive-test", "executionArn": arn}
    outcome = delivery.move_to_slow_lane(delivery.LaneEvent.from_event(event), deps)
    # Then a new slow-lane run starts (the dead one's name is not reused)
    assert outcome.outcome == delivery.EndingOutcome.MOVED_TO_SLOW_LANE
    assert outcome.execution_arn != first.exec_arn
    assert any(run.exec_arn == outcome.execution_arn for run in running_executions(relay.local))
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
    while (head := repository.get_head(key)) is None or head.lease_until is None:
        assert time.monotonic() < deadline, "the message was never claimed"
        time.sleep(0.02)
    # When the reconciler goes on to re-drive it
    now = datetime.now(UTC)
    epoch = int(now.timestamp())
    redriven = Event(EventType.REDRIVEN, now, head.run, head.attempts, {"previousStatus": head.status.value})
    updated = repository.note_redrive(head, redriven, epoch + 60, epoch)
    # Then nothing is re-driven and the run keeps its lease (no second run can be claimed)
    assert updated is None
    after = repository.get_head(key)
    assert after is not None and after.lease_until == head.lease_until
    assert EventType.REDRIVEN not in [event.type for event in after.events]
    assert repository.claim(after, epoch + 60, epoch, None, None, owner="second-run") is None
    record = wait_until_terminal(relay, message["messageId"])
    assert (record["status"], record["attempts"]) == ("DELIVERED", 1)


def test_failed_write_leaves_neither_status_nor_event_and_the_redelivery_records_both_once(
    client: RelayClient, relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a message failed at once (404) whose FAILED write (status and event) fails every time
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/missing")
    hits = fail_write_once(monkeypatch, message["messageId"], FL, times=1_000)
    assert client.send(message).status == 202
    deadline = time.monotonic() + 10
    while not hits:
        assert time.monotonic() < deadline, "the fault was not injected"
        time.sleep(0.02)
    # Then the message is not FAILED and has no FAILED event: attempt 1 and its result are recorded,
    # and the lease is given back for the queue's redelivery
    head = wait_for_lease_given_back(message["messageId"])
    assert head.status not in (Status.FAILED, Status.DELIVERED)
    assert [(e.type, e.attempt) for e in head.events] == [(RC, None), (EQ, None), (AS, 1), (AF, 1)]
    # When the storage recovers and its queue message is delivered again
    monkeypatch.undo()
    record = wait_until_terminal(relay, message["messageId"])
    # Then it is FAILED with exactly one FAILED event, every attempt with its result
    assert record["status"] == "FAILED"
    events = history(message["messageId"])
    assert [kind for kind, _, _ in events].count(FL) == 1
    assert events[-1] == (FL, record["attempts"], "")
    started = [attempt for kind, attempt, _ in events if kind == AS]
    assert started == [attempt for kind, attempt, _ in events if kind == AF] == list(range(1, record["attempts"] + 1))
    # (no more requests than counted attempts)
    assert requests_of(target, "/missing", message["messageId"]) == record["attempts"]


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
    assert [(kind, attempt) for kind, attempt, _ in history(message["messageId"])][-2:] == [(AS, 2), (DL, 2)]


def test_crashed_inline_attempt_gives_its_lease_back_and_the_redelivery_repairs_it(
    client: RelayClient, relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a healthy target, and the dispatcher's inline attempt crashing after its claim counted
    # attempt 1 (reading the signing secret fails, before anything is sent)
    assert relay.local is not None
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/ok")
    real_get = SigningSecrets.get
    crashes: list[str] = []

    def get(self: SigningSecrets, sender_id: str, fresh: bool = False) -> str | None:
        if not crashes and stored_head(message["messageId"]).attempts == 1:
            crashes.append(sender_id)
            raise StorageUnavailable("injected: Secrets Manager could not be read")
        return real_get(self, sender_id, fresh)

    monkeypatch.setattr(SigningSecrets, "get", get)
    # When the message is delivered
    assert client.send(message).status == 202
    record = wait_until_terminal(relay, message["messageId"])
    # Then the queue's redelivery (the lease was given back) recorded attempt 1 as interrupted and
    # delivered it on attempt 2, still without any state machine run
    assert crashes
    assert (record["status"], record["attempts"]) == ("DELIVERED", 2)
    assert history(message["messageId"]) == [
        (RC, None, ""),
        (EQ, None, ""),
        (AS, 1, ""),
        (AF, 1, INTERRUPTED),
        (AS, 2, ""),
        (DL, 2, ""),
    ]
    assert delivery_executions(relay.local, message["messageId"]) == []
    assert requests_of(target, "/ok", message["messageId"]) == 1


def test_failed_claim_counts_nothing_and_the_redelivery_claims_once(
    client: RelayClient, relay: LocalRelay, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a healthy target, and the dispatcher's claim (lease, ENQUEUED and the count of the inline
    # attempt with its ATTEMPT_STARTED: one write) failing once
    assert relay.local is not None
    message = make_message(senderId=DEV_SENDER, targetUrl=f"{target.url}/ok")
    hits = fail_write_once(monkeypatch, message["messageId"], AS)
    # When the message is delivered
    assert client.send(message).status == 202
    record = wait_until_terminal(relay, message["messageId"])
    # Then the failed claim recorded nothing, and the redelivery claimed, counted and recorded once
    assert hits == [[EQ, AS]]
    assert (record["status"], record["attempts"]) == ("DELIVERED", 1)
    assert history(message["messageId"]) == [(RC, None, ""), (EQ, None, ""), (AS, 1, ""), (DL, 1, "")]
    assert delivery_executions(relay.local, message["messageId"]) == []
    assert requests_of(target, "/ok", message["messageId"]) == 1
