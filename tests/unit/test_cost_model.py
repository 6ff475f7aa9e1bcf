"""The cost model's arithmetic (bench/cost_model.py): rounding of capacity units and prices."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.common import PRICES_PATH
from bench.cost_model import (
    ERROR_LEVEL_EVENTS,
    LOG_EVENT_OVERHEAD_BYTES,
    IndexSpec,
    Usage,
    execution_log_bytes,
    expected_wait_seconds,
    express_gb_seconds,
    index_write_units,
    item_size,
    lambda_billed_ms,
    line_items,
    load_prices,
    log_record,
    number_size,
    read_units,
    slow_lane_transitions,
    sqs_requests,
    total,
    tracing_costs,
    update_write_units,
    write_units,
)
from relay.definitions import retry_schedule

BY_STATUS = IndexSpec("byStatus", ("gsi1pk", "gsi1sk"), "ALL")
DUE = IndexSpec("due", ("dueShard", "dueAt"), "KEYS_ONLY")
KEYS = ("pk", "sk")


def head(**extra: str) -> dict[str, dict[str, str]]:
    item = {"pk": {"S": "MSG#a#1"}, "sk": {"S": "MSG"}, "status": {"S": "PENDING"}}
    item.update({name: {"S": value} for name, value in extra.items()})
    return item


@pytest.mark.parametrize(("size", "units"), [(0, 1), (1, 1), (1024, 1), (1025, 2), (4096, 4), (400 * 1024, 400)])
def test_a_write_unit_is_each_started_kilobyte(size: int, units: int) -> None:
    assert write_units(size) == units
    assert write_units(size, transactional=True) == 2 * units


@pytest.mark.parametrize(
    ("size", "consistent", "units"),
    [(0, True, 1.0), (4096, True, 1.0), (4097, True, 2.0), (0, False, 0.5), (4097, False, 1.0)],
)
def test_a_read_unit_is_each_started_4_kilobytes_halved_when_eventual(
    size: int, consistent: bool, units: float
) -> None:
    assert read_units(size, consistent) == units


def test_item_size_counts_names_values_numbers_and_nesting() -> None:
    assert item_size({"pk": {"S": "abc"}}) == 5
    assert item_size({"ok": {"BOOL": True}}) == 3
    assert number_size("0") == 1
    assert number_size("12345") == 4  # 5 significant digits -> 3 bytes + 1
    assert number_size("1798566117") == 6
    # a map: 3 bytes + per element (name + value + 1)
    assert item_size({"m": {"M": {"a": {"S": "xy"}}}}) == 1 + 3 + (1 + 2 + 1)


def test_an_update_is_charged_on_the_larger_image() -> None:
    small, large = head(), head(lastError="x" * 1100)
    assert update_write_units(small, large) == 2
    assert update_write_units(large, small) == 2
    assert update_write_units(None, small) == 1


def test_index_writes_per_changed_entry() -> None:
    pending = head(gsi1pk="S#PENDING", gsi1sk="t#1")
    delivering = head(gsi1pk="S#DELIVERING", gsi1sk="t#1")
    assert index_write_units(None, pending, BY_STATUS, KEYS) == 1  # new entry
    assert index_write_units(pending, delivering, BY_STATUS, KEYS) == 2  # key change: delete + put
    assert index_write_units(pending, {**pending, "note": {"S": "x"}}, BY_STATUS, KEYS) == 1  # ALL projection
    assert index_write_units(pending, pending, BY_STATUS, KEYS) == 0
    assert index_write_units(pending, head(), BY_STATUS, KEYS) == 1  # leaves the index


def test_keys_only_index_ignores_other_attributes() -> None:
    due = {**head(), "dueShard": {"S": "DUE#1"}, "dueAt": {"N": "100"}}
    assert index_write_units(due, {**due, "note": {"S": "x"}}, DUE, KEYS) == 0
    assert index_write_units(due, {**due, "dueAt": {"N": "200"}}, DUE, KEYS) == 2


def test_sqs_bills_each_started_64_kilobyte_chunk() -> None:
    assert sqs_requests(100) == 1
    assert sqs_requests(65_536) == 1
    assert sqs_requests(65_537) == 2


def test_lambda_and_express_billing_increments() -> None:
    assert lambda_billed_ms(0.2) == 1
    assert lambda_billed_ms(12.01) == 13
    assert express_gb_seconds(0.05) == pytest.approx(0.1 * 64 / 1024)
    assert express_gb_seconds(0.1) == pytest.approx(0.1 * 64 / 1024)
    assert express_gb_seconds(0.1001) == pytest.approx(0.2 * 64 / 1024)
    assert expected_wait_seconds((5.0, 10.0, 20.0), 3, full_jitter=True) == 17.5
    assert expected_wait_seconds((5.0, 10.0, 20.0), 2, full_jitter=False) == 15.0


def test_slow_lane_transitions_match_the_default_policy() -> None:
    schedule = retry_schedule("delivery_slow.asl.json")
    # Wait + Deliver + 7 retries + MarkFailed
    assert slow_lane_transitions(schedule.initial_wait_seconds, schedule.attempts) == 1 + 1 + 7 + 1


def test_prices_multiply_per_million() -> None:
    prices = load_prices(PRICES_PATH)
    usage = Usage(
        api_requests=1,
        lambda_invocations={"f": 2},
        lambda_billed_ms={"f": 2000},
        lambda_memory_mb={"f": 1024},
        express_requests=1,
        standard_transitions=19,
        dynamodb_write_units=10,
        dynamodb_read_units=4,
        sqs_requests=3,
    )
    items = {f"{item.service}: {item.item}": item.usd_per_million for item in line_items(usage, prices)}
    assert items["API Gateway: REST requests"] == pytest.approx(3.50)
    assert items["Lambda: requests"] == pytest.approx(0.40)
    assert items["Lambda: duration (arm64)"] == pytest.approx(2 * 0.0000133334 * 1_000_000)
    assert items["Step Functions: Express requests"] == pytest.approx(1.00)
    assert items["Step Functions: Standard transitions"] == pytest.approx(475.0)
    assert items["DynamoDB: write request units (table + GSIs)"] == pytest.approx(6.25)
    assert items["DynamoDB: read request units"] == pytest.approx(0.50)
    assert items["SQS: requests (64 KB chunks)"] == pytest.approx(1.20)
    assert total(line_items(usage, prices), "observability") == 0


# -- relay.tracing: Step Functions execution logs -------------------------------------------------------

ARN = "arn:aws:states:us-east-1:123456789012:express:relay-ingest:name:id"
BODY = '{"message":"' + "x" * 1000 + '"}'


def history_event(kind: str, number: int, **details: str) -> dict[str, Any]:
    field = kind[0].lower() + kind[1:] + "EventDetails"
    return {"id": number, "previousEventId": number - 1, "type": kind, field: dict(details)}


def successful_run() -> list[dict[str, Any]]:
    """ExecutionStarted, a task that succeeds, ExecutionSucceeded: each event carries the 1 KB state."""
    return [
        history_event("ExecutionStarted", 1, input=BODY),
        history_event("TaskStateEntered", 2, name="Deliver", input=BODY),
        history_event("TaskScheduled", 3, resource="invoke", parameters=BODY),
        history_event("TaskSucceeded", 4, resource="invoke", output=BODY),
        history_event("TaskStateExited", 5, name="Deliver", output=BODY),
        history_event("ExecutionSucceeded", 6, output=BODY),
    ]


def failed_run() -> list[dict[str, Any]]:
    return [
        history_event("ExecutionStarted", 1, input=BODY),
        history_event("TaskFailed", 2, error="DeliveryRejected", cause="HTTP 410"),
        history_event("ExecutionFailed", 3, error="DeliveryRejected", cause="HTTP 410"),
    ]


def test_error_level_logs_nothing_of_a_successful_run_and_the_failures_of_a_failed_one() -> None:
    # Given a successful and a failed run
    # When they are logged at ERROR with data (relay.tracing: errors)
    # Then the successful run writes nothing and the failed one only its two failure events
    assert execution_log_bytes(successful_run(), ARN, "ERROR", include_data=True) == 0
    failed = execution_log_bytes(failed_run(), ARN, "ERROR", include_data=True)
    records = [log_record(event, ARN, True) for event in failed_run()[1:]]
    assert failed == sum(len(json.dumps(r, separators=(",", ":"))) + LOG_EVENT_OVERHEAD_BYTES for r in records)
    assert {"TaskFailed", "ExecutionFailed"} <= ERROR_LEVEL_EVENTS
    assert not {"ExecutionStarted", "ExecutionSucceeded", "TaskSucceeded"} & ERROR_LEVEL_EVENTS


def test_all_level_logs_every_event_with_its_data() -> None:
    # Given a successful run whose six events each carry a 1 KB state
    # When it is logged at ALL with data (relay.tracing: all)
    size = execution_log_bytes(successful_run(), ARN, "ALL", include_data=True)
    # Then all six events are written, the data six times over
    assert 6 * len(BODY) < size < 6 * (len(BODY) + 400)
    # And without data the same events are small
    assert execution_log_bytes(successful_run(), ARN, "ALL", include_data=False) < 6 * 400


def test_a_log_record_has_the_cloudwatch_shape_and_drops_data_when_asked() -> None:
    # Given a task's result event
    event = history_event("TaskSucceeded", 4, resource="invoke", output=BODY)
    # When it is written without execution data
    record = log_record(event, ARN, include_data=False)
    # Then the record names the event and the run, without the output; with data the output is kept
    assert record["type"] == "TaskSucceeded" and record["execution_arn"] == ARN
    assert record["details"] == {"resource": "invoke"}
    assert log_record(event, ARN, include_data=True)["details"]["output"] == BODY


def test_tracing_all_is_priced_per_million_messages_against_the_default() -> None:
    # Given 52,000 bytes of Step Functions logs per message with `all` and none with `errors`
    prices = load_prices(PRICES_PATH)
    per_gb = prices["cloudwatch_logs"]["ingestion_per_gb"]
    # When each mode is priced, with the default's total at $30 per million
    costs = {cost.mode: cost for cost in tracing_costs({"errors": 0.0, "all": 52_000.0}, "errors", 30.0, prices)}
    # Then `all` costs its logs' ingestion per million messages, on top of the default's total
    logs = 52_000 / 1024**3 * per_gb * 1_000_000
    assert costs["all"].step_functions_logs_usd_per_million == pytest.approx(logs)
    assert costs["all"].all_usd_per_million == pytest.approx(30.0 + logs)
    assert costs["errors"].all_usd_per_million == pytest.approx(30.0)
