"""The ingest state machine, run from statemachines/ingest.asl.json with the real handlers on moto."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.adapters import aws
from functions.adapters.repository import MessageRepository
from functions.contract.settings_names import Setting
from functions.domain.config import get_settings
from functions.domain.model import Event, EventType, MessageKey
from functions.services.http_api.status import status_view
from functions.services.ingest import record_enqueue_failed
from tests.conftest import make_message


@dataclass
class Record:
    """What `GET /messages/{id}` shows of a stored message: its head fields, content and events."""

    head: dict[str, Any]
    content: dict[str, Any]
    events: list[dict[str, Any]]


def stored(message: dict[str, Any]) -> Record | None:
    repository = MessageRepository(get_settings().table_name)
    found = repository.get_message(MessageKey(message["senderId"], message["messageId"]))
    if found is None:
        return None
    view = status_view(found)
    return Record(view, {**found.content.message, "method": found.content.method}, view["events"])


def test_valid_message_is_accepted_pending_with_received_then_enqueued(post: Any, local_aws: Any) -> None:
    # Given a valid message with every optional field
    message = make_message(method="PUT", headers={"X-Trace": "abc"}, body="raw text")
    # When it is posted
    status, body = post(message)
    # Then it is accepted as PENDING
    assert status == 202
    assert body["status"] == "PENDING"
    assert body["messageId"] == message["messageId"]
    # And the stored record holds the head, the content and RECEIVED (the dispatcher's claim records
    # ENQUEUED; no dispatcher runs here)
    record = stored(message)
    assert record.head["status"] == "PENDING"
    assert record.head["attempts"] == 0
    assert record.content["method"] == "PUT"
    assert record.content["headers"] == {"X-Trace": "abc"}
    assert record.content["body"] == "raw text"
    assert [event["type"] for event in record.events] == ["RECEIVED"]
    # And the TTL is about 30 days after acceptance
    accepted = datetime.fromisoformat(record.head["acceptedAt"]).timestamp()
    assert abs(record.head["ttl"] - (accepted + 30 * 86_400)) < 5
    # And the delivery queue holds the message key
    import boto3

    sqs = boto3.client("sqs", region_name="us-east-1")
    queued = sqs.receive_message(QueueUrl=local_aws.queue_urls["relay-delivery"], MaxNumberOfMessages=10)
    assert any(message["messageId"] in m["Body"] for m in queued["Messages"])


def test_optional_fields_are_absent_when_not_given(post: Any) -> None:
    # Given a message without method, headers or body
    message = make_message()
    message.pop("body")
    # When it is accepted
    assert post(message)[0] == 202
    # Then the stored content has the default method and no headers or body
    content = stored(message).content
    assert content["method"] == "POST"
    assert "headers" not in content and "body" not in content


def test_ttl_follows_the_setting(post: Any, local_aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a relay configured to keep messages 7 days
    monkeypatch.setenv(Setting.TTL_DAYS, "7")
    get_settings.cache_clear()
    message = make_message()
    # When a message is accepted
    status, body = post(message)
    # Then its ttl and expiresAt are 7 days out
    assert status == 202
    head = stored(message).head
    assert abs(head["ttl"] - (time.time() + 7 * 86_400)) < 30
    assert body["expiresAt"] == head["expiresAt"]
    get_settings.cache_clear()


def test_same_message_again_is_a_duplicate_with_current_status(post: Any) -> None:
    # Given an accepted message
    message = make_message()
    assert post(message)[0] == 202
    # When the identical message is posted again
    status, body = post(message)
    # Then the answer is 200 duplicate with the current status, and nothing new is stored
    assert status == 200
    assert body["duplicate"] is True
    assert body["status"] == "PENDING"
    assert [event["type"] for event in stored(message).events] == ["RECEIVED"]


def test_same_id_different_body_is_a_conflict(post: Any) -> None:
    # Given an accepted message
    message = make_message()
    assert post(message)[0] == 202
    # When the same id comes with a different body
    status, body = post({**message, "body": {"order": 43}})
    # Then it is refused as a conflict and the original content stays
    assert status == 409
    assert body["error"]["code"] == "MESSAGE_ID_CONFLICT"
    assert stored(message).content["body"] == '{"order":42}'


def test_same_message_re_stamped_is_a_duplicate_answered_from_the_stored_record(post: Any) -> None:
    # Given an accepted message
    first_stamp = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="seconds")
    message = make_message(headers={"X-Shop": "7"}, timestamp=first_stamp)
    assert post(message)[0] == 202
    # When a client retries it with a new timestamp (and its header name in another case)
    retry_stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    status, body = post({**message, "timestamp": retry_stamp, "headers": {"x-shop": "7"}})
    # Then the answer is 200 duplicate with the stored status, and the first submission stays stored
    assert status == 200
    assert body["duplicate"] is True
    assert body["status"] == "PENDING"
    record = stored(message)
    assert record.content["timestamp"] == first_stamp
    assert record.content["headers"] == {"X-Shop": "7", "Content-Type": "application/json"}
    assert [event["type"] for event in record.events] == ["RECEIVED"]


def test_same_id_with_json_keys_reordered_is_a_conflict(post: Any) -> None:
    # Given an accepted message whose JSON body is {"order":42,"shop":7}
    message = make_message(body={"order": 42, "shop": 7})
    assert post(message)[0] == 202
    # When the same id comes with the keys in another order (other bytes on the wire)
    status, body = post({**message, "body": {"shop": 7, "order": 42}})
    # Then it is a conflict, and the body delivered stays the first one, byte for byte
    assert status == 409
    assert body["error"]["code"] == "MESSAGE_ID_CONFLICT"
    assert stored(message).content["body"] == '{"order":42,"shop":7}'


@pytest.mark.parametrize(
    ("mutation", "path"),
    [
        (lambda m: m.pop("targetUrl"), "$.targetUrl"),
        (lambda m: m.update(targetUrl="ftp://x"), "$.targetUrl"),
        (lambda m: m.update(timestamp="yesterday"), "$.timestamp"),
        (lambda m: m.update(headers={"Host": "evil"}), "$.headers.Host"),
    ],
)
def test_invalid_message_is_rejected_naming_the_field(post: Any, mutation: Any, path: str) -> None:
    # Given a message with one bad field
    message = make_message()
    mutation(message)
    # When it is posted
    status, body = post(message)
    # Then the answer is 400 VALIDATION_ERROR naming the field, and nothing is stored
    assert status == 400
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert path in [detail["path"] for detail in body["error"]["details"]]
    assert stored(message) is None


def test_malformed_json_is_a_validation_error(post: Any) -> None:
    status, body = post(b'{"messageId": ')
    assert status == 400
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["requestId"]


def test_oversized_body_is_413(post: Any) -> None:
    status, body = post(make_message(body="x" * (get_settings().max_body_bytes + 1)))
    assert status == 413
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert body["error"]["details"][0]["path"] == "$.body"


def test_concurrent_twins_store_exactly_one(local_aws: Any, post: Any) -> None:
    # Given 50 concurrent submissions of one new message
    message = make_message()
    answers: list[int] = []
    lock = threading.Lock()

    def submit() -> None:
        status, _ = post(message)
        with lock:
            answers.append(status)

    threads = [threading.Thread(target=submit) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one is accepted, the rest are duplicates, and one record exists
    assert sorted(answers) == [200] * 49 + [202]
    record = stored(message)
    assert [event["type"] for event in record.events] == ["RECEIVED"]


def _failing_client(service: str, operation: str, code: str) -> Any:
    real = aws.client(service)

    class Failing:
        def __getattr__(self, name: str) -> Any:
            if name == operation:

                def fail(**_: Any) -> Any:
                    raise ClientError({"Error": {"Code": code, "Message": "injected"}}, operation)

                return fail
            return getattr(real, name)

    return Failing()


def test_storage_failure_answers_system_error_without_aws_text(post: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given DynamoDB throttles every write
    failing = _failing_client("dynamodb", "put_item", "ProvisionedThroughputExceededException")
    real_client = aws.client
    monkeypatch.setattr(aws, "client", lambda service: failing if service == "dynamodb" else real_client(service))
    # When a message is posted
    status, body = post(make_message(), request_id="req-123")
    # Then the answer is 500 SYSTEM_ERROR with the request id and no AWS error text
    assert status == 500
    assert body == {
        "error": {
            "code": "SYSTEM_ERROR",
            "message": "Relay could not process the request; it is safe to retry with the same messageId.",
            "requestId": "req-123",
        }
    }


def test_enqueue_failure_keeps_the_message_stored_and_findable_for_redrive(
    post: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given SQS refuses every send
    failing = _failing_client("sqs", "send_message", "AWS.SimpleQueueService.ServiceUnavailable")
    real_client = aws.client
    monkeypatch.setattr(aws, "client", lambda service: failing if service == "sqs" else real_client(service))
    message = make_message()
    # When a message is posted
    status, body = post(message)
    # Then the caller gets SYSTEM_ERROR
    assert status == 500
    assert body["error"]["code"] == "SYSTEM_ERROR"
    # And the message is stored PENDING, with the failed enqueue recorded
    record = stored(message)
    assert record.head["status"] == "PENDING"
    assert "ENQUEUE_FAILED" in [event["type"] for event in record.events]
    # And the reconciler's index finds it as due now
    repository = MessageRepository(get_settings().table_name)
    key = MessageKey(message["senderId"], message["messageId"])
    assert key in list(repository.iter_due(key.due_shard, int(time.time()) + 1))
    # And a retry by the client is answered as a duplicate, not stored twice
    monkeypatch.undo()
    status, body = post(message)
    assert status == 200 and body["duplicate"] is True


def test_an_enqueue_failure_reported_after_the_message_ended_changes_nothing(post: Any) -> None:
    # Given a message accepted and then ended (here cancelled; a send SQS took but answered as
    # failed may equally have been delivered by the time its failure is recorded)
    message = make_message()
    status, _ = post(message)
    assert status == 202
    repository = MessageRepository(get_settings().table_name)
    key = MessageKey(message["senderId"], message["messageId"])
    head = repository.get_head(key)
    assert head is not None
    cancelled = Event(EventType.CANCELLED, datetime.now(UTC), 0, None, {})
    assert repository.cancel(head, cancelled) is not None
    # When the enqueue step records its send as failed
    item = {"message": message, "requestId": "late-request"}
    record_enqueue_failed(item, None, repository, datetime.now(UTC))
    # Then the history still ends with the cancel, and nothing makes the message due again
    record = stored(message)
    assert [event["type"] for event in record.events][-1] == "CANCELLED"
    assert "ENQUEUE_FAILED" not in [event["type"] for event in record.events]
    assert key not in list(repository.iter_due(key.due_shard, int(time.time()) + 60))
