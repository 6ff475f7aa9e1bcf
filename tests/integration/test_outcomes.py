"""Outcome callbacks and operational notifications in one process, as a sender sees them: the real
dispatcher, lanes and API on moto, delivering over real HTTP to a local target
(functions/services/reporting/outcomes.py, functions/services/reporting/emit.py)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from functions.contract.settings_names import Setting
from functions.domain.callbacks import Outcome, callback_id
from functions.domain.config import get_settings
from functions.domain.model import MessageKey
from functions.domain.web.signing import sign
from functions.services import delivery
from functions.services.reporting.outcomes import report_outcome
from functions.services.targeting.target_health import origin_of
from relay.client import RelayClient
from relay.local.emulator import REGION
from relay.local.runtime import LocalRelay
from relay.local.targets import ReceivedRequest, TargetServer
from tests.conftest import make_message
from tests.support import (
    QUICK_BREAKER,
    TERMINAL,
    delivery_relay,
    send_accepted,
    wait_for,
    wait_requests,
    wait_until_terminal,
)


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    # A small breaker, so a target opens after a few failed attempts (a 404 is not one: it never counts).
    with delivery_relay(QUICK_BREAKER, reconcile_every_seconds=0.5) as running:
        yield running


@pytest.fixture(scope="module")
def bus_events(relay: LocalRelay) -> str:
    """A queue that an EventBridge rule on Relay's bus (source relay) copies every event to."""
    events, sqs = boto3.client("events", region_name=REGION), boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="test-relay-events")["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = os.environ[Setting.EVENT_BUS_NAME]
    events.put_rule(Name="relay-events", EventBusName=bus, EventPattern=json.dumps({"source": ["relay"]}))
    events.put_targets(Rule="relay-events", EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue}])
    return str(queue_url)


def bus_event(queue_url: str, detail_type: str, matches: Any, timeout: float = 30) -> dict[str, Any]:
    sqs = boto3.client("sqs", region_name=REGION)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            event = json.loads(message["Body"])
            if event["detail-type"] == detail_type and matches(event["detail"]):
                return dict(event)
        time.sleep(0.05)
    raise AssertionError(f"no {detail_type} event on the bus")


@pytest.fixture(scope="module")
def server() -> Iterator[TargetServer]:
    with TargetServer() as running:
        yield running


def assert_signed(request: ReceivedRequest, secret: str) -> None:
    """The Standard Webhooks signature of the request, checked with the sender's secret."""
    webhook_id, timestamp = request.header("webhook-id"), request.header("webhook-timestamp")
    assert webhook_id and timestamp
    assert request.header("webhook-signature") == sign(secret, webhook_id, int(timestamp), request.body)


def test_a_delivered_message_calls_back_once_signed_naming_it(
    relay: LocalRelay, client: RelayClient, server: TargetServer
) -> None:
    # Given a message to a target that takes it, with a callbackUrl
    message = send_accepted(client, targetUrl=f"{server.url}/ok/cb1", callbackUrl=f"{server.url}/callback/delivered")
    # When it is delivered
    assert wait_until_terminal(client, message)["status"] == "DELIVERED"
    (callback,) = wait_requests(server, "/callback/delivered")
    # Then one callback arrives, signed with the sender's secret, naming the message and DELIVERED
    assert_signed(callback, relay.dev_secret)
    body = json.loads(callback.body)
    assert body["messageId"] == message["messageId"]
    assert body["status"] == "DELIVERED"
    assert body["attempts"] == 1
    assert body["response"] == {"statusCode": 200, "bodySnippet": "ok"}
    assert body["acceptedAt"] <= body["finishedAt"]
    # And the callback is a message of its own, visible in the API, delivered once
    callback_id = callback.header("webhook-id")
    time.sleep(0.5)
    assert len(server.requests_to("/callback/delivered")) == 1
    assert callback_id


def test_a_failed_message_calls_its_failure_callback_once(
    relay: LocalRelay, client: RelayClient, server: TargetServer
) -> None:
    # Given a message to a target that answers 404, with both callbacks
    message = send_accepted(
        client,
        targetUrl=f"{server.url}/missing/cb2",
        callbackUrl=f"{server.url}/callback/never",
        failureCallbackUrl=f"{server.url}/callback/failed",
    )
    # When it fails
    assert wait_until_terminal(client, message)["status"] == "FAILED"
    (callback,) = wait_requests(server, "/callback/failed")
    # Then the failure callback arrives, signed, naming the message, FAILED and the 404
    assert_signed(callback, relay.dev_secret)
    body = json.loads(callback.body)
    assert (body["messageId"], body["status"]) == (message["messageId"], "FAILED")
    assert body["response"]["statusCode"] == 404
    assert "404" in body["error"]
    time.sleep(0.5)
    assert len(server.requests_to("/callback/failed")) == 1
    assert server.requests_to("/callback/never") == []


def test_a_callback_url_that_is_private_on_aws_is_refused_naming_the_field(client: RelayClient) -> None:
    # Given relay dev (private targets allowed), When a callback is not a URL at all, Then 400 names it
    answer = client.send(make_message(senderId="dev", callbackUrl="ftp://example.com/x"))
    assert answer.status == 400
    assert [detail["path"] for detail in answer.body["error"]["details"]] == ["$.callbackUrl"]


def test_message_failed_notification_arrives_naming_the_message(
    relay: LocalRelay, client: RelayClient, server: TargetServer, bus_events: str
) -> None:
    # Given the sender subscribed to message.failed
    answer = client.put_notifications(f"{server.url}/notify", ["message.failed"])
    assert answer.status == 200, answer.body
    assert client.notifications().body["events"] == ["message.failed"]
    try:
        # When a message to a 404 fails
        message = send_accepted(client, targetUrl=f"{server.url}/missing/ntf")
        assert wait_until_terminal(client, message)["status"] == "FAILED"
        # Then the notification arrives, signed, naming the message
        notification = next(
            request
            for request in wait_requests(server, "/notify")
            if json.loads(request.body)["data"]["messageId"] == message["messageId"]
        )
        assert_signed(notification, relay.dev_secret)
        body = json.loads(notification.body)
        assert body["type"] == "message.failed"
        assert body["data"]["status"] == "FAILED"
        assert body["occurredAt"]
        # And the same event is on Relay's EventBridge bus (source relay), for users' rules
        event = bus_event(bus_events, "message.failed", lambda d: d["data"]["messageId"] == message["messageId"])
        assert (event["source"], event["detail"]["senderId"]) == ("relay", "dev")
    finally:
        assert client.delete_notifications().status == 200
    assert client.notifications().status == 404


def test_a_bad_notification_setting_is_refused_naming_the_field(client: RelayClient) -> None:
    answer = client.put_notifications("https://example.com/x", ["message.exploded"])
    assert answer.status == 400
    assert answer.body["error"]["code"] == "VALIDATION_ERROR"
    assert [detail["path"] for detail in answer.body["error"]["details"]] == ["$.events[0]"]


def test_a_target_that_opens_and_closes_notifies_both(
    relay: LocalRelay, client: RelayClient, server: TargetServer, bus_events: str
) -> None:
    # Given the sender subscribed to target.opened and target.closed, and a target that fails for now
    assert client.put_notifications(f"{server.url}/notify-targets", ["target.opened", "target.closed"]).ok
    try:
        with TargetServer() as down:
            origin = origin_of(down.url)
            # When its messages' failed attempts open its circuit
            message = send_accepted(client, targetUrl=f"{down.url}/switch/breaker")
            opened = wait_requests(server, "/notify-targets")[0]
            # Then target.opened arrives, signed, naming the target (and goes on the bus)
            assert_signed(opened, relay.dev_secret)
            assert json.loads(opened.body)["type"] == "target.opened"
            assert json.loads(opened.body)["data"] == {"target": origin}
            bus_event(bus_events, "target.opened", lambda d: d["data"]["target"] == origin)
            # And when it recovers, a probe closes it: target.closed arrives, and the message is delivered
            down.heal("breaker")
            closed = wait_requests(server, "/notify-targets", count=2)[1]
            assert json.loads(closed.body)["type"] == "target.closed"
            assert json.loads(closed.body)["data"] == {"target": origin}
            assert wait_until_terminal(client, message)["status"] == "DELIVERED"
    finally:
        assert client.delete_notifications().ok


def test_an_outcome_reported_again_calls_back_no_second_time(
    relay: LocalRelay, client: RelayClient, server: TargetServer
) -> None:
    # Given a delivered message whose callback came
    message = send_accepted(client, targetUrl=f"{server.url}/ok/again", callbackUrl=f"{server.url}/callback/again")
    assert wait_until_terminal(client, message)["status"] == "DELIVERED"
    wait_requests(server, "/callback/again")
    callback = callback_id(message["messageId"], 0, Outcome.DELIVERED)
    # (the target has the request before Relay records the callback's answer: wait for the record)
    assert wait_for(client, callback, TERMINAL)["status"] == "DELIVERED"
    # When the outcome is reported again, as a retried step (or a redelivered queue message) does
    deps = delivery.dependencies(get_settings())
    stored = deps.repository.get_message(MessageKey("dev", message["messageId"]))
    assert stored is not None
    report_outcome(deps.reporter, stored)
    # Then the callback is the same one message, delivered once, that names itself as Relay's own
    record = client.status(callback).body
    assert (record["status"], record["attempts"], record["run"]) == ("DELIVERED", 1, 0)
    assert record["emittedBy"] == "relay"
    assert client.status(message["messageId"]).body["callbackUrl"] == f"{server.url}/callback/again"
    assert len(server.requests_to("/callback/again")) == 1
