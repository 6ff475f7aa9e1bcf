"""The delivery steps' payloads (functions/services/delivery/payloads.py): parsed once, with clear
errors, and written back with the JSON keys the state machines read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSEvent

from functions.domain.model import MessageKey, Status, fencing_token
from functions.services.delivery.lane_endings import deferral_seconds
from functions.services.delivery.payloads import (
    AttemptOutcome,
    AttemptResult,
    EndingOutcome,
    EndingResult,
    Lane,
    LaneEvent,
    PayloadInvalid,
    QueuedRecord,
    RunInput,
)

STATE_MACHINES = Path(__file__).resolve().parents[2] / "statemachines"
KEY = MessageKey("sender-1", "message-1")
# A sample value for every field a lane task may pass (ASL `Payload`, without its ".$" suffixes).
SAMPLES: dict[str, Any] = {
    "senderId": "sender-1",
    "messageId": "message-1",
    "run": 2,
    "lane": "slow",
    "owner": "run-name",
    "executionArn": "arn:aws:states:us-east-1:123456789012:execution:m:run-name",
    "retryCount": 1,
    "failure": {"Error": "DeliveryRetryable", "Cause": json.dumps({"errorMessage": "HTTP 503"})},
    "waitSeconds": 30,
    "giveUp": True,
    "reason": "expired",
}


def _lane_tasks() -> list[tuple[str, str, dict[str, Any]]]:
    tasks = []
    for path in sorted(STATE_MACHINES.glob("delivery_*.asl.json")):
        for name, state in json.loads(path.read_text(encoding="utf-8"))["States"].items():
            payload = state.get("Parameters", {}).get("Payload")
            if state["Type"] == "Task" and payload is not None:
                tasks.append((path.name, name, payload))
    return tasks


@pytest.mark.parametrize(("machine", "state", "payload"), _lane_tasks())
def test_every_lane_task_payload_parses(machine: str, state: str, payload: dict[str, Any]) -> None:
    # Given what a lane task passes its function (each path replaced by a sample of its field)
    event = {
        name.removesuffix(".$"): SAMPLES[name.removesuffix(".$")] if name.endswith(".$") else value
        for name, value in payload.items()
    }
    # Then it parses into a LaneEvent that keeps every field
    parsed = LaneEvent.from_event(event)
    assert parsed.key == KEY
    if "lane" in event:
        assert parsed.lane == Lane(event["lane"])
    if "owner" in event:
        assert parsed.tokens == (fencing_token(SAMPLES["owner"]), fencing_token(SAMPLES["executionArn"]))
    assert parsed.give_up is bool(event.get("giveUp"))


def test_a_lane_event_reads_every_field() -> None:
    event = LaneEvent.from_event(SAMPLES)
    assert (event.key, event.run, event.lane, event.retry_count) == (KEY, 2, Lane.SLOW, 1)
    assert event.failure is not None and event.failure.error == "DeliveryRetryable"
    assert event.failure.message == "HTTP 503"
    assert (event.wait_seconds, event.give_up, event.reason) == (30, True, "expired")


def test_a_lane_event_defaults_to_the_fast_lane_with_no_tokens() -> None:
    event = LaneEvent.from_event({"senderId": "s", "messageId": "m"})
    assert (event.run, event.lane, event.tokens, event.failure, event.wait_seconds) == (0, Lane.FAST, (), None, None)


@pytest.mark.parametrize(
    ("event", "names"),
    [
        ({"messageId": "m"}, "senderId"),
        ({"senderId": "s", "messageId": 7}, "messageId"),
        ({"senderId": "s", "messageId": "m", "run": "two"}, "run"),
        ({"senderId": "s", "messageId": "m", "lane": "express"}, "lane"),
        ({"senderId": "s", "messageId": "m", "failure": "boom"}, "failure"),
        ({"senderId": "s", "messageId": "m", "waitSeconds": [1]}, "waitSeconds"),
    ],
)
def test_a_malformed_lane_event_is_refused_naming_the_field(event: dict[str, Any], names: str) -> None:
    with pytest.raises(PayloadInvalid, match=names):
        LaneEvent.from_event(event)


def test_run_inputs_keep_the_state_machines_keys() -> None:
    assert RunInput(KEY, 1).to_dict() == {"senderId": "sender-1", "messageId": "message-1", "run": 1}
    assert RunInput(KEY, 1, 0).to_dict()["waitSeconds"] == 0
    assert RunInput.from_event(RunInput(KEY, 3, 40).to_dict()) == RunInput(KEY, 3, 40)
    with pytest.raises(PayloadInvalid, match="not JSON"):
        RunInput.from_body("{")


def test_queued_records_come_from_powertools_sqs_records() -> None:
    body = json.dumps({"senderId": "sender-1", "messageId": "message-1", "run": 1})
    raw = {"messageId": "sqs-1", "body": body, "attributes": {"SentTimestamp": "1767225600000"}}
    bare = {"messageId": "sqs-2", "body": body}
    first, second = [QueuedRecord.from_sqs(record) for record in SQSEvent({"Records": [raw, bare]}).records]
    assert first == QueuedRecord("sqs-1", RunInput(KEY, 1), datetime(2026, 1, 1, tzinfo=UTC))
    assert second.sent_at is None


def test_results_answer_with_the_keys_the_result_selectors_read() -> None:
    delivered = AttemptResult(AttemptOutcome.DELIVERED, 1, 200).to_dict()
    assert delivered == {"outcome": "DELIVERED", "attempt": 1, "statusCode": 200}
    assert AttemptResult.skipped(Status.FAILED).to_dict() == {"outcome": "skipped", "status": "FAILED"}
    assert AttemptResult.skipped().to_dict() == {"outcome": "skipped", "status": None}
    assert EndingResult(EndingOutcome.FAILED, reason="r").to_dict() == {"outcome": "FAILED", "reason": "r"}
    moved = EndingResult(EndingOutcome.MOVED_TO_SLOW_LANE, execution_arn="arn").to_dict()
    assert moved == {"outcome": "MOVED_TO_SLOW_LANE", "executionArn": "arn"}
    assert EndingResult(EndingOutcome.RELEASED).to_dict() == {"outcome": "released"}


def test_a_deferred_hand_off_reads_its_wait() -> None:
    deferred = {"Error": "DeliveryDeferred", "Cause": json.dumps({"errorMessage": "45"})}
    assert deferral_seconds(LaneEvent(KEY, wait_seconds=12)) == 12
    assert deferral_seconds(LaneEvent.from_event({**KEY.to_dict(), "failure": deferred})) == 45
    assert deferral_seconds(LaneEvent.from_event({**KEY.to_dict(), "failure": SAMPLES["failure"]})) is None
