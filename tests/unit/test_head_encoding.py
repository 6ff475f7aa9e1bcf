"""The head as stored: every event survives the compact encoding, and the head stays small.

Why it matters: DynamoDB bills each update of the head by its whole size (1 KB per write unit),
so the success path's head must stay under 1 KB while `GET /messages/{id}` shows every detail.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bench.cost_model import item_size
from functions.adapters.messages.items import decode_events, encode_content, encode_event
from functions.adapters.messages.table import to_item
from functions.domain.model import Event, EventType, MessageKey

AT = datetime(2026, 11, 30, 20, 0, 0, 250_000, tzinfo=UTC)
FAST = "arn:aws:states:eu-west-1:123456789012:express:RelayFastLane-9z8y:order-42-r0-fast-ab12cd34-0f1e2d3c:5b6a"


def _round_trip(events: list[Event]) -> tuple[Event, ...]:
    encoded, previous = [], None
    for event in events:
        encoded.append(encode_event(event, previous))
        if event.type == EventType.ATTEMPT_STARTED:
            previous = str(event.details.get("executionArn") or previous)
    return decode_events(encoded)


def test_every_event_reads_back_as_written_even_with_the_lane_arn_stored_once() -> None:
    # Given a fast lane's two attempts (the same execution) and a detailed failure
    events = [
        Event(EventType.RECEIVED, AT, 0, None, {"requestId": "req-1"}),
        Event(EventType.ATTEMPT_STARTED, AT, 0, 1, {"lane": "fast", "executionArn": FAST}),
        Event(EventType.ATTEMPT_FAILED, AT, 0, 1, {"error": "HttpStatus", "statusCode": 503, "retryAfterSeconds": 2}),
        Event(EventType.ATTEMPT_STARTED, AT + timedelta(seconds=1), 0, 2, {"lane": "fast", "executionArn": FAST}),
        Event(EventType.DELIVERED, AT + timedelta(seconds=1), 0, 2, {"statusCode": 200, "durationMs": 12}),
        Event(EventType.REPLAYED, AT + timedelta(hours=1), 1, 2, {"previousStatus": "DELIVERED"}),
    ]
    # When they are encoded and decoded
    decoded = _round_trip(events)
    # Then each reads back with its type, time, run, attempt and details (the ARN filled in again)
    assert [event.to_dict() for event in decoded] == [event.to_dict() for event in events]
    assert [event.run for event in decoded] == [0, 0, 0, 0, 0, 1]


def test_the_success_path_head_events_and_a_1kb_message_stay_within_one_write_unit_each() -> None:
    # Given the events of a message delivered at its first attempt
    events = [
        Event(
            EventType.RECEIVED, AT, 0, None, {"requestId": "0f8b3c2e-6a57-4d7a-9a51-3c0f3c9b2f11", "executionArn": FAST}
        ),
        Event(EventType.ENQUEUED, AT, 0, None, {"queueMessageId": "5e0f1f8a-0b6c-4d38-9a7e-2b8e5b4f9c31"}),
        Event(EventType.ATTEMPT_STARTED, AT, 0, 1, {"lane": "inline"}),
        Event(EventType.DELIVERED, AT, 0, 1, {"statusCode": 200, "durationMs": 35}),
    ]
    # When they are stored
    stored = to_item({"ev": [encode_event(event) for event in events]})
    # Then they take a few hundred bytes (DynamoDB's item size), leaving the head well under 1 KB
    assert item_size(stored) < 400
    # And a 1 KB JSON message is stored compressed, under 1 KB with its keys
    message = {
        "messageId": "order-42",
        "senderId": "shop",
        "targetUrl": "https://hooks.example.com/orders",
        "body": '{"order": {"id": 42, "items": [' + ",".join(['{"sku": "A-1", "qty": 1}'] * 36) + "]}}",
    }
    assert len(json.dumps(message)) > 1000
    key = MessageKey("shop", "order-42").partition_key
    content = {"pk": {"S": key}, "sk": {"S": "C"}, "ttl": {"N": "1796068800"}, "z": {"B": encode_content(message)}}
    assert item_size(content) < 1000
