"""Retry-After and a message's own retry budget through `relay dev`, as a new user would check them
(issue 11, done-when 2 and 5): the CLI sends, the local target answers, `GET /messages/{id}` tells.
"""

from __future__ import annotations

import time
from typing import Any

from relay.client import RelayClient
from relay.local.targets import TargetServer
from tests.conftest import make_message


def _terminal(client: RelayClient, message_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record: dict[str, Any] = client.status(message_id).body
        if record.get("status") in ("DELIVERED", "FAILED"):
            return record
        time.sleep(0.2)
    raise AssertionError(f"{message_id} did not finish: {client.status(message_id).body}")


def test_a_503_with_retry_after_120_is_waited_out_and_delivered_at_the_second_attempt(
    relay_dev: str, dev_token: str, target: TargetServer
) -> None:
    client = RelayClient(relay_dev, token=dev_token)
    # Given a target that answers 503 with `Retry-After: 120` once, then 200 (relay dev runs at
    # --time-scale 0.01: the 120 s pass in about a second)
    message = make_message(senderId="dev", targetUrl=f"{target.url}/busy/120")
    assert client.send(message).status == 202
    # When it is delivered
    record = _terminal(client, str(message["messageId"]))
    # Then it is DELIVERED with attempts 2
    assert (record["status"], record["attempts"]) == ("DELIVERED", 2), record
    # And the failed attempt records the header and a computed delay of at least 120 s (unscaled)
    [failed] = [event for event in record["events"] if event["type"] == "ATTEMPT_FAILED"]
    assert failed["statusCode"] == 503 and failed["retryAfterSeconds"] == 120
    assert failed["retryDelaySeconds"] >= 120


def test_a_message_with_a_budget_of_2_attempts_fails_after_2_at_an_always_500_target(
    relay_dev: str, dev_token: str, target: TargetServer
) -> None:
    client = RelayClient(relay_dev, token=dev_token)
    # Given a message that allows itself 2 attempts, to a target that always answers 500
    message = make_message(senderId="dev", targetUrl=f"{target.url}/fail", retry={"maxAttempts": 2})
    assert client.send(message).status == 202
    # When it runs out
    record = _terminal(client, str(message["messageId"]))
    # Then it is FAILED after exactly 2 attempts, and says why
    assert (record["status"], record["attempts"]) == ("FAILED", 2), record
    assert "retry budget of 2 attempts exhausted" in record["lastError"]
    webhook = f"dev:{message['messageId']}"
    assert sum(1 for request in target.requests_to("/fail") if request.header("webhook-id") == webhook) == 2
