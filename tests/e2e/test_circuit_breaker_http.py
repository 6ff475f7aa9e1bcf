"""The circuit breaker's done-when in `relay dev`, over real HTTP, as a new user would check it:

A target down for 50 consecutive attempts across 30 messages: the target opens, messages go PAUSED
(not FAILED) and stop reaching it; once it answers 200 again, every one of them ends DELIVERED,
none lost, none delivered twice.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from relay.client import RelayClient
from relay.local.targets import TargetServer
from tests.conftest import make_message
from tests.e2e.conftest import RelayDev, start_relay_dev
from tests.support import wait_until_terminal

MESSAGES = 30
THRESHOLD = 50


@pytest.fixture(scope="module")
def relay() -> Iterator[RelayDev]:
    # cdk.json's `relay.circuitBreaker` reaches the functions as these variables; relay dev overrides
    # them locally (the deployment's threshold is 20, its first probe after 60 s).
    relay = start_relay_dev(
        "--time-scale",
        "0.01",
        "--env",
        f"RELAY_BREAKER_FAILURE_THRESHOLD={THRESHOLD}",
        "--env",
        "RELAY_BREAKER_PROBE_AFTER_SECONDS=1",
        "--env",
        "RELAY_BREAKER_MAX_PROBE_AFTER_SECONDS=2",
    )
    try:
        yield relay
    finally:
        relay.stop()


def statuses(client: RelayClient, ids: list[str]) -> Counter[str]:
    return Counter(str(client.status(message_id).body.get("status")) for message_id in ids)


def wait_all(client: RelayClient, ids: list[str], status: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen: Counter[str] = Counter()
    while time.monotonic() < deadline:
        seen = statuses(client, ids)
        if seen[status] == len(ids):
            return
        assert seen["FAILED"] == 0, seen
        time.sleep(0.3)
    raise AssertionError(f"not all {status}: {seen}")


def assert_listed_together(client: RelayClient, ids: list[str], status: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    missing: set[str] = set(ids)
    while time.monotonic() < deadline:
        listed = {item["messageId"] for item in client.list(status, limit=100).body["items"]}
        missing = set(ids) - listed
        if not missing:
            return
        time.sleep(0.1)
    raise AssertionError(f"never listed {status} together: {sorted(missing)}")


def test_a_dead_target_opens_its_messages_pause_and_all_are_delivered_once_it_recovers(relay: RelayDev) -> None:
    client = RelayClient(relay.url, token=relay.dev_token)
    with TargetServer() as target:
        path = "/switch/outage"
        # Given 30 messages to a target that answers 500
        messages: list[dict[str, Any]] = []
        for _ in range(MESSAGES):
            message = make_message(senderId="dev", targetUrl=f"{target.url}{path}")
            assert client.send(message).status == 202
            messages.append(message)
        ids = [str(m["messageId"]) for m in messages]
        # When 50 consecutive attempts have failed, the target opens and every message is PAUSED, not FAILED
        wait_all(client, ids, "PAUSED", timeout=90)
        health = client.target_health(target.url).body
        assert health["state"] in ("OPEN", "HALF_OPEN"), health
        reached = len(target.requests_to(path))
        assert reached >= THRESHOLD
        assert reached < MESSAGES * 4  # without the breaker: every attempt of every lane
        # (a half-open probe takes one message out of PAUSED for a moment, so the listing is read
        # until it shows them all at once)
        assert_listed_together(client, ids, "PAUSED", timeout=15)
        # And they stop reaching it: at most a probe now and then
        time.sleep(6)
        assert len(target.requests_to(path)) <= reached + 4
        # When it answers 200 again
        healed_at = len(target.requests_to(path))
        target.heal("outage")
        records = [wait_until_terminal(client, m, timeout=120) for m in messages]
        # Then every message ends DELIVERED, none lost, none delivered twice
        assert Counter(r["status"] for r in records) == Counter({"DELIVERED": MESSAGES})
        for record in records:
            types = [e["type"] for e in record["events"]]
            assert "PAUSED" in types and "RESUMED" in types and "FAILED" not in types
            assert types.count("DELIVERED") == 1
        after = Counter(r.header("webhook-id") for r in target.requests_to(path)[healed_at:])
        assert all(count == 1 for count in after.values()), after
        assert client.target_health(target.url).body["state"] == "CLOSED"
