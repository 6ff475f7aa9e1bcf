"""`delivery.firstAttempt: stateMachine` keeps the shape before Issue 10: every delivery is a
fast-lane run from its first attempt on, with the same events as an inline first attempt.

The dispatcher reads the setting from its environment (stacks/settings.py sets it from cdk.json);
here `relay dev` overrides that variable, as a deployment with the setting would set it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functions.contract.settings_names import Setting
from functions.domain.config import FirstAttempt
from relay.client import RelayClient
from relay.local.runtime import LocalRelay
from relay.local.targets import TargetServer
from tests.conftest import make_message
from tests.support import delivery_executions, wait_until_terminal

POLICY = {"fastLane": {"intervalSeconds": 1, "maxAttempts": 2, "backoffRate": 2.0}}
ENVIRONMENT = {Setting.TOTAL_TIMEOUT_SECONDS: "1", Setting.FIRST_ATTEMPT: FirstAttempt.STATE_MACHINE.value}


@pytest.fixture(scope="module")
def client() -> Iterator[tuple[RelayClient, LocalRelay]]:
    with LocalRelay(port=0, time_scale=0.01, policy=POLICY, environment=ENVIRONMENT) as running:
        yield RelayClient(running.url, token=running.dev_token), running


@pytest.mark.parametrize(
    ("path", "status", "attempts", "types"),
    [
        ("/ok", "DELIVERED", 1, ["RECEIVED", "ENQUEUED", "ATTEMPT_STARTED", "DELIVERED"]),
        ("/missing", "FAILED", 1, ["RECEIVED", "ENQUEUED", "ATTEMPT_STARTED", "ATTEMPT_FAILED", "FAILED"]),
        (
            "/flaky/1",
            "DELIVERED",
            2,
            ["RECEIVED", "ENQUEUED", "ATTEMPT_STARTED", "ATTEMPT_FAILED", "ATTEMPT_STARTED", "DELIVERED"],
        ),
    ],
)
def test_every_delivery_is_one_fast_lane_run_from_its_first_attempt(
    client: tuple[RelayClient, LocalRelay],
    target: TargetServer,
    path: str,
    status: str,
    attempts: int,
    types: list[str],
) -> None:
    relay_client, relay = client
    # Given a message to a target
    message = make_message(senderId="dev", targetUrl=f"{target.url}{path}")
    assert relay_client.send(message).status == 202
    # When it is delivered
    record = wait_until_terminal(relay_client, message)
    # Then the outcome and the events are those of an inline first attempt
    assert (record["status"], record["attempts"]) == (status, attempts)
    assert [event["type"] for event in record["events"]] == types
    # But every attempt, the first included, was made by one fast-lane run
    runs = delivery_executions(relay.local, message["messageId"])
    assert len(runs) == 1 and ":relay-delivery-fast:" in runs[0]
    started = [event for event in record["events"] if event["type"] == "ATTEMPT_STARTED"]
    assert {event["lane"] for event in started} == {"fast"}
    assert {event["executionArn"] for event in started} == set(runs)
