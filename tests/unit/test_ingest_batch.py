"""The ingest steps over a request's items: the envelope, order, mixed answers, twins, the queue, and
a single message as a batch of one.

The per-message work (store_item, dedup_item, the repository behind them) is tested through the
machine (tests/integration/test_ingest_machine.py); here it is replaced by fakes where a test is about
the items alone.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.adapters import queue
from functions.contract.request_shapes import RequestShape
from functions.domain.config import get_settings
from functions.domain.exceptions import PayloadInvalid, QueueUnavailable
from functions.domain.model import MessageKey
from functions.domain.validation import MAX_BATCH_MESSAGES, MAX_BATCH_REQUEST_BYTES
from functions.services import ingest
from functions.services.ingest_payloads import IngestRequest, stored_state, validated_state

SETTINGS = replace(get_settings(), allow_private_targets=False, require_sender=True, max_body_bytes=65_536)


def message(index: int, **overrides: Any) -> dict[str, Any]:
    document = {
        "messageId": f"m-{index}",
        "senderId": "acme",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "targetUrl": "https://example.com/hook",
        "body": {"n": index},
    }
    document.update(overrides)
    return document


def batch_state(body: Any, sender: str = "acme", shape: str = "batch") -> IngestRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    encoded = base64.b64encode(raw).decode()
    return IngestRequest.from_event({"requestId": "req", "senderId": sender, "bodyBase64": encoded, "shape": shape})


def single_state(body: Any, sender: str = "acme") -> IngestRequest:
    return batch_state(body, sender, shape="message")


def answer(state: Any) -> tuple[int, dict[str, Any]]:
    response = state["response"]
    return response["statusCode"], json.loads(response["body"])


# -- the envelope ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "path", "text"),
    [
        (b"[1,", "$", "not valid JSON"),
        ([message(0)], "$", '{"messages": [...]}'),
        ("messages", "$", '{"messages": [...]}'),
        ({}, "$.messages", "is required"),
        ({"messages": {"a": 1}}, "$.messages", "is required"),
        ({"messages": []}, "$.messages", "at least 1"),
        ({"messages": [message(i) for i in range(MAX_BATCH_MESSAGES + 1)]}, "$.messages", "the limit is 100"),
        ({"messages": [message(0)], "dryRun": True}, "$.dryRun", "is not allowed"),
    ],
)
def test_a_malformed_envelope_answers_400_naming_the_field(body: Any, path: str, text: str) -> None:
    # When the batch request is not {"messages": [1 to 100 items]}
    status, error = answer(ingest.validate(batch_state(body), SETTINGS))
    # Then the whole request is a 400 naming the field
    assert status == 400
    assert error["error"]["code"] == "VALIDATION_ERROR"
    assert error["error"]["requestId"] == "req"
    detail = error["error"]["details"][0]
    assert detail["path"] == path and text in detail["message"]


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_a_body_nested_64_levels_is_accepted_in_a_batch_as_alone() -> None:
    # Given a batch whose second message's JSON body nests 64 levels, the documented limit
    body = {"messages": [message(0), message(1, body=nested(64))]}
    # When it is validated
    state = ingest.validate(batch_state(body), SETTINGS)
    # Then it is not refused: both messages go on to be stored
    assert "response" not in state, state.get("response")


def test_a_body_nested_65_levels_answers_400_naming_its_message_and_field() -> None:
    # Given a batch whose second message's JSON body nests one level more than the limit
    body = {"messages": [message(0), message(1, body=nested(65))]}
    # When it is validated
    status, error = answer(ingest.validate(batch_state(body), SETTINGS))
    # Then the whole request is a 400 naming that message's body, as POST /messages names `$.body`
    assert (status, error["error"]["code"]) == (400, "VALIDATION_ERROR")
    assert error["error"]["details"] == [{"path": "$.messages[1].body", "message": "is nested deeper than 64 levels"}]


def test_a_request_over_the_batch_limit_answers_413() -> None:
    # When the request is one byte over the batch limit
    state = ingest.validate(batch_state(b" " * (MAX_BATCH_REQUEST_BYTES + 1)), SETTINGS)
    # Then it is refused as too large, without being parsed
    status, error = answer(state)
    assert status == 413 and error["error"]["details"][0]["path"] == "$"


def test_a_batch_that_would_not_fit_a_state_answers_413() -> None:
    # Given messages whose escaped bodies together exceed what a state holds, in a request under the limit
    body = {"messages": [message(i, body={"q": "\\" * 2_500}) for i in range(30)]}
    assert len(json.dumps(body)) < MAX_BATCH_REQUEST_BYTES
    # When it is validated
    status, error = answer(ingest.validate(batch_state(body), SETTINGS))
    # Then the whole batch is too large
    assert status == 413
    assert error["error"]["details"][0]["path"] == "$.messages"


def test_a_request_without_an_authenticated_sender_is_forbidden() -> None:
    # When a batch comes without an authenticated sender
    status, error = answer(ingest.validate(batch_state({"messages": [message(0)]}, sender=""), SETTINGS))
    # Then the whole request is refused, as a single message would be
    assert status == 403 and error["error"]["code"] == "FORBIDDEN"


# -- validation of each message -----------------------------------------------------------------------


def test_each_message_is_validated_alone_and_keeps_its_place() -> None:
    # Given valid messages around an invalid one and one of another sender
    body = {"messages": [message(0), message(1, targetUrl="ftp://x"), message(2, senderId="other"), message(3)]}
    # When the batch is validated
    state = ingest.validate(batch_state(body), SETTINGS)
    # Then the valid ones go on with their own request ids, the others carry the single path's answer
    items = state["items"]
    assert [item.get("requestId") for item in items] == ["req:0", None, None, "req:3"]
    assert items[0]["message"]["body"] == '{"n":0}' and items[0]["contentHash"]
    assert set(items[1]) == {"response"} and items[1]["response"]["statusCode"] == 400
    assert json.loads(items[1]["response"]["body"])["error"]["requestId"] == "req:1"
    assert items[2]["response"]["statusCode"] == 403


def test_a_batch_of_rejected_messages_is_answered_at_once() -> None:
    # When no message of the batch is valid
    state = ingest.validate(batch_state({"messages": [message(0, timestamp="no"), {}]}), SETTINGS)
    # Then the answer is complete after validation: 200 with a 400 per message
    status, body = answer(state)
    assert status == 200
    assert [result["statusCode"] for result in body["results"]] == [400, 400]
    assert body["results"][1]["body"]["error"]["code"] == "VALIDATION_ERROR"


# -- the state as each step's handler reads it -----------------------------------------------------


def test_a_state_read_by_the_next_step_is_the_json_it_was() -> None:
    # Given Validate's answer for a batch with a valid and a rejected message
    state = ingest.validate(batch_state({"messages": [message(0), message(1, targetUrl="ftp://x")]}), SETTINGS)
    text = json.dumps(state)
    # When the next step's handler reads it (and StorePending's, with the run's ARN)
    read = validated_state(json.loads(text))
    with_arn = validated_state({**json.loads(text), "executionArn": "arn:run"})
    # Then it is the same JSON, byte for byte, ARN and all
    assert json.dumps(read) == text
    assert json.dumps(with_arn) == json.dumps({**json.loads(text), "executionArn": "arn:run"})


def test_a_stored_state_read_by_enqueue_is_the_json_it_was() -> None:
    # Given StorePending's answer: a stored message and an answered one
    state = {
        "requestId": "req",
        "shape": "batch",
        "items": [
            {k: v for k, v in stored_item("m-0", 0).items() if k not in ("contentHash", "ttl")},
            {"response": {"statusCode": 409, "body": "{}"}},
        ],
        "executionArn": "arn:run",
    }
    # When Enqueue's handler reads it, then it is the same JSON
    assert json.dumps(stored_state(state)) == json.dumps(state)


@pytest.mark.parametrize(
    ("state", "field"),
    [
        ({"shape": "batch", "items": [{"response": {"statusCode": 400, "body": "{}"}}]}, "requestId"),
        ({"requestId": "req", "shape": "many", "items": [{"response": {"statusCode": 400, "body": "{}"}}]}, "shape"),
        ({"requestId": "req", "shape": "batch", "items": []}, "items"),
        (
            {"requestId": "req", "shape": "batch", "items": [{"requestId": "r", "message": {}, "contentHash": "h"}]},
            "senderId",
        ),
        (
            {
                "requestId": "req",
                "shape": "batch",
                "items": [{"requestId": "r", "message": {"senderId": "a", "messageId": "m"}}],
            },
            "contentHash",
        ),
        ({"requestId": "req", "shape": "batch", "items": [{"response": {"body": "{}"}}]}, "statusCode"),
    ],
)
def test_a_state_that_is_not_a_steps_shape_is_refused_naming_the_field(state: dict[str, Any], field: str) -> None:
    # When a step's handler is handed a state no step answers, it refuses it naming the field
    with pytest.raises(PayloadInvalid, match=field):
        validated_state(state)


def test_validates_input_reads_an_empty_sender_as_none_and_a_missing_request_id_as_unknown() -> None:
    # When Validate's input has an empty senderId (no authorizer) and no requestId
    request = IngestRequest.from_event({"shape": "message", "senderId": "", "bodyBase64": "e30="})
    # Then there is no authenticated sender, and answers name the request "unknown"
    assert (request.sender_id, request.request_id, request.shape) == (None, "unknown", RequestShape.MESSAGE)


# -- the steps over the items ------------------------------------------------------------------------


def pending(key: str, index: int) -> dict[str, Any]:
    return {"requestId": f"req:{index}", "message": {"senderId": "acme", "messageId": key}, "contentHash": "h"}


def test_results_stay_in_order_whatever_order_the_items_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a dedup step that answers some items, each after a random delay
    def slow_dedup(item: dict[str, Any], repository: Any, settings: Any) -> dict[str, Any]:
        time.sleep(random.uniform(0, 0.01))
        index = int(item["requestId"].split(":")[1])
        if index % 3 == 0:
            return {**item, "response": {"statusCode": 200, "body": json.dumps({"index": index})}}
        return item

    monkeypatch.setattr(ingest, "dedup_item", slow_dedup)
    items = [pending(f"m-{index}", index) for index in range(40)]
    # When the batch's dedup step runs
    state = ingest.dedup(
        validated_state({"requestId": "req", "shape": "batch", "items": items}), repository=None, settings=None
    )  # type: ignore[arg-type]
    # Then every item is in its place: the answered ones reduced to their answer, the others untouched
    for index, item in enumerate(state["items"]):
        if index % 3 == 0:
            assert item == {"response": {"statusCode": 200, "body": json.dumps({"index": index})}}
        else:
            assert item == items[index]


def test_answered_items_are_skipped_and_a_fully_answered_batch_is_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a batch where one item is answered already and the step answers the other
    calls: list[str] = []

    def dedup(item: dict[str, Any], repository: Any, settings: Any) -> dict[str, Any]:
        calls.append(item["requestId"])
        return {**item, "response": {"statusCode": 409, "body": '{"error":{"code":"MESSAGE_ID_CONFLICT"}}'}}

    monkeypatch.setattr(ingest, "dedup_item", dedup)
    items = [{"response": {"statusCode": 400, "body": '{"error":{}}'}}, pending("m-1", 1)]
    # When the dedup step runs
    state = ingest.dedup(
        validated_state({"requestId": "req", "shape": "batch", "items": items}), repository=None, settings=None
    )  # type: ignore[arg-type]
    # Then only the pending item went through it, and the state is now the whole answer, in order
    assert calls == ["req:1"]
    assert "items" not in state
    status, body = answer(state)
    assert status == 200
    assert body == {
        "results": [
            {"statusCode": 400, "body": {"error": {}}},
            {"statusCode": 409, "body": {"error": {"code": "MESSAGE_ID_CONFLICT"}}},
        ]
    }


def test_a_twin_is_stored_after_its_first_occurrence(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a store step that records when each item started and finished
    log: list[tuple[str, str]] = []
    lock = threading.Lock()

    def store(item: dict[str, Any], repository: Any, settings: Any, arn: Any = None, now: Any = None) -> dict[str, Any]:
        with lock:
            log.append(("start", item["requestId"]))
        time.sleep(0.01)
        with lock:
            log.append(("end", item["requestId"]))
        return {**item, "acceptedAt": "a", "expiresAt": "e", "ttl": 1}

    monkeypatch.setattr(ingest, "store_item", store)
    # And a batch with one id three times among others
    keys = ["a", "twin", "b", "twin", "c", "twin"]
    items = [pending(key, index) for index, key in enumerate(keys)]
    # When the batch's store step runs
    state = ingest.store(
        validated_state({"requestId": "req", "shape": "batch", "items": items}), repository=None, settings=SETTINGS
    )  # type: ignore[arg-type]
    # Then each occurrence of the twin starts only after the previous one has finished
    order = {entry: position for position, entry in enumerate(log)}
    assert order[("end", "req:1")] < order[("start", "req:3")]
    assert order[("end", "req:3")] < order[("start", "req:5")]
    # And every item comes back stored, in order
    assert [item["requestId"] for item in state["items"]] == [f"req:{index}" for index in range(6)]
    assert all(item["ttl"] == 1 for item in state["items"])


class FakeQueue:
    """send_keys answers from a script: per call, the keys it refuses."""

    def __init__(self, refuse: list[set[str]]) -> None:
        self.refuse = refuse
        self.calls: list[list[str]] = []

    def send_keys(self, keys: list[MessageKey]) -> list[str | None]:
        self.calls.append([key.message_id for key in keys])
        refused = self.refuse[len(self.calls) - 1] if len(self.calls) <= len(self.refuse) else set()
        return [None if key.message_id in refused else f"q-{key.message_id}" for key in keys]


def stored_item(key: str, index: int) -> dict[str, Any]:
    return {**pending(key, index), "acceptedAt": "2026-01-31T12:00:00Z", "expiresAt": "2026-03-02T12:00:00Z", "ttl": 9}


def test_enqueue_sends_the_stored_items_together_and_answers_each(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given stored items and one already answered, and a queue that refuses one item
    enqueued: list[str] = []
    failed: list[tuple[str, str | None]] = []

    def fake_enqueued(item: dict[str, Any]) -> dict[str, Any]:
        enqueued.append(item["message"]["messageId"])
        return {"requestId": item["requestId"], "response": {"statusCode": 202, "body": "{}"}}

    def fake_failed(item: dict[str, Any], arn: str | None, repository: Any, now: Any) -> None:
        failed.append((item["requestId"], arn))

    monkeypatch.setattr(ingest, "_enqueued", fake_enqueued)
    monkeypatch.setattr(ingest, "record_enqueue_failed", fake_failed)
    fake = FakeQueue([{"m-2"}])
    items = [stored_item("m-0", 0), {"response": {"statusCode": 400, "body": "{}"}}, stored_item("m-2", 2)]
    # When the batch's enqueue step runs
    state = ingest.enqueue(
        stored_state({"requestId": "req", "shape": "batch", "items": items, "executionArn": "arn:run"}),
        repository=None,  # type: ignore[arg-type]
        queue=fake,  # type: ignore[arg-type]
    )
    # Then the stored items went in one call (the queue sends what SQS refused once more itself)
    assert fake.calls == [["m-0", "m-2"]]
    # And the taken one is answered, the refused one is a failed enqueue of this run
    assert enqueued == ["m-0"]
    assert failed == [("req:2", "arn:run")]
    # And the answer says so, in order: the refused one is the single path's SYSTEM_ERROR
    status, body = answer(state)
    assert status == 200
    assert [result["statusCode"] for result in body["results"]] == [202, 400, 500]
    assert body["results"][2]["body"]["error"] == {
        "code": "SYSTEM_ERROR",
        "message": ingest.SYSTEM_ERROR_MESSAGE,
        "requestId": "req:2",
    }


@pytest.mark.parametrize("shape", ["batch", "message"])
def test_enqueue_fails_the_step_when_the_queue_takes_nothing(monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    # Given a queue that refuses everything
    failed: list[str] = []
    monkeypatch.setattr(
        ingest, "record_enqueue_failed", lambda item, arn, repository, now: failed.append(item["requestId"])
    )
    fake = FakeQueue([{"m-0", "m-1"}])
    items = (
        [stored_item("m-0", 0), stored_item("m-1", 1)]
        if shape == "batch"
        else [{**stored_item("m-0", 0), "requestId": "req"}]
    )
    # When the enqueue step runs, it fails for the machine to retry, each message recorded first
    with pytest.raises(QueueUnavailable):
        ingest.enqueue(stored_state({"requestId": "req", "shape": shape, "items": items}), repository=None, queue=fake)  # type: ignore[arg-type]
    assert failed == (["req:0", "req:1"] if shape == "batch" else ["req"])


def test_send_keys_sends_one_key_alone_and_several_together_sending_refused_ones_once_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a delivery queue whose batch sends refuse m-2 on the first call
    delivery = queue.DeliveryQueue("https://queue")
    batches: list[list[str]] = []
    singles: list[str] = []

    def send_batch(keys: list[MessageKey], run: int = 0) -> list[str | None]:
        batches.append([key.message_id for key in keys])
        return [None if len(batches) == 1 and key.message_id == "m-2" else f"q-{key.message_id}" for key in keys]

    def send(key: MessageKey, run: int = 0) -> str:
        singles.append(key.message_id)
        raise QueueUnavailable("down")

    monkeypatch.setattr(delivery, "send_batch", send_batch)
    monkeypatch.setattr(delivery, "send", send)
    keys = [MessageKey("acme", f"m-{index}") for index in range(3)]
    # When several keys are sent, the refused one goes once more, and each has its queue id
    assert delivery.send_keys(keys) == ["q-m-0", "q-m-1", "q-m-2"]
    assert batches == [["m-0", "m-1", "m-2"], ["m-2"]]
    # And one key goes with SendMessage: an outage is no id, not an exception
    assert delivery.send_keys(keys[:1]) == [None]
    assert singles == ["m-0"]


# -- a single message: a batch of one that answers with its own answer ---------------------------------


def test_a_single_message_is_one_item_with_the_requests_own_id() -> None:
    # When one message is validated
    state = ingest.validate(single_state(message(0)), SETTINGS)
    # Then it is the one item, under the request's id (its RECEIVED and its dedup carry that id)
    assert state["shape"] == RequestShape.MESSAGE
    (item,) = state["items"]
    assert item["requestId"] == "req" and item["message"]["messageId"] == "m-0" and item["contentHash"]


def test_a_rejected_single_message_is_the_whole_answer_not_a_result_list() -> None:
    # When one invalid message is validated
    status, error = answer(ingest.validate(single_state(message(0, targetUrl="ftp://x")), SETTINGS))
    # Then its own 400 is the answer, as POST /messages gives it
    assert status == 400 and error["error"]["code"] == "VALIDATION_ERROR" and error["error"]["requestId"] == "req"


def test_a_single_message_over_the_state_limit_answers_413_naming_its_body() -> None:
    # When one message within the byte limits, whose escaped body would not fit a state, is validated
    document = message(0, headers={"X-E": "é" * 4_000}, body="😀" * (SETTINGS.max_body_bytes // 4))
    raw = json.dumps(document, ensure_ascii=False).encode()
    status, error = answer(ingest.validate(single_state(raw), SETTINGS))
    # Then it is the single path's 413 on $.body
    assert status == 413 and error["error"]["details"][0]["path"] == "$.body"


def test_a_single_messages_answer_is_its_items_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a dedup that finds the message stored
    duplicate = {"statusCode": 200, "body": '{"duplicate":true}'}
    monkeypatch.setattr(ingest, "dedup_item", lambda item, repository, settings: {**item, "response": duplicate})
    # When a single message's dedup step runs
    state = ingest.dedup(
        validated_state({"requestId": "req", "shape": "message", "items": [pending("m-0", 0)]}),
        repository=None,  # type: ignore[arg-type]
        settings=None,  # type: ignore[arg-type]
    )
    # Then the request's answer is that item's answer itself
    assert state == {"requestId": "req", "response": duplicate}


class FakeSqs:
    def __init__(self, failing_ids: set[str], raise_on_call: int | None = None) -> None:
        self.failing_ids = failing_ids
        self.raise_on_call = raise_on_call
        self.calls: list[list[dict[str, str]]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        self.calls.append(Entries)
        if self.raise_on_call == len(self.calls):
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessageBatch")
        successful = [
            {"Id": e["Id"], "MessageId": "sqs-" + e["Id"]} for e in Entries if e["Id"] not in self.failing_ids
        ]
        failed = [
            {"Id": e["Id"], "Code": "InternalError", "SenderFault": False}
            for e in Entries
            if e["Id"] in self.failing_ids
        ]
        return {"Successful": successful, "Failed": failed}


def test_send_batch_sends_ten_a_call_and_reports_each_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an SQS that refuses entry 4 and fails its whole third call
    sqs = FakeSqs(failing_ids={"4"}, raise_on_call=3)
    monkeypatch.setattr(queue.aws, "client", lambda service: sqs)
    keys = [MessageKey("acme", f"m-{index}") for index in range(25)]
    # When 25 keys are sent
    ids = queue.DeliveryQueue("https://queue").send_batch(keys)
    # Then they went 10, 10 and 5 a call, each body the key and run 0
    assert [len(call) for call in sqs.calls] == [10, 10, 5]
    assert json.loads(sqs.calls[0][0]["MessageBody"]) == {"senderId": "acme", "messageId": "m-0", "run": 0}
    # And each key has its SQS message id, or None where SQS did not take it
    assert ids[:4] == ["sqs-0", "sqs-1", "sqs-2", "sqs-3"]
    assert ids[4] is None
    assert ids[19] == "sqs-19"
    assert ids[20:] == [None] * 5
