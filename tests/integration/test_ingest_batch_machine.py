"""The batch ingest machine (ingest.asl.json deployed with RequestShape batch), real handlers on moto."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import boto3
import pytest

from functions.adapters.repository import MessageRepository
from functions.domain.config import get_settings
from functions.domain.model import MessageKey
from tests.conftest import make_message


def batch_input(body: Any, request_id: str | None = None) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return {"requestId": request_id or str(uuid.uuid4()), "senderId": "", "bodyBase64": base64.b64encode(raw).decode()}


@pytest.fixture
def post_batch(local_aws: Any) -> Any:
    """Run the batch machine like API Gateway would and return (statusCode, parsed body)."""

    def _post(body: Any, request_id: str | None = None) -> tuple[int, dict[str, Any]]:
        result = local_aws.start_sync_execution("relay-ingest-batch", batch_input(body, request_id))
        assert result["status"] == "SUCCEEDED", result
        answer = json.loads(result["output"])
        return int(answer["statusCode"]), json.loads(answer["body"])

    return _post


def stored(message: dict[str, Any]) -> Any:
    repository = MessageRepository(get_settings().table_name)
    return repository.get_message(MessageKey(message["senderId"], message["messageId"]))


def queued_ids(local_aws: Any) -> list[str]:
    """The message ids on the delivery queue, taken off it (so a later look sees only new ones)."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = local_aws.queue_urls["relay-delivery"]
    found: list[str] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
        if not batch.get("Messages"):
            return found
        for message in batch["Messages"]:
            found.append(json.loads(message["Body"])["messageId"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def test_100_messages_with_3_invalid_and_2_already_sent_answer_in_order(
    post: Any, post_batch: Any, local_aws: Any
) -> None:
    # Given 100 messages, of which 2 were already accepted alone and 3 are invalid
    messages = [make_message(messageId=f"batch-{index:03d}") for index in range(100)]
    already = {10, 50}
    invalid = {3, 42, 99}
    for index in already:
        assert post(messages[index])[0] == 202
    queued_before = queued_ids(local_aws)
    messages[3] = {**messages[3], "targetUrl": "ftp://example.com/x"}
    messages[42] = {**messages[42], "timestamp": "yesterday"}
    del messages[99]["senderId"]
    # When they are posted as one batch
    status, body = post_batch({"messages": messages})
    # Then one answer holds one result per message, in order
    assert status == 200
    results = body["results"]
    assert len(results) == 100
    codes = [result["statusCode"] for result in results]
    assert codes.count(202) == 95 and codes.count(200) == 2 and codes.count(400) == 3
    for index, result in enumerate(results):
        expected = 200 if index in already else 400 if index in invalid else 202
        assert result["statusCode"] == expected, (index, result)
        if expected == 202:
            assert result["body"]["messageId"] == messages[index]["messageId"]
            assert result["body"]["status"] == "PENDING"
        if expected == 200:
            assert result["body"]["duplicate"] is True
            assert result["body"]["messageId"] == messages[index]["messageId"]
    # And each rejection is the single path's, naming the field
    assert results[3]["body"]["error"]["code"] == "VALIDATION_ERROR"
    assert results[3]["body"]["error"]["details"][0]["path"] == "$.targetUrl"
    assert results[42]["body"]["error"]["details"][0]["path"] == "$.timestamp"
    assert "$.senderId" in json.dumps(results[99]["body"]["error"]["details"])
    # And the 95 new ones are stored and queued (at least once: a step retried under load sends again)
    new_ids = {messages[i]["messageId"] for i in range(100) if i not in already | invalid}
    assert set(queued_before) == {messages[i]["messageId"] for i in already}
    assert set(queued_ids(local_aws)) == new_ids
    assert stored(messages[0]).head.status == "PENDING"
    assert stored(messages[3]) is None


def test_every_run_of_one_batch_is_recorded_with_its_execution(post_batch: Any) -> None:
    # Given two valid messages
    messages = [make_message(), make_message()]
    # When they are posted as a batch
    status, body = post_batch({"messages": messages})
    # Then both are accepted, and each records the batch run that accepted it
    assert status == 200 and [result["statusCode"] for result in body["results"]] == [202, 202]
    arns = set()
    for message in messages:
        events = stored(message).head.events
        assert events[0].type == "RECEIVED"
        arns.update(str(event.details["executionArn"]) for event in events if event.details.get("executionArn"))
    assert len(arns) == 1 and ":express:relay-ingest-batch:" in arns.pop()


@pytest.mark.parametrize(("twin_body", "expected"), [({"order": 42}, 200), ({"order": 43}, 409)])
def test_a_twin_inside_one_batch_is_accepted_first_then_answered_like_a_repeat(
    post_batch: Any, twin_body: dict[str, Any], expected: int
) -> None:
    # Given a batch holding one messageId twice (with the same or another body), around other messages
    first = make_message()
    twin = {**first, "body": twin_body}
    batch = [make_message(), first, make_message(), twin]
    # When it is posted
    status, body = post_batch({"messages": batch})
    # Then the first occurrence is accepted and the second answered as a repeat of it
    assert status == 200
    assert [result["statusCode"] for result in body["results"]] == [202, 202, 202, expected]
    if expected == 200:
        assert body["results"][3]["body"]["duplicate"] is True
    else:
        assert body["results"][3]["body"]["error"]["code"] == "MESSAGE_ID_CONFLICT"
    # And the stored content is the first one's
    assert stored(first).content.message["body"] == '{"order":42}'


def test_a_batch_of_repeats_only_is_answered_without_storing_or_queueing(post_batch: Any, local_aws: Any) -> None:
    # Given a batch already accepted
    messages = [make_message(), make_message()]
    assert post_batch({"messages": messages})[0] == 200
    queued_ids(local_aws)
    # When it is posted again
    status, body = post_batch({"messages": messages})
    # Then every message is a duplicate, and nothing more is queued
    assert status == 200
    assert [result["statusCode"] for result in body["results"]] == [200, 200]
    assert queued_ids(local_aws) == []


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ([make_message()], "$"),
        ({"items": []}, "$.messages"),
        ({"messages": []}, "$.messages"),
        ({"messages": [make_message() for _ in range(101)]}, "$.messages"),
        ({"messages": [make_message()], "extra": 1}, "$.extra"),
        (b"{not json", "$"),
    ],
)
def test_a_malformed_envelope_is_a_400_naming_the_field(post_batch: Any, body: Any, path: str) -> None:
    # When a batch request is not {"messages": [1..100 items]}
    status, answer = post_batch(body)
    # Then the whole request is refused, naming the field
    assert status == 400
    assert answer["error"]["code"] == "VALIDATION_ERROR"
    assert path in [detail["path"] for detail in answer["error"]["details"]]


def test_a_batch_too_large_for_a_state_is_a_413(post_batch: Any) -> None:
    # Given 40 messages with JSON bodies full of quotes: the request is within the limit, but each
    # quote, escaped once more in the serialised body, takes twice the room in the state
    messages = [make_message(body={"q": '"' * 2000}) for _ in range(40)]
    # When they are posted as one batch
    status, answer = post_batch({"messages": messages})
    # Then the whole batch is refused as too large, naming the messages
    assert status == 413
    assert answer["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert answer["error"]["details"][0]["path"] == "$.messages"
    assert stored(messages[0]) is None


def test_a_request_over_the_batch_limit_is_a_413(post_batch: Any) -> None:
    from functions.domain.validation import MAX_BATCH_REQUEST_BYTES

    # When the request is over the batch request limit
    status, answer = post_batch(b" " * (MAX_BATCH_REQUEST_BYTES + 1))
    # Then it is refused as too large
    assert status == 413
    assert answer["error"]["details"][0]["path"] == "$"
