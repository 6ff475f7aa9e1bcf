"""The first attempt inline (`delivery.firstAttempt: inline`, the default): the dispatcher makes
it itself, so a message its target takes at once costs no state machine run; only a retryable
failure starts a fast-lane run, which continues with the next attempt.

Through `relay dev` in-process (the synthesized template, IAM enforced) and real local targets.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functions.contract.settings_names import Setting
from relay.client import RelayClient
from relay.local.runtime import LocalRelay
from relay.local.targets import TargetServer
from tests.support import (
    FAST_ATTEMPTS,
    INLINE_ATTEMPTS,
    SLOW_ATTEMPTS,
    delivery_executions,
    delivery_relay,
    event_types,
    send_accepted,
    wait_until_terminal,
)

ENVIRONMENT = {Setting.TOTAL_TIMEOUT_SECONDS: "1"}


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    with delivery_relay(ENVIRONMENT) as running:
        yield running


def test_a_200_target_is_delivered_by_the_dispatcher_without_any_run(
    client: RelayClient, relay: LocalRelay, target: TargetServer
) -> None:
    # Given a target that answers 200
    message = send_accepted(client, targetUrl=f"{target.url}/ok")
    # When the message is delivered
    record = wait_until_terminal(client, message)
    # Then it is DELIVERED after one attempt, with the same events as a fast-lane delivery
    assert (record["status"], record["attempts"]) == ("DELIVERED", 1)
    assert event_types(record) == ["RECEIVED", "ENQUEUED", "ATTEMPT_STARTED", "DELIVERED"]
    started = record["events"][2]
    assert (started["attempt"], started["lane"]) == (1, "inline")
    # And no delivery state machine run was started for it
    assert delivery_executions(relay.local, message["messageId"]) == []
    # And the target got it once, signed
    [request] = [r for r in target.requests_to("/ok") if r.header("webhook-id") == f"dev:{message['messageId']}"]
    assert (request.header("webhook-signature") or "").startswith("v1,")


def test_a_retryable_failure_hands_the_next_attempt_to_one_fast_lane_run(
    client: RelayClient, relay: LocalRelay, target: TargetServer
) -> None:
    # Given a target that fails once with 503, then answers 200
    message = send_accepted(client, targetUrl=f"{target.url}/flaky/1")
    # When it is delivered
    record = wait_until_terminal(client, message)
    # Then the fast lane delivered it on attempt 2, after the dispatcher's failed attempt 1
    assert (record["status"], record["attempts"]) == ("DELIVERED", 2)
    assert event_types(record) == [
        "RECEIVED",
        "ENQUEUED",
        "ATTEMPT_STARTED",
        "ATTEMPT_FAILED",
        "ATTEMPT_STARTED",
        "DELIVERED",
    ]
    first, second = (event for event in record["events"] if event["type"] == "ATTEMPT_STARTED")
    assert (first["lane"], second["lane"]) == ("inline", "fast")
    [failure] = [event for event in record["events"] if event["type"] == "ATTEMPT_FAILED"]
    assert (failure["attempt"], failure["statusCode"]) == (1, 503)
    # And exactly one fast-lane run did it, the one the message's record lists
    runs = delivery_executions(relay.local, message["messageId"])
    assert len(runs) == 1 and ":relay-delivery-fast:" in runs[0]
    assert [run["executionArn"] for run in record["executions"] if run["workflow"] == "fastLane"] == runs


def test_a_404_fails_after_one_attempt_without_any_run(
    client: RelayClient, relay: LocalRelay, target: TargetServer
) -> None:
    # Given a target that answers 404
    message = send_accepted(client, targetUrl=f"{target.url}/missing")
    # When it is attempted
    record = wait_until_terminal(client, message)
    # Then it is FAILED after one attempt, as the fast lane's MarkFailed would have it
    assert (record["status"], record["attempts"]) == ("FAILED", 1)
    assert record["lastError"] == "HTTP 404: not retried"
    assert event_types(record) == ["RECEIVED", "ENQUEUED", "ATTEMPT_STARTED", "ATTEMPT_FAILED", "FAILED"]
    # And no run was started for it
    assert delivery_executions(relay.local, message["messageId"]) == []


def test_always_500_spends_the_inline_attempt_then_both_lanes(
    client: RelayClient, relay: LocalRelay, target: TargetServer
) -> None:
    # Given a target that always answers 500
    message = send_accepted(client, targetUrl=f"{target.url}/fail")
    # When every lane is exhausted
    record = wait_until_terminal(client, message, timeout=60)
    # Then it is FAILED after the inline attempt and every attempt of both lanes
    total = INLINE_ATTEMPTS + FAST_ATTEMPTS + SLOW_ATTEMPTS
    assert (record["status"], record["attempts"]) == ("FAILED", total)
    assert event_types(record).count("ATTEMPT_STARTED") == event_types(record).count("ATTEMPT_FAILED") == total
    assert event_types(record).index("MOVED_TO_SLOW_LANE") == 2 + 2 * (INLINE_ATTEMPTS + FAST_ATTEMPTS)
    assert "retries exhausted" in record["lastError"]
