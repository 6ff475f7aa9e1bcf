"""The circuit breaker per target in one process: the real dispatcher, lanes, reconciler and API on
moto, delivering over real HTTP to local targets (functions/services/targeting/target_health.py)."""

from __future__ import annotations

import heapq
import itertools
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from functions.adapters.stores.target_health_store import HEALTH_SORT_KEY, TargetHealthRepository, target_partition
from functions.contract.settings_names import Setting
from functions.domain.breaker import KNOWN_OPEN_AFTER_SECONDS, BreakerPolicy, BreakerState
from functions.domain.config import get_settings
from functions.services import delivery
from functions.services.targeting.target_health import TargetBreaker, origin_of
from relay.client import RelayClient
from relay.local.runtime import LocalRelay
from relay.local.targets import TargetServer
from tests.support import (
    QUICK_BREAKER,
    QUICK_BREAKER_THRESHOLD,
    delivery_executions,
    delivery_relay,
    event_types,
    expire_stored_message,
    send_accepted,
    wait_for,
    wait_until_terminal,
)

THRESHOLD = QUICK_BREAKER_THRESHOLD
ENVIRONMENT = {**QUICK_BREAKER, Setting.TOTAL_TIMEOUT_SECONDS: "1"}


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    with delivery_relay(ENVIRONMENT, reconcile_every_seconds=0.5) as running:
        yield running


@pytest.fixture
def down() -> Iterator[TargetServer]:
    """A target of its own (its own origin, so its own breaker): /switch/down answers 500 until healed."""
    with TargetServer() as server:
        yield server


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


def test_open_target_pauses_messages_then_delivers_every_one_when_it_recovers(
    client: RelayClient, down: TargetServer
) -> None:
    # Given a target that fails every attempt
    messages = [send_accepted(client, targetUrl=f"{down.url}/switch/down") for _ in range(6)]
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
        assert "RESUMED" in event_types(record)
        ok = [r for r in down.requests_to("/switch/down") if r.header("webhook-id") == f"dev:{record['messageId']}"]
        assert len(ok) == record["attempts"]  # every request was an attempt; only the last got 200
    wait_state(down, BreakerState.CLOSED)


def test_a_lane_attempt_to_an_open_target_pauses_without_spending_an_attempt(
    client: RelayClient, down: TargetServer, relay: LocalRelay
) -> None:
    # Given a message whose first (inline) attempt is under way and will time out
    message = send_accepted(client, targetUrl=f"{down.url}/slow/3000")
    wait_for(client, message["messageId"], ("DELIVERING",), timeout=30)
    # And its target opening meanwhile (other messages' failures)
    breaker = delivery.dependencies(get_settings()).breaker
    for _ in range(THRESHOLD):
        breaker.failed("dev", origin_of(down.url), "another-message")
    assert health(down).state == BreakerState.OPEN
    # When the fast lane comes to its next attempt
    record = wait_for(client, message["messageId"], ("PAUSED",), timeout=30)
    # Then the message is PAUSED with the one attempt it made, not FAILED, and the run ended well
    history = event_types(record)
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
    message = send_accepted(client, targetUrl=f"{down.url}/ok")
    record = wait_for(client, message["messageId"], ("PAUSED",), timeout=30)
    # Then it is PAUSED without an attempt
    assert record["attempts"] == 0
    assert event_types(record)[:2] == ["RECEIVED", "PAUSED"]
    # And the probe (this very message: the target is fine) closes it and delivers it
    final = wait_until_terminal(client, message, timeout=30)
    assert (final["status"], final["attempts"]) == ("DELIVERED", 1)
    assert any(e["type"] == "RESUMED" and e.get("probe") for e in final["events"])
    assert len(down.requests_to("/ok")) == 1  # the probe was its only request


def test_a_paused_message_still_expires_at_its_ttl(client: RelayClient, down: TargetServer) -> None:
    # Given a message PAUSED behind an OPEN target
    messages = [send_accepted(client, targetUrl=f"{down.url}/switch/down") for _ in range(THRESHOLD + 1)]
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
    messages = [send_accepted(client, targetUrl=f"{down.url}/switch/down") for _ in range(THRESHOLD + 1)]
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
    message = send_accepted(client, targetUrl=f"{down.url}/switch/down")
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


def test_an_attempt_in_flight_when_the_target_opened_does_not_close_it_by_succeeding(
    client: RelayClient, down: TargetServer
) -> None:
    # Given a message whose attempt is under way (the target holds it 500 ms, then answers 200)
    path = "/slow/500"
    message = send_accepted(client, targetUrl=f"{down.url}{path}")
    deadline = time.monotonic() + 30
    while not down.requests_to(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert down.requests_to(path), "the attempt never reached the target"
    # And its target opening meanwhile (other messages' failures, in the delivery functions' breaker)
    breaker = delivery.dependencies(get_settings()).breaker
    for _ in range(THRESHOLD):
        breaker.failed("dev", origin_of(down.url), "another-message")
    assert health(down).state == BreakerState.OPEN
    # When that attempt, started before the open, gets through
    record = wait_until_terminal(client, message, timeout=30)
    assert record["status"] == "DELIVERED"
    # Then the target stays open: only a probe (or an attempt started once the open was known) closes it
    assert health(down).state in (BreakerState.OPEN, BreakerState.HALF_OPEN)
    assert client.resume_target(down.url).status == 200


@pytest.mark.usefixtures("relay")
def test_the_store_closes_an_open_target_only_for_the_probe_or_an_attempt_started_after_the_open() -> None:
    store = TargetHealthRepository.from_settings(get_settings())
    origin, now = f"https://opened-{uuid.uuid4().hex[:8]}.example", 1_800_000_000
    # Given a target opened at `now` by its failures
    breaker = TargetBreaker(store, BreakerPolicy(THRESHOLD, 10, 60), wall_clock=lambda: now)
    for _ in range(THRESHOLD):
        breaker.failed("dev", origin, "m")
    opened = store.get("dev", origin, consistent=True)
    assert (opened.state, opened.opened_at) == (BreakerState.OPEN, now)
    # Then the success of an attempt started before the open does not close it, nor one started on a
    # warm function's cache from before the open
    assert not store.close("dev", origin, "in-flight", now - 1, resuming=True)
    assert not store.close("dev", origin, "cached", now + KNOWN_OPEN_AFTER_SECONDS - 1, resuming=True)
    # And once the probe is on its way, another message's success soon after the open still does not
    assert store.start_probe(opened, "probe", now + 10, now + 20)
    assert not store.close("dev", origin, "cached", now + 1, resuming=True)
    assert store.get("dev", origin, consistent=True).state == BreakerState.HALF_OPEN
    # When the probe's attempt succeeds, it closes (its paused messages listed for re-driving)
    assert store.close("dev", origin, "probe", now + 10, resuming=True)
    closed = store.get("dev", origin, consistent=True)
    assert (closed.state, closed.failures, closed.opened_at, closed.resuming) == (BreakerState.CLOSED, 0, None, True)
    # And a success on a target that is CLOSED already writes nothing
    assert not store.close("dev", origin, "probe", now + 10, resuming=True)
    store.finish_resume("dev", origin)


@pytest.mark.usefixtures("relay")
def test_a_busy_mostly_failing_target_stays_open_until_the_probe_succeeds() -> None:
    """100 attempts/s from 8 warm functions (each with its own cache) to a target failing 90% of them,
    each attempt taking up to 2 s, on the real health store with a simulated clock: the successes of
    the attempts in flight when it opened, and of those started on caches from before the open, used
    to close it and re-drive its paused messages every few seconds."""
    store = TargetHealthRepository.from_settings(get_settings())
    sender, origin = "dev", f"https://flaky-{uuid.uuid4().hex[:8]}.example"
    rate, failing, heal_after, duration = 100, 0.9, 12.0, 16.0
    policy = BreakerPolicy(failure_threshold=20, probe_after_seconds=1, max_probe_after_seconds=2)
    start = 1_800_000_000.0
    now = [start]
    functions = [TargetBreaker(store, policy, clock=lambda: now[0], wall_clock=lambda: now[0]) for _ in range(8)]
    rng = random.Random(16)
    # (ends at, sequence, function, message, started at, succeeds)
    in_flight: list[tuple[float, int, int, str, float, bool]] = []
    sequence = itertools.count()
    closes: list[tuple[float, str]] = []
    stale_successes = 0
    states: list[tuple[float, BreakerState]] = []
    probes = 0

    def begin(index: int, message_id: str, succeeds: bool, takes: float) -> None:
        if functions[index].blocking(sender, origin, message_id) is None:
            heapq.heappush(in_flight, (now[0] + takes, next(sequence), index, message_id, now[0], succeeds))

    # Given the target's traffic, and the reconciler sending a probe whenever one is due
    for slot in range(int(duration * rate)):
        at = start + slot / rate
        while in_flight and in_flight[0][0] <= at:
            ends, _, index, message_id, started, succeeds = heapq.heappop(in_flight)
            now[0] = ends
            if not succeeds:
                functions[index].failed(sender, origin, message_id)
                continue
            opened_at = store.get(sender, origin, consistent=True).opened_at
            stale_successes += opened_at is not None and int(started) < opened_at + KNOWN_OPEN_AFTER_SECONDS
            if functions[index].succeeded(sender, origin, message_id, int(started)):
                closes.append((ends, message_id))
        now[0] = at
        healed = at - start >= heal_after
        if slot % (rate // 2) == 0:
            health = store.get(sender, origin, consistent=True)
            states.append((at, health.state))
            probe = f"probe-{probes}"
            if health.probe_due(int(at)) and store.start_probe(health, probe, int(at), int(at) + 2):
                probes += 1
                begin(probes % len(functions), probe, healed, 0.2)
        begin(slot % len(functions), f"m{slot}", healed or rng.random() >= failing, rng.uniform(0.05, 2.0))

    # Then it opened, and stale successes came back while it was open
    opened = [at for at, state in states if state != BreakerState.CLOSED]
    assert opened and opened[0] - start < heal_after / 2, states
    assert stale_successes >= 5, stale_successes
    # And it stayed open (or probing) from then until the target healed: no OPEN -> CLOSED transition
    # but the one of the probe that succeeded
    assert len(closes) == 1, closes
    assert all(state != BreakerState.CLOSED for at, state in states if opened[0] <= at < start + heal_after), states
    [(closed_at, closer)] = closes
    assert closer.startswith("probe-") and closed_at >= start + heal_after
    assert store.get(sender, origin, consistent=True).state == BreakerState.CLOSED
    store.finish_resume(sender, origin)
