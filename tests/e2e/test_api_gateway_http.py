"""`relay dev` in front of POST /messages behaves as the deployed API Gateway: media types and throttles."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest

from relay.client import RelayClient
from relay.local.runtime import DEV_SENDER, LocalRelay
from relay.local.targets import TargetServer
from tests.conftest import make_message


def message(target: TargetServer, sender: str = DEV_SENDER) -> dict[str, Any]:
    return make_message(senderId=sender, targetUrl=f"{target.url}/ok")


def post(relay: LocalRelay, token: str, body: dict[str, Any], content_type: str | None) -> tuple[int, dict[str, Any]]:
    """POST /messages with exactly these headers (urllib would add a form media type of its own)."""
    host, port = urlsplit(relay.url).netloc.split(":")
    headers = {"Authorization": f"Bearer {token}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", "/messages", json.dumps(body).encode(), headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", None])
def test_json_with_or_without_a_charset_or_no_content_type_is_accepted(
    relay: LocalRelay, target: TargetServer, content_type: str | None
) -> None:
    # Given a valid message, sent as the README says JSON may be sent
    sent = message(target)
    # When it is posted
    status, body = post(relay, relay.dev_token, sent, content_type)
    # Then it is accepted
    assert (status, body["status"]) == (202, "PENDING")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_other_content_types_are_415_in_relays_error_shape(
    relay: LocalRelay, target: TargetServer, content_type: str
) -> None:
    # Given a valid message sent with another media type
    sent = message(target)
    # When it is posted
    status, body = post(relay, relay.dev_token, sent, content_type)
    # Then API Gateway's answer is 415 in Relay's error shape, and nothing was stored
    assert status == 415
    assert set(body["error"]) == {"code", "message", "requestId"}
    assert body["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert RelayClient(relay.url, token=relay.dev_token).status(sent["messageId"]).status == 404


def burst(relay: LocalRelay, target: TargetServer, sender: str, token: str, size: int) -> tuple[Counter[int], float]:
    """`size` messages of one sender at once: how many got each status, and how long the burst took."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=size) as pool:
        statuses = pool.map(lambda _: post(relay, token, message(target, sender), "application/json")[0], range(size))
        counts = Counter(statuses)
    return counts, time.monotonic() - started


def test_two_senders_each_get_their_own_rate(relay: LocalRelay, target: TargetServer) -> None:
    # Given two senders, one limited to 5 requests a second (burst 5), the other to 50 (burst 50)
    admin = RelayClient(relay.url, token=relay.admin_token)
    senders = {}
    for name, rate in (("slow", 5), ("fast", 50)):
        sender = f"{name}-{uuid.uuid4().hex[:6]}"
        created = admin.admin("POST", "/senders", {"senderId": sender, "ratePerSecond": rate, "burst": rate})
        senders[name] = (sender, created.body["token"])
    # When the slow one sends 40 messages at once
    slow, seconds = burst(relay, target, *senders["slow"], 40)
    # Then it gets its burst of 5, plus at most what its rate refilled while the burst lasted;
    # the rest are refused with 429
    assert set(slow) <= {202, 429}
    assert 5 <= slow[202] <= 5 + 5 * seconds + 1
    assert slow[429] >= 10, f"the burst took {seconds:.1f} s; too slow a machine to show the limit"
    # When the fast one then sends 40 at once
    fast, _ = burst(relay, target, *senders["fast"], 40)
    # Then all are accepted: its own burst (50), untouched by the slow sender's
    assert fast == Counter({202: 40})
