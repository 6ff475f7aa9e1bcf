"""Fuzzing fixtures: `relay dev` in-process on a free port, with nothing delivered.

The workers (queue consumer and reconciler) are stopped right after start: fuzzed messages that
the API accepts stay PENDING instead of being delivered to whatever URL a generator made up.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from relay.local.runtime import DEV_SENDER, LocalRelay
from relay.local.targets import TargetServer


def quiet_relay() -> LocalRelay:
    relay = LocalRelay(port=0, time_scale=0.001).start()
    for worker in relay.workers:
        worker.stop()
    if relay.reconciler is not None:
        relay.reconciler.stop()
    return relay


@pytest.fixture(scope="module")
def local_relay() -> Iterator[LocalRelay]:
    relay = quiet_relay()
    try:
        yield relay
    finally:
        relay.stop()


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request; the answer's status and JSON body (raw text when it is not JSON)."""
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def failed_message(relay: LocalRelay, message_id: str) -> None:
    """Send a message whose target answers 404 and run its delivery by hand: it ends FAILED.

    The queue must hold nothing else (the fixtures' workers are stopped; call this first).
    """
    with TargetServer() as target:
        message = {
            "messageId": message_id,
            "senderId": DEV_SENDER,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "targetUrl": f"{target.url}/missing",
            "body": "x",
        }
        status, _ = http("POST", f"{relay.url}/messages", json.dumps(message).encode(), token=relay.dev_token)
        assert status == 202
        deadline = time.monotonic() + 30
        view: Any = None
        while time.monotonic() < deadline:
            relay.workers[0].poll_once()
            status, view = http("GET", f"{relay.url}/messages/{message_id}", token=relay.dev_token)
            if status == 200 and view["status"] == "FAILED":
                return
            time.sleep(0.1)
        raise AssertionError(f"{message_id} did not fail: {view}")
