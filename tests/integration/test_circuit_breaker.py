"""The circuit breaker per target in one process: the real dispatcher, lanes, reconciler and API on
moto, delivering over real HTTP to local targets (functions/shared/target_health.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from functions.shared import delivery
from functions.shared.config import (
    BREAKER_MAX_PROBE_AFTER_VARIABLE,
    BREAKER_PROBE_AFTER_VARIABLE,
    BREAKER_THRESHOLD_VARIABLE,
    get_settings,
)
from functions.shared.target_health import BreakerState, origin_of
from functions.shared.target_health_store import HEALTH_SORT_KEY, TargetHealthRepository, target_partition
from relay.client import RelayClient
from relay.local.runtime import LocalRelay
from relay.local.targets import TargetServer
from tests.conftest import make_message
from tests.support import SHORT_POLICY, delivery_executions, expire_stored_message, wait_for, wait_until_terminal

THRESHOLD = 3
ENVIRONMENT = {
    BREAKER_THRESHOLD_VARIABLE: str(THRESHOLD),
    BREAKER_PROBE_AFTER_VARIABLE: "1",
    BREAKER_MAX_PROBE_AFTER_VARIABLE: "2",
    "RELAY_TOTAL_TIMEOUT_SECONDS": "1",
}


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    with LocalRelay(
        port=0, time_scale=0.01, policy=SHORT_POLICY, environment=ENVIRONMENT, reconcile_every_seconds=0.5
    ) as running:
        yield running


@pytest.fixture
def client(relay: LocalRelay) -> RelayClient:
    return RelayClient(relay.url, token=relay.dev_token)


@pytest.fixture
def down() -> Iterator[TargetServer]:
    """A target of its own (its own origin, so its own breaker): /switch/down answers 500 until healed."""
    with TargetServer() as server:
        yield server


def send(client: RelayClient, url: str) -> dict[str, Any]:
    message = make_message(senderId="dev", targetUrl=url)
    answer = client.send(message)
    assert answer.status == 202, answer.body
    return message


def health(server: TargetServer) -> Any:
    return TargetHealthRepository.from_settings(get_settings()).get("dev", origin_of(server.url), consistent=True)


def open_targets() -> set[tuple[str, str]]:
    store = TargetHealthRepository.from_settings(get_settings())
    return {(opened.sender_id, opened.origin) for opened in store.open_targets()}


def wait_state(server: TargetServer, state: BreakerState, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if health(server).state == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"{server.url} never became {state}: {health(server)}")


def types(record: dict[str, Any]) -> list[str]:
    return [event["type"] for event in record["events"]]


def test_open_target_pauses_messages_then_delivers_every_one_when_it_recovers(
    client: RelayClient, down: TargetServer
) -> None:
    # Given a target that fails every attempt
    messages = [send(client, f"{down.url}/switch/down") for _ in range(6)]
    # When the failures reach the threshold
    wait_state(down, BreakerState.OPEN)
    paused = [wait_for(client, m["messageId"], ("PAUSED",), timeout=30) for m in messages]
    # Then its messages are PAUSED, not FAILED, with their attempts kept and the reason given
    for record in paused:
        assert record["status"] == "PAUSED"
        event = next(e for e in reversed(record["events"]) if e["type"] == "PAUSED")
        assert event["origin"] == origin_of(down.url)
        assert "target OPEN" in event["reason"]
    # And the PAUSED listing shows them all, but for the one probe that may be on its way by now
    listed = {item["messageId"] for item in client.list("PAUSED", limit=100).body["items"]}
    missing = [m["messageId"] for m in messages if m["messageId"] not in listed]
    assert len(missing) <= 1, missing
    for message_id in missing:
        events = client.status(message_id).body["events"]
        assert any(e["type"] == "RESUMED" and e.get("probe") for e in events), events
    # And they stop reaching it (a probe at most every probeAfterSeconds)
    reached = len(down.requests_to("/switch/down"))
    time.sleep(1.5)
    assert len(down.requests_to("/switch/down")) <= reached + 2
    # When the target answers 200 again, a probe gets through and closes it
    down.heal("down")
    records = [wait_until_terminal(client, m, timeout=60) for m in messages]
    # Then every message ends DELIVERED, each delivered once, with its RESUMED event
    assert [r["status"] for r in records] == ["DELIVERED"] * len(messages)
    for record in records:
        assert "RESUMED" in types(record)
        ok = [r for r in down.requests_to("/switch/down") if r.header("webhook-id") == f"dev:{record['messageId']}"]
        assert len(ok) == record["attempts"]  # every request was an attempt; only the last got 200
    wait_state(down, BreakerState.CLOSED)


def test_a_lane_attempt_to_an_open_target_pauses_without_spending_an_attempt(
    client: RelayClient, down: TargetServer, relay: LocalRelay
) -> None:
    # Given a message whose first (inline) attempt is under way and will time out
    message = send(client, f"{down.url}/slow/3000")
    wait_for(client, message["messageId"], ("DELIVERING",), timeout=30)
    # And its target opening meanwhile (other messages' failures)
    breaker = delivery.dependencies(get_settings()).breaker
    for _ in range(THRESHOLD):
        breaker.failed("dev", origin_of(down.url), "another-message")
    assert health(down).state == BreakerState.OPEN
    # When the fast lane comes to its next attempt
    record = wait_for(client, message["messageId"], ("PAUSED",), timeout=30)
    # Then the message is PAUSED with the one attempt it made, not FAILED, and the run ended well
    history = types(record)
    assert history[: history.index("PAUSED") + 1] == [
        "RECEIVED",
        "ENQUEUED",
        "ATTEMPT_STARTED",
        "ATTEMPT_FAILED",
        "PAUSED",
    ]
    assert "FAILED" not in history
    assert relay.local is not None
    [run] = [arn for arn in delivery_executions(relay.local, message["messageId"]) if "fast" in arn][:1]
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    deadline = time.monotonic() + 10
    while sfn.describe_execution(executionArn=run)["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sfn.describe_execution(executionArn=run)["status"] == "SUCCEEDED"
    assert client.cancel(message["messageId"]).status == 200


def test_a_message_for_an_open_target_is_paused_before_any_attempt(client: RelayClient, down: TargetServer) -> None:
    # Given an OPEN target
    breaker = delivery.dependencies(get_settings()).breaker
    for _ in range(THRESHOLD):
        breaker.failed("dev", origin_of(down.url), "another-message")
    # When a new message for it is dispatched
    message = send(client, f"{down.url}/ok")
    record = wait_for(client, message["messageId"], ("PAUSED",), timeout=30)
    # Then it is PAUSED without an attempt
    assert record["attempts"] == 0
    assert types(record)[:2] == ["RECEIVED", "PAUSED"]
    # And the probe (this very message: the target is fine) closes it and delivers it
    final = wait_until_terminal(client, message, timeout=30)
    assert (final["status"], final["attempts"]) == ("DELIVERED", 1)
    assert any(e["type"] == "RESUMED" and e.get("probe") for e in final["events"])
    assert len(down.requests_to("/ok")) == 1  # the probe was its only request


def test_a_paused_message_still_expires_at_its_ttl(client: RelayClient, down: TargetServer) -> None:
    # Given a message PAUSED behind an OPEN target
    messages = [send(client, f"{down.url}/switch/down") for _ in range(THRESHOLD + 1)]
    wait_state(down, BreakerState.OPEN)
    message = messages[-1]
    wait_for(client, message["messageId"], ("PAUSED",), timeout=30)
    # When its expiry passes while it is paused
    expire_stored_message("dev", message["messageId"])
    # Then the reconciler ends it FAILED with the reason
    record = wait_until_terminal(client, message, timeout=30)
    assert record["status"] == "FAILED"
    assert "expired" in record["lastError"]
    down.heal("down")


def test_relay_targets_resume_closes_it_by_hand_and_redrives_its_paused_messages(
    client: RelayClient, down: TargetServer
) -> None:
    # Given an OPEN target with paused messages, that has recovered
    messages = [send(client, f"{down.url}/switch/down") for _ in range(THRESHOLD + 1)]
    wait_state(down, BreakerState.OPEN)
    for message in messages:
        wait_for(client, message["messageId"], ("PAUSED",), timeout=30)
    assert client.target_health(down.url).body["state"] in ("OPEN", "HALF_OPEN")
    # And it is among the open targets the reconciler counts for the OpenTargets alarm, and the sender
    # sees it in its targets with its circuit (though it has no limits)
    assert ("dev", origin_of(down.url)) in open_targets()
    (listed,) = [t for t in client.targets().body["items"] if t["origin"] == origin_of(down.url)]
    assert listed["health"]["state"] in ("OPEN", "HALF_OPEN") and listed["ratePerSecond"] is None
    down.heal("down")
    # When the sender resumes it by hand
    answer = client.resume_target(f"{down.url}/any/path")
    # Then it is CLOSED and every paused message is delivered
    assert answer.status == 200, answer.body
    assert answer.body["origin"] == origin_of(down.url)
    assert answer.body["state"] == "CLOSED"
    records = [wait_until_terminal(client, m, timeout=60) for m in messages]
    assert [r["status"] for r in records] == ["DELIVERED"] * len(messages)
    assert client.target_health(down.url).body["state"] == "CLOSED"
    assert ("dev", origin_of(down.url)) not in open_targets()


def test_resuming_a_target_that_never_failed_leaves_nothing_behind(client: RelayClient) -> None:
    # Given an origin this sender never had trouble with
    origin = "https://never-failed.example"
    # When it is resumed by hand / Then the answer says it was and is CLOSED, and no health item exists
    answer = client.resume_target(origin)
    assert answer.status == 200, answer.body
    assert (answer.body["previousState"], answer.body["state"], answer.body["resumed"]) == ("CLOSED", "CLOSED", 0)
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=get_settings().table_name,
        Key={"pk": {"S": target_partition("dev", origin)}, "sk": {"S": HEALTH_SORT_KEY}},
        ConsistentRead=True,
    )
    assert "Item" not in item


def test_resume_refuses_what_is_not_an_origin(client: RelayClient) -> None:
    answer = client.resume_target("not a url")
    assert answer.status == 400
    assert answer.body["error"]["details"][0]["path"] == "$.origin"


def test_a_target_health_item_expires_a_day_after_the_messages_it_counted(
    client: RelayClient, down: TargetServer
) -> None:
    # Given a target that failed once (below the threshold: it stays CLOSED with a count)
    message = send(client, f"{down.url}/switch/down")
    deadline = time.monotonic() + 30
    while health(down).failures < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    # Then its health item carries a TTL one day past the messages' own lifetime, so it goes away by itself
    settings = get_settings()
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=settings.table_name,
        Key={"pk": {"S": target_partition("dev", origin_of(down.url))}, "sk": {"S": HEALTH_SORT_KEY}},
        ConsistentRead=True,
    )["Item"]
    expected = time.time() + settings.ttl_seconds + 86_400
    assert abs(int(item["ttl"]["N"]) - expected) < 120
    down.heal("down")
    assert wait_until_terminal(client, message, timeout=60)["status"] == "DELIVERED"
