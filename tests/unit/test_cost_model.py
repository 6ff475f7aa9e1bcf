"""The cost model's arithmetic (bench/cost_model.py): rounding of capacity units and prices."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.common import PRICES_PATH
from bench.cost_model import (
    ERROR_LEVEL_EVENTS,
    GB,
    LOG_EVENT_OVERHEAD_BYTES,
    IndexSpec,
    Usage,
    amortised_usd_per_million,
    authorizer_misses_per_request,
    aws_like_ms,
    call_latency_ms,
    custom_metrics_usd_per_month,
    execution_log_bytes,
    expected_wait_seconds,
    express_gb_seconds,
    express_run_ms,
    http_request_bytes,
    index_write_units,
    item_size,
    lambda_billed_ms,
    line_items,
    load_prices,
    log_record,
    number_size,
    pitr_gb_months,
    read_units,
    request_path_and_all_in,
    slow_lane_transitions,
    sqs_requests,
    sweeps_usd_per_month,
    total,
    tracing_costs,
    update_write_units,
    waiting_gb_months,
    write_units,
    xray_sampled_fraction,
)
from stacks.definitions import retry_schedule

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


# -- stacks.tracing: Step Functions execution logs -------------------------------------------------------

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
    # When they are logged at ERROR with data (stacks.tracing: errors)
    # Then the successful run writes nothing and the failed one only its two failure events
    assert execution_log_bytes(successful_run(), ARN, "ERROR", include_data=True) == 0
    failed = execution_log_bytes(failed_run(), ARN, "ERROR", include_data=True)
    records = [log_record(event, ARN, True) for event in failed_run()[1:]]
    assert failed == sum(len(json.dumps(r, separators=(",", ":"))) + LOG_EVENT_OVERHEAD_BYTES for r in records)
    assert {"TaskFailed", "ExecutionFailed"} <= ERROR_LEVEL_EVENTS
    assert not {"ExecutionStarted", "ExecutionSucceeded", "TaskSucceeded"} & ERROR_LEVEL_EVENTS


def test_all_level_logs_every_event_with_its_data() -> None:
    # Given a successful run whose six events each carry a 1 KB state
    # When it is logged at ALL with data (stacks.tracing: all)
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


# -- the all-in extras ----------------------------------------------------------------------------------


def test_pitr_bills_the_table_bytes_for_as_long_as_the_ttl_keeps_them() -> None:
    # Given a message whose items take 3 KiB of the table and live 30 days (one 30-day month)
    # When its PITR usage is computed
    # Then it is 3 KiB for one month: 3 * 1024 / 1024**3 GB-months, $0.20/GB-month => $0.57/M
    gb_months = pitr_gb_months(3 * 1024, ttl_days=30)
    assert gb_months == pytest.approx(3 / 1024**2)
    assert gb_months * 0.20 * 1_000_000 == pytest.approx(0.5722, abs=1e-4)
    # a 15-day TTL halves it, a 60-day one doubles it
    assert pitr_gb_months(3 * 1024, ttl_days=15) == pytest.approx(gb_months / 2)
    assert pitr_gb_months(3 * 1024, ttl_days=60) == pytest.approx(gb_months * 2)


def test_an_http_request_counts_its_request_line_headers_blank_line_and_body() -> None:
    # Given a POST with two headers and a 10-byte body
    size = http_request_bytes("POST", "/ok", {"Host": "a.example", "Content-Length": "10"}, b"0123456789")
    # Then: "POST /ok HTTP/1.1\r\n" 19 + "Host: a.example\r\n" 17 + "Content-Length: 10\r\n" 20 + "\r\n" 2 + 10
    assert size == 19 + 17 + 20 + 2 + 10


def test_data_transfer_is_priced_per_gb_out() -> None:
    # Given 1,324 bytes per message to targets at $0.09/GB
    prices = load_prices(PRICES_PATH)
    items = {f"{item.service}: {item.item}": item for item in line_items(Usage(data_transfer_bytes=1324), prices)}
    # Then a million messages send 1.324e9 B = 1.2331 GiB: $0.111
    line = items["Data transfer: out to the internet (requests to targets)"]
    assert line.usd_per_million == pytest.approx(1324 * 1_000_000 / GB * 0.09)
    assert line.usd_per_million == pytest.approx(0.1110, abs=1e-4)
    assert line.group == "other"


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (0.0, 1.0),  # nobody else to share the answer with: every request misses
        (1.0, 1 / 301),  # 1 request/s for 300 s: one miss, then 300 hits
        (50.0, 1 / 15_001),
        (1_000_000 / (30 * 24 * 3600), 1 / (1 + 1_000_000 / 8640)),  # 1M/month: 0.3858/s, 1 in 116.7
    ],
)
def test_the_authorizer_misses_once_per_token_per_cache_period(rate: float, expected: float) -> None:
    assert authorizer_misses_per_request(rate, cache_seconds=300) == pytest.approx(expected)


def test_a_batch_of_100_shares_one_authorizer_answer_among_fewer_requests() -> None:
    # Given 50 messages/s sent as batches of 100: 0.5 requests/s, 1/100 request per message
    per_message = 0.01 * authorizer_misses_per_request(0.5, cache_seconds=300)
    # Then a miss every 151 requests, i.e. every 15,100 messages
    assert per_message == pytest.approx(1 / 15_100)
    # and without a cache every request calls the authorizer
    assert authorizer_misses_per_request(0.5, cache_seconds=0) == 1.0


def test_the_authorizer_line_adds_its_requests_duration_and_reads() -> None:
    prices = load_prices(PRICES_PATH)
    usage = Usage(authorizer_invocations=0.01, authorizer_billed_ms=0.01 * 8, authorizer_read_units=0.01 * 0.5)
    (line,) = [item for item in line_items(usage, prices) if item.item.startswith("authorizer")]
    # 0.01 x $0.20/M + 0.08 ms x 256 MB in GB-s x $0.0000133334 x 1M + 0.005 RRU x $0.125/M
    expected = 0.01 * 0.20 + 0.08 / 1000 * 0.25 * 0.0000133334 * 1_000_000 + 0.005 * 0.125
    assert line.usd_per_million == pytest.approx(expected)
    assert line.group == "other"


def test_xray_default_rule_records_one_a_second_and_five_percent_of_the_rest() -> None:
    assert xray_sampled_fraction(0.4) == 1.0  # below the reservoir: everything
    assert xray_sampled_fraction(1.0) == 1.0
    assert xray_sampled_fraction(50.0) == pytest.approx((1 + 0.05 * 49) / 50)  # 6.9%
    assert xray_sampled_fraction(5.0) == pytest.approx((1 + 0.05 * 4) / 5)  # 24%
    assert xray_sampled_fraction(0.0) == 0.0


def test_fixed_monthly_costs_spread_over_the_month_s_messages() -> None:
    # $0.30 a month over 1M messages is $0.30 per million; over 129.6M (50/s) $0.0023
    assert amortised_usd_per_million(0.30, 1_000_000) == pytest.approx(0.30)
    assert amortised_usd_per_million(0.30, 50 * 30 * 24 * 3600) == pytest.approx(0.30 / 129.6)
    assert amortised_usd_per_million(0.30, 0) == 0.0


def test_custom_metrics_are_a_monthly_cost_per_metric() -> None:
    assert custom_metrics_usd_per_month(6, load_prices(PRICES_PATH)) == pytest.approx(1.80)


def test_emf_lines_are_log_ingestion_and_pitr_an_all_in_extra() -> None:
    prices = load_prices(PRICES_PATH)
    usage = Usage(api_requests=1, metric_log_bytes=GB / 1_000_000, pitr_gb_months=1 / 1_000_000)
    items = {f"{item.service}: {item.item}": item for item in line_items(usage, prices)}
    # one GiB of EMF lines per million messages: $0.50; one GB-month of PITR per million: $0.20
    assert items["CloudWatch Logs: EMF metric lines"].usd_per_million == pytest.approx(0.50)
    assert items["CloudWatch Logs: EMF metric lines"].group == "observability"
    assert items["DynamoDB: point-in-time recovery"].usd_per_million == pytest.approx(0.20)
    totals = request_path_and_all_in(line_items(usage, prices))
    assert totals["request_path"] == pytest.approx(3.50)
    assert totals["all_in"] == pytest.approx(3.50 + 0.50 + 0.20)


# -- AWS-like times ---------------------------------------------------------------------------------------


def test_aws_like_time_replaces_the_emulated_calls_by_typical_latencies() -> None:
    # Given a 40 ms local invocation that spent 30 ms in moto (a GetItem and a PutItem) and 4 ms in
    # the local target
    # When the calls take 5 ms each on AWS and the target 100 ms
    # Then the handler's own 6 ms stay and 110 ms are added
    assert aws_like_ms(40.0, 30.0 + 4.0, 5.0 + 5.0 + 100.0) == pytest.approx(116.0)
    # the handler's own time cannot be negative (threads' waits overlapping the wall time)
    assert aws_like_ms(10.0, 25.0, 5.0) == pytest.approx(5.0)


def test_call_latency_prefers_the_operation_then_the_service() -> None:
    latencies = {"dynamodb": 5.0, "dynamodb:Query": 8.0, "sqs": 10.0}
    assert call_latency_ms("dynamodb", "Query", latencies) == 8.0
    assert call_latency_ms("dynamodb", "PutItem", latencies) == 5.0
    assert call_latency_ms("sqs", "SendMessage", latencies) == 10.0
    assert call_latency_ms("kms", "Decrypt", latencies) == 0.0


def test_an_express_run_lasts_its_tasks_plus_step_functions_overhead() -> None:
    # Given the ingest run's four tasks at 1, 6, 12 and 18 ms AWS-like, and 20 ms per task
    mean = {"validate": 1.0, "dedup": 6.0, "store": 12.0, "enqueue": 18.0}
    run_ms = express_run_ms(["validate", "dedup", "store", "enqueue"], mean, task_overhead_ms=20.0)
    # Then 37 + 80 = 117 ms, billed as two 100 ms increments at 64 MB
    assert run_ms == pytest.approx(117.0)
    assert express_gb_seconds(run_ms / 1000) == pytest.approx(0.2 * 64 / 1024)
    # a retried task counts each attempt
    assert express_run_ms(["store", "store"], mean, 20.0) == pytest.approx(64.0)


def test_the_write_breakdown_splits_table_and_indexes_per_call_with_totals() -> None:
    from bench.cost_run import _write_breakdown

    # Given two messages' writes: store puts (table 3, byStatus 1, due 1 each), dispatcher updates
    writes = [
        ["relay-store", "PutItem", "table", 6],
        ["relay-store", "PutItem", "byStatus", 2],
        ["relay-store", "PutItem", "due", 2],
        ["relay-dispatcher", "UpdateItem", "table", 2],
        ["relay-dispatcher", "UpdateItem", "byStatus", 4],
    ]
    breakdown = _write_breakdown(writes, 2)
    # Then per message: store 3 + 1 + 1, dispatcher 1 + 2; table 4, indexes 4, total 8
    assert breakdown["by_call"]["relay-store PutItem"] == {"table": 3, "byStatus": 1, "due": 1}
    assert breakdown["by_call"]["relay-dispatcher UpdateItem"] == {"table": 1, "byStatus": 2}
    assert breakdown["by_table_or_index"] == {"table": 4, "byStatus": 3, "due": 1}
    assert next(iter(breakdown["by_table_or_index"])) == "table"
    assert (breakdown["table"], breakdown["indexes"], breakdown["total"]) == (4, 4, 8)


# -- delayed messages -------------------------------------------------------------------------------------


def test_a_delayed_message_pays_for_what_it_stores_while_it_waits() -> None:
    # Given 1 GiB stored at acceptance by a million messages
    # When each waits 30 days (a month) for its due time
    # Then that is a GB-month per million: $0.25 of storage at the listed price; a day is a thirtieth
    assert waiting_gb_months(GB / 1_000_000, 30 * 86_400) * 1_000_000 == pytest.approx(1.0)
    assert waiting_gb_months(GB, 86_400) == pytest.approx(1 / 30)
    assert waiting_gb_months(GB, 0) == 0.0


def test_the_scheduler_s_sweeps_are_a_fixed_monthly_cost_spread_over_the_month_s_messages() -> None:
    prices = load_prices(PRICES_PATH)
    # Given a sweep a minute (43,200 a month) of 100 ms at 256 MB with 8 empty queries (4 RRU)
    monthly = sweeps_usd_per_month(43_200, 100.0, 256, 4.0, prices)
    # Then requests $0.00864 + 1,080 GB-s $0.0144 + 172,800 RRU $0.0216
    assert monthly == pytest.approx(43_200 * 0.2e-6 + 1_080 * 0.0000133334 + 172_800 * 0.125e-6)
    # And over a million scheduled messages a month, on the request path under its own line
    usage = Usage(scheduler_sweeps_usd_per_million=amortised_usd_per_million(monthly, 1_000_000))
    items = {f"{item.service}: {item.item.split(',')[0]}": item for item in line_items(usage, prices)}
    assert items["Scheduler: sweeps"].usd_per_million == pytest.approx(monthly)
    assert items["Scheduler: sweeps"].group == "core"
    # and a scenario without sweeps has no such line
    assert not [item for item in line_items(Usage(), prices) if item.service == "Scheduler"]


def test_a_long_delay_s_sweeps_less_the_idle_ones_leave_the_work_done_for_its_messages() -> None:
    from bench.cost_run import SCHEDULER, less_idle_sweeps

    # Given two sweeps that each queued a message, and five idle sweeps (8 empty queries, 40 ms each)
    def counted(calls: int, ms: float, queries: int, query_units: float, **extra: list[list[Any]]) -> dict[str, Any]:
        rows: dict[str, list[list[Any]]] = {name: [] for name in ("ddb_key_reads", "ddb_write_units", "ddb_key_writes")}
        by_function = {SCHEDULER: ms}
        return {
            "lambda_calls": {SCHEDULER: calls, "relay-dispatcher": 2},
            "lambda_ms": by_function,
            "lambda_billed_ms": by_function,
            "lambda_aws_ms": by_function,
            "lambda_aws_billed_ms": by_function,
            "log_bytes": {SCHEDULER: 300.0 * calls},
            "metric_bytes": {},
            "metric_lines": {},
            "aws_calls": [[SCHEDULER, "dynamodb", "Query", queries], *extra.get("aws_calls", [])],
            "ddb_read_units": [[SCHEDULER, "Query", query_units], *extra.get("ddb_read_units", [])],
            "sqs_requests": extra.get("sqs_requests", []),
            **rows,
        }

    run = counted(
        2,
        2 * 40.0 + 2 * 15.0,
        16,
        8.0,
        aws_calls=[[SCHEDULER, "dynamodb", "GetItem", 2]],
        ddb_read_units=[[SCHEDULER, "GetItem", 2.0]],
        sqs_requests=[[SCHEDULER, "SendMessage", 2]],
    )
    idle = counted(5, 5 * 40.0, 40, 20.0)
    # When the idle sweeps' share (2 of 5) is taken out
    left = less_idle_sweeps(run, idle, 2 / 5)
    # Then no invocation and no empty query remain; the messages' own reads, sends and time do
    assert left["lambda_calls"][SCHEDULER] == 0
    assert left["lambda_aws_billed_ms"][SCHEDULER] == pytest.approx(30.0)
    assert left["log_bytes"][SCHEDULER] == pytest.approx(0.0)
    assert [SCHEDULER, "Query", 0.0] in left["ddb_read_units"]
    assert [SCHEDULER, "GetItem", 2.0] in left["ddb_read_units"]
    assert left["sqs_requests"] == [[SCHEDULER, "SendMessage", 2]]
    # and the other functions are untouched
    assert left["lambda_calls"]["relay-dispatcher"] == 2
