"""Delivery through `relay dev` over real HTTP, as a new user would check it."""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from functions.domain.web.url_safety import blocked_reason
from relay.client import RelayClient
from relay.local.targets import TargetServer
from tests.conftest import make_message
from tests.e2e.conftest import RelayDev, start_relay_dev


def wait_terminal(client: RelayClient, message_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.status(message_id).body
        # A terminal status is written a moment before its terminal event: wait for both.
        if body.get("status") in ("DELIVERED", "FAILED") and body["events"][-1]["type"] == body["status"]:
            return dict(body)
        time.sleep(0.1)
    raise AssertionError(f"{message_id} not terminal: {body}")


def test_delivery_is_exact_and_verifiable_with_the_printed_secret(
    relay_dev_process: RelayDev, target: TargetServer
) -> None:
    # Given relay dev and its development sender's secret, printed once at start
    client = RelayClient(relay_dev_process.url, token=relay_dev_process.dev_token)
    body = '{"event":"order.paid","total":"9.99 €"}'
    message = make_message(senderId="dev", targetUrl=f"{target.url}/ok", headers={"X-Shop": "7"}, body=body)
    # When a message is sent
    assert client.send(message).status == 202
    record = wait_terminal(client, message["messageId"])
    # Then it is delivered once, byte-exact, and the signature verifies with standardwebhooks
    assert (record["status"], record["attempts"]) == ("DELIVERED", 1)
    [request] = [r for r in target.requests_to("/ok") if r.header("webhook-id") == f"dev:{message['messageId']}"]
    assert request.body == body.encode()
    assert request.header("X-Shop") == "7"
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert Webhook(relay_dev_process.dev_secret).verify(request.body, headers) == json.loads(body)


def test_flaky_and_missing_targets(relay_dev: str, dev_token: str, target: TargetServer) -> None:
    client = RelayClient(relay_dev, token=dev_token)
    flaky = make_message(senderId="dev", targetUrl=f"{target.url}/flaky/2")
    missing = make_message(senderId="dev", targetUrl=f"{target.url}/missing")
    assert client.send(flaky).status == 202 and client.send(missing).status == 202
    flaky_record = wait_terminal(client, flaky["messageId"])
    assert (flaky_record["status"], flaky_record["attempts"]) == ("DELIVERED", 3)
    assert [e.get("statusCode") for e in flaky_record["events"] if e["type"] == "ATTEMPT_FAILED"] == [503, 503]
    missing_record = wait_terminal(client, missing["messageId"])
    assert (missing_record["status"], missing_record["attempts"]) == ("FAILED", 1)


def _private_hostname() -> str | None:
    """This machine's own name: it resolves to a loopback or private address on any sane host."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    except OSError:
        return None
    blocked = all(blocked_reason(ipaddress.ip_address(address.split("%")[0])) for address in addresses)
    return name if addresses and blocked else None


def test_host_resolving_to_a_private_address_is_blocked_without_connecting(target: TargetServer) -> None:
    hostname = _private_hostname()
    if hostname is None:
        pytest.skip("this machine's hostname does not resolve to a private address")
    # Given relay dev under the deployment's rule (private targets off)
    relay = start_relay_dev("--no-allow-private-targets", "--time-scale", "0.01")
    try:
        client = RelayClient(relay.url, token=relay.dev_token)
        connections_before = target.connections
        message = make_message(senderId="dev", targetUrl=f"http://{hostname}:{target.port}/ok")
        # When a message names a host that resolves to a private address
        assert client.send(message).status == 202
        record = wait_terminal(client, message["messageId"])
        # Then it fails at once, no connection is made, and the event names the block
        assert (record["status"], record["attempts"]) == ("FAILED", 1)
        failure = next(e for e in record["events"] if e["type"] == "ATTEMPT_FAILED")
        assert failure["error"] == "TargetBlocked"
        assert hostname in failure["detail"]
        assert target.connections == connections_before
        # And a literal private address is refused at the door
        literal = client.send(make_message(senderId="dev", targetUrl="http://169.254.169.254/latest/meta-data/"))
        assert literal.status == 400
    finally:
        relay.stop()
