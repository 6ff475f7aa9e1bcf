"""Per-target limits in the lanes: a Deliver step at its target's limit raises DeliveryThrottled,
which the lanes retry with their own Retry policy before the attempt is counted.

`delivery.firstAttempt: stateMachine` makes every delivery a fast-lane run, so every attempt is a
lane's. Its own `relay dev` in-process (one embedded AWS per process at a time).
"""

from __future__ import annotations

from functions.contract.settings_names import Setting
from functions.domain.config import FirstAttempt
from relay.client import RelayClient
from relay.local.targets import TargetServer
from tests.conftest import make_message
from tests.support import delivery_relay, wait_until_terminal


def test_in_the_lanes_a_throttled_attempt_is_retried_without_being_counted() -> None:
    # Given every delivery as a fast-lane run (delivery.firstAttempt: stateMachine), and a target that
    # takes 300 ms per request, limited to one in flight
    environment = {Setting.FIRST_ATTEMPT: FirstAttempt.STATE_MACHINE.value}
    with (
        delivery_relay(environment) as running,
        TargetServer() as slow,
    ):
        client = RelayClient(running.url, token=running.dev_token)
        assert client.put_target(slow.url, None, 1).ok
        # When five messages go to it at once (the Deliver steps raise DeliveryThrottled while it is busy)
        messages = [make_message(senderId="dev", targetUrl=f"{slow.url}/slow/300") for _ in range(5)]
        for message in messages:
            assert client.send(message).status == 202
        records = [wait_until_terminal(client, message, timeout=90) for message in messages]
        # Then each is delivered by its one and only attempt, and the target never had two at once
        assert [(r["status"], r["attempts"]) for r in records] == [("DELIVERED", 1)] * 5
        for record in records:
            assert [e["type"] for e in record["events"]].count("ATTEMPT_STARTED") == 1
        assert slow.peak_in_flight == 1
