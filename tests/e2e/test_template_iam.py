"""`relay dev` runs the synthesized template with its IAM policies enforced, as AWS would."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.client import RelayClient
from relay.local.targets import TargetServer
from tests.conftest import make_message, template_without
from tests.e2e.conftest import RelayDev, start_relay_dev

API_HANDLER = "functions.api.handler.lambda_handler"


def delivered(client: RelayClient, target: TargetServer, watch_status: bool = True) -> str:
    """A message that reached DELIVERED (so the DELIVERED listing has an item). Without
    `watch_status` (an API that cannot read messages), it waits for the target to receive it."""
    message = make_message(senderId="dev", targetUrl=f"{target.url}/ok")
    assert client.send(message).status == 202
    webhook = f"dev:{message['messageId']}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if watch_status:
            body: dict[str, Any] = client.status(message["messageId"]).body
            if body.get("status") == "DELIVERED":
                return str(message["messageId"])
        elif any(request.header("webhook-id") == webhook for request in target.requests_to("/ok")):
            time.sleep(0.5)  # the DELIVERED write follows the answer
            return str(message["messageId"])
        time.sleep(0.1)
    raise AssertionError(f"{message['messageId']} was not delivered")


@pytest.fixture
def relay_dev_with(tmp_path: Path) -> Iterator[Any]:
    started: list[RelayDev] = []

    def start(template: Path) -> RelayDev:
        started.append(start_relay_dev("--template", str(template), "--time-scale", "0.01"))
        return started[-1]

    yield start
    for relay in started:
        relay.stop()


def test_a_listing_with_items_answers_200_under_the_template_roles(
    relay_dev_process: RelayDev, target: TargetServer
) -> None:
    # Given relay dev on the synthesized template, IAM enforced, and a delivered message
    client = RelayClient(relay_dev_process.url, token=relay_dev_process.dev_token)
    message_id = delivered(client, target)
    # When the sender lists its delivered messages
    answer = client.list("DELIVERED")
    # Then the page answers 200 and holds the message (the api function may BatchGetItem the heads)
    assert answer.status == 200, answer.body
    assert message_id in json.dumps(answer.body)


def test_without_batch_get_item_the_listing_fails_as_it_would_on_aws(
    relay_dev_with: Any, target: TargetServer, tmp_path: Path
) -> None:
    # Given relay dev on a template whose api function lost dynamodb:BatchGetItem, and a delivered message
    relay = relay_dev_with(template_without("dynamodb:BatchGetItem", tmp_path, API_HANDLER))
    client = RelayClient(relay.url, token=relay.dev_token)
    message_id = delivered(client, target, watch_status=False)
    # When the sender lists its delivered messages
    answer = client.list("DELIVERED")
    # Then the listing answers 500 SYSTEM_ERROR, where the deployed API would (and so does the
    # message's status: head and content are one BatchGetItem), while a cancel (a GetItem the role
    # still grants) of the delivered message answers 409 as always
    assert answer.status == 500, answer.body
    assert answer.body["error"]["code"] == "SYSTEM_ERROR"
    assert "AccessDenied" not in json.dumps(answer.body)
    assert client.status(message_id).status == 500
    assert client.cancel(message_id).status == 409


def test_without_start_sync_execution_post_messages_answers_500(relay_dev_with: Any, tmp_path: Path) -> None:
    # Given relay dev on a template whose API Gateway integration role may not StartSyncExecution
    relay = relay_dev_with(template_without("states:StartSyncExecution", tmp_path))
    client = RelayClient(relay.url, token=relay.dev_token)
    # When a valid message is posted
    answer = client.send(make_message(senderId="dev"))
    # Then API Gateway's call to the ingest machine is refused, and the sender gets 500 SYSTEM_ERROR
    assert answer.status == 500, answer.body
    assert answer.body["error"]["code"] == "SYSTEM_ERROR"
