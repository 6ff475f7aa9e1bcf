"""Under the deployment's rule (private targets off), a host that resolves to a blocked address is
never connected to, and the event says why."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from functions.adapters.http_client import DeliveryClient
from functions.services import delivery
from relay.client import RelayClient
from relay.local.runtime import LocalRelay
from relay.local.targets import TargetServer
from tests.conftest import make_message


@pytest.fixture
def resolved_to(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Point every host the delivery client resolves at an address chosen by the test."""
    answers: dict[str, str] = {}

    def resolver(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        address = answers[host]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    original = delivery.DeliveryDependencies.from_settings.__func__  # type: ignore[attr-defined]

    def with_resolver(cls: Any, settings: Any) -> Any:
        deps = original(cls, settings)
        deps.client = DeliveryClient(
            allow_private=settings.allow_private_targets,
            connect_timeout=1,
            total_timeout=2,
            max_response_bytes=1024,
            resolver=resolver,
        )
        return deps

    monkeypatch.setattr(delivery.DeliveryDependencies, "from_settings", classmethod(with_resolver))
    delivery.dependencies.cache_clear()
    yield answers
    delivery.dependencies.cache_clear()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "instance metadata"),
        ("fd00:ec2::254", "instance metadata"),
        ("10.1.2.3", "private"),
        ("::ffff:127.0.0.1", "loopback"),
    ],
)
def test_blocked_resolution_fails_at_once_without_connecting(
    resolved_to: dict[str, str], address: str, reason: str
) -> None:
    with TargetServer() as target, LocalRelay(port=0, time_scale=0.01, allow_private_targets=False) as relay:
        # Given a host that resolves to a blocked address (the target listens there locally)
        resolved_to["hooks.example.test"] = address
        client = RelayClient(relay.url, token=relay.dev_token)
        message = make_message(senderId="dev", targetUrl=f"http://hooks.example.test:{target.port}/ok")
        # When a message is sent to it
        sent = client.send(message)
        assert sent.status == 202, sent.body
        deadline = time.monotonic() + 30
        answer = client.status(message["messageId"])
        while answer.body.get("events", [{}])[-1].get("type") not in ("DELIVERED", "FAILED") and (
            time.monotonic() < deadline
        ):
            assert answer.ok, answer.body
            time.sleep(0.05)
            answer = client.status(message["messageId"])
        record = answer.body
        # Then it fails after one attempt, the event names the block, and nothing connected
        assert (record["status"], record["attempts"]) == ("FAILED", 1)
        failure = next(event for event in record["events"] if event["type"] == "ATTEMPT_FAILED")
        assert failure["error"] == "TargetBlocked"
        assert reason in failure["detail"]
        assert target.connections == 0
