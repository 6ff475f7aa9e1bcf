"""Per-target limits through `relay dev`, as a new user would check them (issue 11, done-when 1).

A target limited to 2/s receives 20 messages at no more than 2 per second (+ burst), all
DELIVERED, no attempt spent on waiting.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from relay import cli
from relay.client import RelayClient
from relay.local.targets import TargetServer
from tests.conftest import make_message

RATE = 2
BURST = 2  # the bucket holds one second's worth (functions/services/targets.Target.burst)
MESSAGES = 20


def _wait_all(client: RelayClient, ids: list[str], timeout: float = 90) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = [client.status(message_id).body for message_id in ids]
        if all(r.get("status") == "DELIVERED" and r["events"][-1]["type"] == "DELIVERED" for r in records):
            return records
        time.sleep(0.2)
    raise AssertionError(f"not all delivered: {[r.get('status') for r in records]}")


def test_a_target_limited_to_2_per_second_gets_20_messages_at_that_pace_all_at_the_first_attempt(
    relay_dev: str, dev_token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = RelayClient(relay_dev, token=dev_token)
    api = ["--url", relay_dev, "--token", dev_token]
    # Given a receiver that answers 429 above 5 requests a second, on its own origin, limited to 2/s
    with TargetServer() as receiver:
        assert cli.main(["targets", "set", receiver.url, "--rate", str(RATE), *api]) == 0
        assert cli.main(["targets", "list", "--json", *api]) == 0
        listed = json.loads(capsys.readouterr().out.split("\n", 1)[1])["items"]
        assert {"origin": receiver.url, "ratePerSecond": RATE, "maxConcurrency": None}.items() <= next(
            t for t in listed if t["origin"] == receiver.url
        ).items()
        # When 20 messages to it are sent at once
        ids = []
        for _ in range(MESSAGES):
            message = make_message(senderId="dev", targetUrl=f"{receiver.url}/ratelimit/5")
            assert client.send(message).status == 202
            ids.append(str(message["messageId"]))
        records = _wait_all(client, ids)
        arrivals = sorted(request.at for request in receiver.received)

    # Then every one is DELIVERED with one attempt: the waits spent none
    assert [(r["status"], r["attempts"]) for r in records] == [("DELIVERED", 1)] * MESSAGES
    for record in records:
        assert [e["type"] for e in record["events"]].count("ATTEMPT_STARTED") == 1
    # And the receiver got exactly 20 requests, never more than 2/s + burst in any second
    assert len(arrivals) == MESSAGES
    peak = cli.peak_per_second(arrivals)
    assert peak <= RATE + BURST, f"{peak} requests within one second"
    # And the pace holds over the whole run: after the burst, 2 a second
    assert arrivals[-1] - arrivals[0] >= (MESSAGES - BURST) / RATE - 1.5
    print(f"20 messages at 2/s: peak {peak}/s, span {arrivals[-1] - arrivals[0]:.1f} s")
    # Cleanup: the target's limits are removed
    assert cli.main(["targets", "delete", receiver.url, *api]) == 0
