"""The arithmetic of the cost model, kept pure so tests/unit/test_cost_model.py can check it.

- DynamoDB item sizes follow AWS's documented rules (attribute names count; numbers take about one
  byte per two significant digits plus one; lists and maps add 3 bytes plus 1 per element).
- On-demand capacity: a write request unit per started KB of the item (an update is charged on the
  larger of the item before and after), a read request unit per started 4 KB of a strongly
  consistent read (half for eventually consistent; a query rounds the total of the items it
  returns), twice for transactions. A global secondary index costs one write per index entry put
  or deleted (changing an index key is a delete plus a put).
- SQS bills every started 64 KB chunk of a request's payload as a request.
- Lambda bills duration per started millisecond at the configured memory; Express Step Functions
  bill per started 100 ms at no less than 64 MB; Standard bills every state entered and every retry.
- Step Functions writes a machine's execution history events to CloudWatch Logs as JSON records,
  filtered by the log level and stripped of execution data unless includeExecutionData is on
  (`execution_log_bytes`); ingestion is priced per GB.
- Point-in-time recovery bills the table's size (items, not global secondary indexes) per
  GB-month (`pitr_gb_months`); data sent to targets on the internet bills per GB
  (`http_request_bytes`); API Gateway calls the authorizer once per token per cache period
  (`authorizer_misses_per_request`); X-Ray's default rule records 1 request/s plus 5%
  (`xray_sampled_fraction`).
- A delayed message keeps what it stored at acceptance until its due time, from which its TTL
  counts (`waiting_gb_months`); the scheduler's sweeps are a fixed monthly cost
  (`sweeps_usd_per_month`), spread over the month's scheduled messages.
- AWS-like durations (`aws_like_ms`): local wall time minus the time spent inside the emulated AWS
  calls and the local target, plus a typical AWS latency per call and per target request.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stacks.definitions import RetrySchedule

KB = 1024
READ_UNIT_BYTES = 4 * KB
GB = 1024**3
MILLION = 1_000_000

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]


def load_prices(path: Path) -> dict[str, Any]:
    prices: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return prices


# -- DynamoDB sizes and capacity units ----------------------------------------------------------------


def number_size(text: str) -> int:
    """Bytes of a DynamoDB number: one per two significant digits, plus one."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return len(text)
    digits = value.as_tuple().digits
    significant = "".join(str(digit) for digit in digits).strip("0")
    return math.ceil(len(significant) / 2) + 1 if significant else 1


def attribute_value_size(value: AttributeValue) -> int:
    """Bytes of one attribute value in DynamoDB's wire format ({"S": "..."}, {"M": {...}}, ...)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(str(inner).encode("utf-8"))
    if kind == "N":
        return number_size(str(inner))
    if kind == "B":
        return len(inner) if isinstance(inner, bytes | bytearray) else len(base64.b64decode(inner))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(element).encode("utf-8")) for element in inner)
    if kind == "NS":
        return sum(number_size(str(element)) for element in inner)
    if kind == "BS":
        return sum(attribute_value_size({"B": element}) for element in inner)
    if kind == "L":
        return 3 + sum(attribute_value_size(element) + 1 for element in inner)
    if kind == "M":
        return 3 + sum(len(name.encode("utf-8")) + attribute_value_size(element) + 1 for name, element in inner.items())
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def item_size(item: Item | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + attribute_value_size(value) for name, value in item.items())


def write_units(size_bytes: int, transactional: bool = False) -> int:
    """Write request units of one write of an item of this size (at least one)."""
    units = max(1, math.ceil(size_bytes / KB))
    return units * (2 if transactional else 1)


def read_units(size_bytes: int, consistent: bool, transactional: bool = False) -> float:
    """Read request units of one read returning this many bytes (at least one 4 KB unit, also for no item)."""
    units = max(1, math.ceil(size_bytes / READ_UNIT_BYTES))
    if transactional:
        return float(units * 2)
    return float(units) if consistent else units / 2


def update_write_units(before: Item | None, after: Item | None) -> int:
    """An update (or put over an existing item) is charged on the larger of the two images."""
    return write_units(max(item_size(before), item_size(after)))


@dataclass(frozen=True)
class IndexSpec:
    name: str
    keys: tuple[str, ...]
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    included: tuple[str, ...] = ()

    @classmethod
    def from_table_definition(cls, definition: dict[str, Any]) -> list[IndexSpec]:
        specs = []
        for index in definition.get("GlobalSecondaryIndexes", []):
            projection = index.get("Projection", {})
            specs.append(
                cls(
                    name=index["IndexName"],
                    keys=tuple(key["AttributeName"] for key in index["KeySchema"]),
                    projection=projection.get("ProjectionType", "ALL"),
                    included=tuple(projection.get("NonKeyAttributes", [])),
                )
            )
        return specs


def table_keys(definition: dict[str, Any]) -> tuple[str, ...]:
    return tuple(key["AttributeName"] for key in definition["KeySchema"])


def _projected(item: Item, index: IndexSpec, base_keys: tuple[str, ...]) -> Item:
    if index.projection == "ALL":
        return item
    wanted = set(base_keys) | set(index.keys) | (set(index.included) if index.projection == "INCLUDE" else set())
    return {name: value for name, value in item.items() if name in wanted}


def _in_index(item: Item | None, index: IndexSpec) -> bool:
    return bool(item) and all(key in item for key in index.keys)  # type: ignore[operator]


def index_write_units(before: Item | None, after: Item | None, index: IndexSpec, base_keys: tuple[str, ...]) -> int:
    """Write units one table write costs in one global secondary index.

    `before`/`after` are the item's images (None: absent). A new entry or a removed one is one
    index write; a changed index key is a delete plus a put; a change of projected attributes
    under the same key is one write; anything else costs the index nothing.
    """
    return sum(units for _, units in index_writes_by_partition(before, after, index, base_keys))


def index_writes_by_partition(
    before: Item | None, after: Item | None, index: IndexSpec, base_keys: tuple[str, ...]
) -> list[tuple[str, int]]:
    """index_write_units by the index partition key each write lands on (a changed key: the old
    entry's delete on its partition, the new entry's put on its own)."""
    was, now = _in_index(before, index), _in_index(after, index)

    def entry(item: Item) -> tuple[str, int]:
        return attribute_text(item[index.keys[0]]), write_units(item_size(_projected(item, index, base_keys)))

    if not was and not now:
        return []
    if was and not now:
        return [entry(before or {})]
    if now and not was:
        return [entry(after or {})]
    assert before is not None and after is not None
    if any(before.get(key) != after.get(key) for key in index.keys):
        return [entry(before), entry(after)]
    if _projected(before, index, base_keys) != _projected(after, index, base_keys):
        return [entry(after)]
    return []


def attribute_text(value: Any) -> str:
    """A key attribute's value as text ({"S": "MSG#a#b"} -> "MSG#a#b")."""
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value.values())))
    return str(value)


def index_storage_bytes(item: Item, indexes: list[IndexSpec], base_keys: tuple[str, ...]) -> int:
    """Bytes an item occupies in the indexes (AWS adds 100 bytes of overhead per index entry)."""
    return sum(item_size(_projected(item, index, base_keys)) + 100 for index in indexes if _in_index(item, index))


# -- SQS, Lambda, Step Functions ----------------------------------------------------------------------


def sqs_requests(payload_bytes: int, chunk_bytes: int = 64 * KB) -> int:
    """Billed requests of one SQS API call carrying this payload (every started 64 KB chunk)."""
    return max(1, math.ceil(payload_bytes / chunk_bytes))


def lambda_billed_ms(duration_ms: float, increment_ms: int = 1) -> int:
    return max(increment_ms, math.ceil(duration_ms / increment_ms) * increment_ms)


def lambda_gb_seconds(billed_ms: float, memory_mb: int) -> float:
    return billed_ms / 1000 * memory_mb / 1024


def express_gb_seconds(
    duration_seconds: float, memory_mb: int = 64, increment_ms: int = 100, minimum_mb: int = 64
) -> float:
    """Billed GB-seconds of one Express execution (started 100 ms, at least 64 MB)."""
    increments = max(1, math.ceil(duration_seconds * 1000 / increment_ms - 1e-9))
    return increments * increment_ms / 1000 * max(memory_mb, minimum_mb) / 1024


def expected_wait_seconds(waits: tuple[float, ...], retries: int, full_jitter: bool) -> float:
    """The expected sum of the first `retries` waits (FULL jitter draws each uniformly in [0, w])."""
    total = sum(waits[:retries])
    return total / 2 if full_jitter else total


def slow_lane_transitions(initial_wait_seconds: int, attempts: int) -> int:
    """Standard transitions of one slow-lane run: states entered plus retries.

    Wait (if any) + Deliver entered once + (attempts - 1) retries + MarkFailed or the Succeed state.
    """
    return (1 if initial_wait_seconds > 0 else 0) + 1 + (attempts - 1) + 1


# -- the retry schedule's Step Functions cost ---------------------------------------------------------


@dataclass(frozen=True)
class RetryScheduleCost:
    """What the lanes' retry policies cost in Step Functions, per million messages, from the schedule alone.

    A retried message (its inline attempt failed retryably) runs the fast lane once: one Express
    request, plus Express duration while it waits between attempts (the waits here; the attempts'
    own time is measured by the cost scenarios). A slow-lane message pays Standard transitions:
    the Wait, Deliver, each retry, and MarkFailed (or Succeed). Lambda, DynamoDB and the other
    per-attempt costs are the scenarios' measurements, not this.
    """

    fast_retries: int
    fast_wait_expected_seconds: float  # every retry made (the message exhausts the fast lane)
    fast_wait_max_seconds: float
    fast_express_request_usd_per_million: float
    fast_wait_expected_usd_per_million: float  # Express duration (64 MB) of the expected waits
    fast_wait_max_usd_per_million: float
    slow_attempts: int
    slow_transitions: int  # a message that exhausts the slow lane
    slow_transitions_usd_per_million: float

    @property
    def retried_usd_per_million(self) -> float:
        """Per million messages that run the fast lane: its Express request and expected waits."""
        return self.fast_express_request_usd_per_million + self.fast_wait_expected_usd_per_million


def retry_schedule_cost(fast: RetrySchedule, slow: RetrySchedule, prices: dict[str, Any]) -> RetryScheduleCost:
    """Price the fast lane's waits (Express duration) and the slow lane's transitions (Standard)."""
    sfn = prices["step_functions"]
    # A fast-lane run is billed at the 64 MB minimum. A wait is part of its duration, which is
    # rounded up to 100 ms once per run, not per wait.
    per_second = sfn["express_min_billed_memory_mb"] / 1024 * sfn["express_per_gb_second"] * MILLION
    expected = sum(fast.expected_wait(wait) for wait in fast.waits)
    longest = sum(fast.waits)
    transitions = slow_lane_transitions(slow.initial_wait_seconds, slow.attempts)
    return RetryScheduleCost(
        fast_retries=len(fast.waits),
        fast_wait_expected_seconds=expected,
        fast_wait_max_seconds=longest,
        fast_express_request_usd_per_million=sfn["express_per_million_requests"],
        fast_wait_expected_usd_per_million=expected * per_second,
        fast_wait_max_usd_per_million=longest * per_second,
        slow_attempts=slow.attempts,
        slow_transitions=transitions,
        slow_transitions_usd_per_million=transitions * sfn["standard_per_1000_transitions"] / 1000 * MILLION,
    )


# -- Step Functions execution logs ------------------------------------------------------------------

# Step Functions Developer Guide, "Log levels": the event types logged at ERROR; ALL logs every type.
ERROR_LEVEL_EVENTS = frozenset(
    {
        "ExecutionAborted",
        "ExecutionFailed",
        "ExecutionTimedOut",
        "FailStateEntered",
        "LambdaFunctionFailed",
        "LambdaFunctionScheduleFailed",
        "LambdaFunctionStartFailed",
        "LambdaFunctionTimedOut",
        "MapIterationAborted",
        "MapIterationFailed",
        "MapStateAborted",
        "MapStateFailed",
        "ParallelStateAborted",
        "ParallelStateFailed",
        "TaskFailed",
        "TaskStartFailed",
        "TaskStateAborted",
        "TaskSubmitFailed",
        "TaskTimedOut",
        "WaitStateAborted",
    }
)
# The details that carry execution data (state input and output, task parameters and results).
EXECUTION_DATA_FIELDS = frozenset({"input", "output", "parameters"})
# CloudWatch Logs counts each event as its UTF-8 bytes plus 26 (the PutLogEvents batch rule).
LOG_EVENT_OVERHEAD_BYTES = 26
_EPOCH_MILLIS = "1764532800000"  # a 13-digit event_timestamp, as every current one is


def event_type(event: Mapping[str, Any]) -> str:
    kind = event["type"]
    return str(getattr(kind, "value", kind))


def is_logged(kind: str, level: str) -> bool:
    """Whether Step Functions logs an event of this type at this level (ALL, ERROR, FATAL or OFF)."""
    if level == "ALL":
        return True
    if level == "ERROR":
        return kind in ERROR_LEVEL_EVENTS
    if level == "FATAL":
        return kind in {"ExecutionAborted", "ExecutionFailed", "ExecutionTimedOut"}
    return False


def log_record(event: Mapping[str, Any], execution_arn: str, include_data: bool) -> dict[str, Any]:
    """One history event (GetExecutionHistory's shape) as Step Functions writes it to CloudWatch Logs."""
    details: dict[str, Any] = next((value for name, value in event.items() if name.endswith("EventDetails")), {})
    if not include_data:
        details = {name: value for name, value in details.items() if name not in EXECUTION_DATA_FIELDS}
    return {
        "id": str(event.get("id", 0)),
        "type": event_type(event),
        "details": details,
        "previous_event_id": str(event.get("previousEventId", 0)),
        "event_timestamp": _EPOCH_MILLIS,
        "execution_arn": execution_arn,
        "redrive_count": "0",
    }


def execution_log_bytes(
    history: Iterable[Mapping[str, Any]], execution_arn: str, level: str, include_data: bool
) -> int:
    """Bytes of CloudWatch Logs ingestion one execution causes at this logging configuration."""
    return sum(
        len(json.dumps(log_record(event, execution_arn, include_data), separators=(",", ":")).encode("utf-8"))
        + LOG_EVENT_OVERHEAD_BYTES
        for event in history
        if is_logged(event_type(event), level)
    )


# -- the all-in extras: PITR, data transfer, the authorizer's cache, X-Ray sampling -----------------

DAYS_PER_MONTH = 30


def pitr_gb_months(table_bytes: float, ttl_days: float, days_per_month: float = DAYS_PER_MONTH) -> float:
    """GB-months of continuous backups one message causes.

    PITR bills the table's current size (items and local secondary indexes, not global ones) per
    GB-month, whatever the 35-day recovery window: a message's items count while they live, until
    their TTL removes them.
    """
    return table_bytes / GB * ttl_days / days_per_month


def waiting_gb_months(bytes_waiting: float, delay_seconds: float, days_per_month: float = DAYS_PER_MONTH) -> float:
    """GB-months a delayed message's items take while they wait for its due time.

    Its TTL counts from the due time, so what it stores at acceptance is kept `delay_seconds`
    longer than a message sent at once: storage and point-in-time recovery grow with the horizon.
    """
    return bytes_waiting / GB * delay_seconds / 86_400 / days_per_month


def sweeps_usd_per_month(
    sweeps_per_month: float,
    billed_ms_per_sweep: float,
    memory_mb: int,
    read_units_per_sweep: float,
    prices: dict[str, Any],
) -> float:
    """A scheduled function's fixed monthly cost on the request path: its invocations, their
    duration and the reads each makes whatever there is to do (EventBridge's schedule costs nothing)."""
    lam = prices["lambda"]
    per_sweep = (
        lam["per_million_requests"] / MILLION
        + lambda_gb_seconds(billed_ms_per_sweep, memory_mb) * lam["per_gb_second_arm64"]
        + read_units_per_sweep * prices["dynamodb"]["per_million_read_request_units"] / MILLION
    )
    return sweeps_per_month * per_sweep


def http_request_bytes(method: str, path: str, headers: Mapping[str, str], body: bytes) -> int:
    """Bytes of one HTTP/1.1 request as sent: request line, header lines, blank line, body."""
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return len((head + "\r\n").encode("latin-1", errors="replace")) + len(body)


def authorizer_misses_per_request(requests_per_second_per_token: float, cache_seconds: float) -> float:
    """Authorizer invocations per API request when API Gateway caches each token's answer.

    With requests arriving at random (Poisson) at rate r per token, a miss is followed by r * T
    cached hits on average before the answer expires, so a miss is 1 of every 1 + r * T requests.
    """
    if cache_seconds <= 0:
        return 1.0
    return 1.0 / (1.0 + requests_per_second_per_token * cache_seconds)


def xray_sampled_fraction(requests_per_second: float, reservoir_per_second: float = 1.0, rate: float = 0.05) -> float:
    """Share of requests X-Ray's default sampling rule records: the first each second, 5% of the rest."""
    if requests_per_second <= 0:
        return 0.0
    recorded = min(requests_per_second, reservoir_per_second) + rate * max(
        0.0, requests_per_second - reservoir_per_second
    )
    return recorded / requests_per_second


def amortised_usd_per_million(monthly_usd: float, messages_per_month: float) -> float:
    """A fixed monthly cost spread over a month's messages, in USD per million messages."""
    return monthly_usd / messages_per_month * MILLION if messages_per_month > 0 else 0.0


# -- AWS-like durations ---------------------------------------------------------------------------------


def aws_like_ms(local_wall_ms: float, local_inner_ms: float, modeled_ms: float) -> float:
    """One invocation's duration on AWS, modeled from a local run.

    `local_inner_ms` is what the invocation spent waiting on the emulated AWS calls (moto in-process)
    and on the local target; the rest of its wall time is the handler's own work, kept as measured.
    `modeled_ms` is the sum of the typical AWS latencies of those same calls and target requests.
    """
    return max(0.0, local_wall_ms - local_inner_ms) + modeled_ms


def call_latency_ms(service: str, operation: str, latencies: Mapping[str, float]) -> float:
    """The modeled latency of one AWS call: `service:Operation`, else `service`, else 0."""
    return float(latencies.get(f"{service}:{operation}", latencies.get(service, 0.0)))


def express_run_ms(task_functions: Iterable[str], mean_ms: Mapping[str, float], task_overhead_ms: float) -> float:
    """An Express run's duration: its tasks' Lambda durations plus Step Functions' overhead per task."""
    return sum(mean_ms.get(name, 0.0) + task_overhead_ms for name in task_functions)


# -- line items ---------------------------------------------------------------------------------------


@dataclass
class Usage:
    """What one message uses, on average, in billable units."""

    api_requests: float = 0.0
    lambda_invocations: dict[str, float] = field(default_factory=dict)
    lambda_billed_ms: dict[str, float] = field(default_factory=dict)
    lambda_memory_mb: dict[str, int] = field(default_factory=dict)
    express_requests: float = 0.0
    express_gb_seconds: float = 0.0
    standard_transitions: float = 0.0
    dynamodb_write_units: float = 0.0
    dynamodb_read_units: float = 0.0
    dynamodb_storage_gb_months: float = 0.0
    sqs_requests: float = 0.0
    secrets_calls: float = 0.0
    log_bytes: float = 0.0
    xray_traces: float = 0.0
    # The all-in extras (group "other" unless noted).
    metric_log_bytes: float = 0.0  # EMF lines (observability): CloudWatch Logs ingestion
    authorizer_invocations: float = 0.0
    authorizer_billed_ms: float = 0.0  # per message, all its invocations together
    authorizer_memory_mb: int = 256
    authorizer_read_units: float = 0.0
    pitr_gb_months: float = 0.0
    data_transfer_bytes: float = 0.0
    fixed_usd_per_million: float = 0.0  # fixed monthly costs spread over the month's messages
    # The scheduler's sweeps (one a minute, whatever is due) spread over the month's scheduled
    # messages: on the request path of a message that waits in the scheduler's shards.
    scheduler_sweeps_usd_per_million: float = 0.0


# The groups: what `request_path` sums, and what `all_in` adds to it.
REQUEST_PATH = "core"
ALL_IN_GROUPS = ("core", "observability", "other")


@dataclass(frozen=True)
class LineItem:
    # "core" (the request path), "observability" (logs, metrics, X-Ray) or "other" (PITR, data
    # transfer, the authorizer, fixed monthly costs spread per message)
    group: str
    service: str
    item: str
    quantity: float  # per message
    unit: str
    usd_per_million: float


def line_items(usage: Usage, prices: dict[str, Any]) -> list[LineItem]:
    lam, sfn, ddb = prices["lambda"], prices["step_functions"], prices["dynamodb"]
    invocations = sum(usage.lambda_invocations.values())
    gb_seconds = sum(
        lambda_gb_seconds(usage.lambda_billed_ms.get(name, 0.0), usage.lambda_memory_mb.get(name, 256))
        for name in usage.lambda_invocations
    )
    items = [
        LineItem(
            "core",
            "API Gateway",
            "REST requests",
            usage.api_requests,
            "requests",
            usage.api_requests * prices["api_gateway"]["rest_per_million_requests"],
        ),
        LineItem("core", "Lambda", "requests", invocations, "invocations", invocations * lam["per_million_requests"]),
        LineItem(
            "core", "Lambda", "duration (arm64)", gb_seconds, "GB-s", gb_seconds * lam["per_gb_second_arm64"] * MILLION
        ),
        LineItem(
            "core",
            "Step Functions",
            "Express requests",
            usage.express_requests,
            "executions",
            usage.express_requests * sfn["express_per_million_requests"],
        ),
        LineItem(
            "core",
            "Step Functions",
            "Express duration",
            usage.express_gb_seconds,
            "GB-s",
            usage.express_gb_seconds * sfn["express_per_gb_second"] * MILLION,
        ),
        LineItem(
            "core",
            "Step Functions",
            "Standard transitions",
            usage.standard_transitions,
            "transitions",
            usage.standard_transitions * sfn["standard_per_1000_transitions"] / 1000 * MILLION,
        ),
        LineItem(
            "core",
            "DynamoDB",
            "write request units (table + GSIs)",
            usage.dynamodb_write_units,
            "WRU",
            usage.dynamodb_write_units * ddb["per_million_write_request_units"],
        ),
        LineItem(
            "core",
            "DynamoDB",
            "read request units",
            usage.dynamodb_read_units,
            "RRU",
            usage.dynamodb_read_units * ddb["per_million_read_request_units"],
        ),
        LineItem(
            "core",
            "DynamoDB",
            "storage (until TTL)",
            usage.dynamodb_storage_gb_months,
            "GB-month",
            usage.dynamodb_storage_gb_months * prices["dynamodb_storage"]["per_gb_month"] * MILLION,
        ),
        LineItem(
            "core",
            "SQS",
            "requests (64 KB chunks)",
            usage.sqs_requests,
            "requests",
            usage.sqs_requests * prices["sqs"]["per_million_requests"],
        ),
        LineItem(
            "core",
            "Secrets Manager",
            "API calls (amortised cache)",
            usage.secrets_calls,
            "calls",
            usage.secrets_calls * prices["secrets_manager"]["per_10000_api_calls"] / 10_000 * MILLION,
        ),
        LineItem(
            "observability",
            "CloudWatch Logs",
            "ingestion",
            usage.log_bytes,
            "bytes",
            usage.log_bytes / GB * prices["cloudwatch_logs"]["ingestion_per_gb"] * MILLION,
        ),
        LineItem(
            "observability",
            "X-Ray",
            "traces recorded",
            usage.xray_traces,
            "traces",
            usage.xray_traces * prices["xray"]["per_million_traces_recorded"],
        ),
    ]
    if usage.scheduler_sweeps_usd_per_million:
        # Last of the request path's lines, before observability's.
        items.insert(
            next(position for position, item in enumerate(items) if item.group != "core"),
            LineItem(
                "core",
                "Scheduler",
                "sweeps, one a minute (invocation, duration, shard queries), spread over the month's messages",
                usage.scheduler_sweeps_usd_per_million / MILLION,
                "USD",
                usage.scheduler_sweeps_usd_per_million,
            ),
        )
    if usage.metric_log_bytes:
        items.append(
            LineItem(
                "observability",
                "CloudWatch Logs",
                "EMF metric lines",
                usage.metric_log_bytes,
                "bytes",
                usage.metric_log_bytes / GB * prices["cloudwatch_logs"]["ingestion_per_gb"] * MILLION,
            )
        )
    authorizer_gb_s = lambda_gb_seconds(usage.authorizer_billed_ms, usage.authorizer_memory_mb)
    authorizer_usd = (
        usage.authorizer_invocations * lam["per_million_requests"]
        + authorizer_gb_s * lam["per_gb_second_arm64"] * MILLION
        + usage.authorizer_read_units * ddb["per_million_read_request_units"]
    )
    items += [
        LineItem(
            "other",
            "Lambda",
            "authorizer (cache misses: requests, duration, reads)",
            usage.authorizer_invocations,
            "invocations",
            authorizer_usd,
        ),
        LineItem(
            "other",
            "DynamoDB",
            "point-in-time recovery",
            usage.pitr_gb_months,
            "GB-month",
            usage.pitr_gb_months * prices["dynamodb_pitr"]["per_gb_month"] * MILLION,
        ),
        LineItem(
            "other",
            "Data transfer",
            "out to the internet (requests to targets)",
            usage.data_transfer_bytes,
            "bytes",
            usage.data_transfer_bytes / GB * prices["data_transfer_out"]["internet_per_gb"] * MILLION,
        ),
        LineItem(
            "other",
            "Fixed monthly",
            "reconciler + SQS idle polling, spread over the month's messages",
            usage.fixed_usd_per_million / MILLION,
            "USD",
            usage.fixed_usd_per_million,
        ),
    ]
    return items


def total(items: list[LineItem], group: str | None = None) -> float:
    return sum(item.usd_per_million for item in items if group is None or item.group == group)


def request_path_and_all_in(items: list[LineItem]) -> dict[str, float]:
    return {"request_path": total(items, REQUEST_PATH), "all_in": total(items)}


def custom_metrics_usd_per_month(metrics: int, prices: dict[str, Any]) -> float:
    """EMF-extracted metrics are custom metrics, billed per metric (name + dimensions) per month."""
    return metrics * prices["cloudwatch_metrics"]["custom_metric_per_month"]


@dataclass(frozen=True)
class TracingCost:
    """What one `stacks.tracing` mode costs per million messages of a scenario."""

    mode: str
    step_functions_log_bytes: float  # per message
    step_functions_logs_usd_per_million: float
    all_usd_per_million: float  # the scenario's whole cost, observability included, in this mode


def tracing_costs(
    log_bytes_by_mode: Mapping[str, float], default_mode: str, default_all_usd: float, prices: dict[str, Any]
) -> list[TracingCost]:
    """Each mode's Step Functions log cost, and the scenario's total with it instead of the default's.

    `default_all_usd` already holds the default mode's Step Functions logs (in the CloudWatch Logs line).
    """
    per_gb = prices["cloudwatch_logs"]["ingestion_per_gb"]

    def usd(size: float) -> float:
        return size / GB * per_gb * MILLION

    default = log_bytes_by_mode[default_mode]
    return [
        TracingCost(mode, size, usd(size), default_all_usd - usd(default) + usd(size))
        for mode, size in log_bytes_by_mode.items()
    ]
