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
    from relay.definitions import RetrySchedule

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
    was, now = _in_index(before, index), _in_index(after, index)
    if not was and not now:
        return 0
    if was and not now:
        return write_units(item_size(_projected(before or {}, index, base_keys)))
    if now and not was:
        return write_units(item_size(_projected(after or {}, index, base_keys)))
    assert before is not None and after is not None
    if any(before.get(key) != after.get(key) for key in index.keys):
        return write_units(item_size(_projected(before, index, base_keys))) + write_units(
            item_size(_projected(after, index, base_keys))
        )
    if _projected(before, index, base_keys) != _projected(after, index, base_keys):
        return write_units(item_size(_projected(after, index, base_keys)))
    return 0


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


@dataclass(frozen=True)
class LineItem:
    group: str  # "core" (the services of the request path) or "observability"
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
    return items


def total(items: list[LineItem], group: str | None = None) -> float:
    return sum(item.usd_per_million for item in items if group is None or item.group == group)


@dataclass(frozen=True)
class TracingCost:
    """What one `relay.tracing` mode costs per million messages of a scenario."""

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
