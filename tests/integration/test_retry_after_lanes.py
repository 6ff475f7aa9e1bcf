"""Retry-After and a message's own retry budget, end to end in one process: the real dispatcher,
both delivery lanes and handlers on moto, delivering over real HTTP to local targets (scaled time)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto.stepfunctions.parser.models import stepfunctions_parser_backends

from relay.client import RelayClient
from relay.local.emulator import ACCOUNT_ID, REGION
from relay.local.runtime import LocalRelay
from relay.local.targets import TargetServer
from tests.support import delivery_relay, send_accepted, wait_until_terminal


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    with delivery_relay() as running:
        yield running


def events(record: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [event for event in record["events"] if event["type"] == kind]


def lane_inputs(relay: LocalRelay, machine: str, message_id: str) -> list[dict[str, Any]]:
    backend = stepfunctions_parser_backends[ACCOUNT_ID][REGION]
    assert relay.local is not None
    found = backend.describe_state_machine(relay.local.state_machine_arns[machine]).executions
    return [dict(e.input_data) for e in found if (e.input_data or {}).get("messageId") == message_id]


def test_long_retry_after_on_the_first_attempt_waits_in_the_slow_lane(
    relay: LocalRelay, client: RelayClient, target: TargetServer
) -> None:
    # Given a target that answers 503 with Retry-After: 120 once, then 200
    message = send_accepted(client, targetUrl=f"{target.url}/busy/120")
    # When it is delivered (time scaled: 120 s pass in about a second)
    record = wait_until_terminal(client, message, timeout=60)
    # Then it is DELIVERED at the second attempt
    assert (record["status"], record["attempts"]) == ("DELIVERED", 2), record
    # And the failed attempt records the header and the computed delay, unscaled
    [failed] = events(record, "ATTEMPT_FAILED")
    assert (failed["statusCode"], failed["retryAfterSeconds"], failed["retryDelaySeconds"]) == (503, 120, 120)
    # And the message went to the slow lane at once, which waited the delay (no fast-lane run)
    [moved] = events(record, "MOVED_TO_SLOW_LANE")
    assert "Retry-After" in moved["reason"]
    assert lane_inputs(relay, "relay-delivery-fast", message["messageId"]) == []
    [slow_input] = lane_inputs(relay, "relay-delivery-slow", message["messageId"])
    assert slow_input["waitSeconds"] == 120
    [second] = [e for e in events(record, "ATTEMPT_STARTED") if e["attempt"] == 2]
    assert second["lane"] == "slow"


def test_retry_after_longer_than_the_slow_lanes_next_wait_waits_again(
    relay: LocalRelay, client: RelayClient, target: TargetServer
) -> None:
    # Given a target that answers 503 with Retry-After: 30 twice (longer than every SHORT_POLICY wait)
    message = send_accepted(client, targetUrl=f"{target.url}/busy/30/2")
    # When it is delivered
    record = wait_until_terminal(client, message, timeout=60)
    # Then the slow lane deferred its own attempt to a Wait state and the third attempt delivered it
    assert (record["status"], record["attempts"]) == ("DELIVERED", 3), record
    assert [e["retryDelaySeconds"] for e in events(record, "ATTEMPT_FAILED")] == [30, 30]
    assert [e["lane"] for e in events(record, "ATTEMPT_STARTED")] == ["inline", "slow", "slow"]
    # And one slow-lane run did both (the second wait is in the same run)
    assert len(lane_inputs(relay, "relay-delivery-slow", message["messageId"])) == 1


def test_short_retry_after_is_left_to_the_lanes_backoff(client: RelayClient, target: TargetServer) -> None:
    # Given a target that answers 503 with Retry-After: 1 once (no longer than the fast lane's first wait)
    message = send_accepted(client, targetUrl=f"{target.url}/busy/1")
    # When it is delivered
    record = wait_until_terminal(client, message, timeout=60)
    # Then the fast lane took the next attempt (it waited the second first) and no slow lane was needed
    assert (record["status"], record["attempts"]) == ("DELIVERED", 2), record
    assert [e["lane"] for e in events(record, "ATTEMPT_STARTED")] == ["inline", "fast"]
    assert events(record, "MOVED_TO_SLOW_LANE") == []


def test_retry_after_is_capped_by_the_message_expiry(client: RelayClient, target: TargetServer) -> None:
    # Given a target asking for a wait of about ten years
    message = send_accepted(client, targetUrl=f"{target.url}/busy/315360000")
    # When it fails once
    record = wait_until_terminal(client, message, timeout=60)
    # Then the delay recorded is capped (by the default cap of an hour, well before the 30-day expiry)
    [failed, *_] = events(record, "ATTEMPT_FAILED")
    assert failed["retryAfterSeconds"] == 315360000
    assert failed["retryDelaySeconds"] == 3600


def test_max_attempts_two_fails_after_two_attempts(client: RelayClient, target: TargetServer) -> None:
    # Given a message with its own retry budget of 2 attempts to an always-500 target
    message = send_accepted(client, targetUrl=f"{target.url}/fail", retry={"maxAttempts": 2})
    # When it is delivered
    record = wait_until_terminal(client, message, timeout=60)
    # Then it is FAILED after 2 attempts, with the budget as the reason
    assert (record["status"], record["attempts"]) == ("FAILED", 2), record
    assert record["lastError"].startswith("retry budget of 2 attempts exhausted; last error: HTTP 500")


def test_max_attempts_one_fails_at_the_first_attempt(client: RelayClient, target: TargetServer) -> None:
    message = send_accepted(client, targetUrl=f"{target.url}/fail", retry={"maxAttempts": 1})
    record = wait_until_terminal(client, message, timeout=60)
    assert (record["status"], record["attempts"]) == ("FAILED", 1), record


def test_message_timeout_is_the_attempts_timeout(client: RelayClient, target: TargetServer) -> None:
    # Given a target that answers after 2.5 s and a message whose own timeout is 1 s
    message = send_accepted(client, targetUrl=f"{target.url}/slow/2500", timeoutSeconds=1, retry={"maxAttempts": 1})
    # When it is delivered
    record = wait_until_terminal(client, message, timeout=60)
    # Then the attempt timed out (the deployment's 15 s would have waited for it)
    assert record["status"] == "FAILED", record
    [failed] = events(record, "ATTEMPT_FAILED")
    assert failed["error"] == "TargetTimeout"
