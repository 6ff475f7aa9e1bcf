"""Cost per message, counted in real local runs of the whole stack.

`relay dev` runs in this process (LocalRelay: moto, the real handlers, the real ASL) with a local
target. Hooks count what AWS would bill:
- every Lambda invocation and its wall time (LocalAws.invoke),
- every AWS SDK call (botocore's BaseClient._make_api_call): DynamoDB write/read units from the
  item images before and after each write (moto's table is read directly, which costs nothing),
  GSI writes per changed index entry, SQS requests per 64 KB chunk, Step Functions and Secrets
  Manager calls,
- every state machine execution with its history (states entered, retries, duration),
- every byte a function writes to stdout (Powertools logs and EMF metrics: CloudWatch Logs).
Calls are attributed to the Lambda running them; what the local server does instead of API
Gateway's cached authorizer, and the harness's own reads, are kept apart and not billed.

Scenarios (SCENARIO_NAMES): success_single, retried and slow_lane send each message after the
previous one finished (as at low volume, so SQS batches hold one message); success_volume sends at
up to 50 messages/s from several threads with the SQS event source's batching window played
locally; success_batch100 posts batches of 100 to POST /messages/batch (null when the route
answers 404). The retry policy is the default one of cdk.json / statemachines/, with retry waits
scaled to almost nothing; the waits' cost (Express duration) is added back arithmetically from
retry_schedule.

Delayed messages (SCHEDULED_SCENARIOS, one at a time): scheduled_short's delay rides the queue's
DelaySeconds; scheduled_long's waits in the scheduler's shards of the `due` index until a sweep
(invoked here once it is due, with the queue's lead compressed to seconds) hands it to the queue.
The scheduler's sweeps, one a minute whatever is due, are measured idle and spread over the month's
scheduled messages; what a message stores while it waits is priced for a stated horizon.
`cost_per_million.scheduled` gives both and their extra over success_single.

Every scenario is priced twice: with the local wall times, and with AWS-like times (the time spent
inside moto and the local target replaced by typical AWS latencies: AWS_CALL_LATENCY_MS).

Run as `python -m bench.cost_run --out FILE` (bench.run does it in a fresh process).
"""

from __future__ import annotations

import ast
import contextlib
import http.client
import io
import json
import os
import re
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.capacity import key_pattern
from bench.common import PRICES_PATH, ROOT, one_kb_body, scaled, section_main
from bench.cost_model import (
    EXECUTION_DATA_FIELDS,
    LOG_EVENT_OVERHEAD_BYTES,
    IndexSpec,
    Item,
    LineItem,
    Usage,
    amortised_usd_per_million,
    attribute_text,
    authorizer_misses_per_request,
    aws_like_ms,
    call_latency_ms,
    custom_metrics_usd_per_month,
    event_type,
    execution_log_bytes,
    expected_wait_seconds,
    express_gb_seconds,
    express_run_ms,
    http_request_bytes,
    index_storage_bytes,
    index_writes_by_partition,
    item_size,
    lambda_billed_ms,
    line_items,
    load_prices,
    pitr_gb_months,
    read_units,
    request_path_and_all_in,
    retry_schedule_cost,
    slow_lane_transitions,
    sqs_requests,
    sweeps_usd_per_month,
    table_keys,
    total,
    tracing_costs,
    update_write_units,
    waiting_gb_months,
    write_units,
    xray_sampled_fraction,
)
from functions.adapters.messages.items import HEAD_SORT_KEY, decode_head
from functions.contract.key_prefixes import SCHEDULER_SHARD_PREFIX
from functions.contract.settings_names import Setting, ToolVariable
from functions.domain.model import MessageHead, MessageKey
from functions.domain.scheduling import QUEUE_LEAD_SECONDS
from stacks.tracing import Tracing, execution_logging

# Functions on a message's path; the reconciler runs on a schedule whatever the volume (a fixed
# monthly cost) and the authorizer's answers are cached by API Gateway (amortised separately).
MESSAGE_PATH_FUNCTIONS = (
    "relay-validate",
    "relay-dedup",
    "relay-store",
    "relay-enqueue",
    "relay-dispatcher",
    "relay-deliver",
    "relay-handoff",
    "relay-finalize",
)
EVENT_SOURCE = "sqs-event-source"  # Lambda's SQS poller: receives and deletes, billed to the account
LOCAL_ONLY = "local-only"  # the local server's token check, the harness: not billed
AUTHORIZER = "relay-authorizer"
# Not per message: the reconciler runs on a schedule (a fixed monthly cost), the authorizer's
# answers are cached (priced apart, per cache miss). Every other function a run calls is billed, so
# a new route's functions (POST /messages/batch) are counted without being listed here.
NOT_PER_MESSAGE = ("relay-reconciler", AUTHORIZER, LOCAL_ONLY)
SCENARIO_NAMES = ("success_single", "success_volume", "success_batch100", "retried", "slow_lane")
# Delayed messages (after the five, so those run as before): their prices and the extra over
# success_single are `cost_per_million.scheduled`, under these labels.
SCHEDULED_SCENARIOS = {"scheduled_short": "short_delay", "scheduled_long": "long_delay"}
SCHEDULER = "relay-scheduler"
SWEEP_EVENT = {"source": "aws.events", "detail-type": "Scheduled Event"}
SWEEPS_PER_MONTH = 30 * 24 * 60  # rate(1 minute), as deployed (stacks/constructs/scheduler.py)
# The long delay's path in seconds instead of minutes: the queue's lead (QUEUE_LEAD_SECONDS, 300 s
# deployed) is this long in the scheduled_long run, so a message due 3 s after acceptance waits in
# the scheduler's shards, a sweep hands it to the queue with the second that remains, and the
# dispatcher claims it at its time. Every step and call is the deployed one; only the horizon is short.
COMPRESSED_QUEUE_LEAD_SECONDS = 1
IDLE_SWEEPS = 5  # the scheduler with nothing due, measured before scheduled_long: its fixed cost
# What a delayed message's waiting storage is priced for (the counted calls do not depend on it):
# the short path's longest wait (QUEUE_LEAD_SECONDS), and a day on the long path; `scheduled`
# gives the long path at other horizons too.
PRICED_LONG_DELAY_SECONDS = 86_400
HORIZON_DAYS = (1, 7, 30, 365)
GOAL_SCHEDULED_EXTRA_USD_PER_MILLION = 1.0  # issue 18: "about $1 per million ... on top of today's cost"


def billed(bucket: str) -> bool:
    return bucket not in NOT_PER_MESSAGE


# AWS-like times: the typical latency of each AWS call from a Lambda in the same region (warm
# connection, small items), replacing what the call took in moto in-process. `service:Operation`
# first, then `service`. Single-item DynamoDB calls take a few ms (AWS quotes single-digit ms);
# batch reads and queries a little more; SQS sends ~10 ms; a Step Functions StartExecution ~25 ms;
# Secrets Manager ~30 ms, but the deliver side caches the secret (Powertools, 300 s), so only the
# calls the run made (cache misses) are charged.
AWS_CALL_LATENCY_MS: dict[str, float] = {
    "dynamodb": 5.0,
    "dynamodb:BatchGetItem": 8.0,
    "dynamodb:Query": 8.0,
    "dynamodb:TransactWriteItems": 10.0,
    "sqs": 10.0,
    "stepfunctions": 25.0,  # botocore's service name (the endpoint prefix is "states")
    "secretsmanager": 30.0,
    "lambda": 20.0,
}
# A request to a target on the internet: its round trips and the receiver's own time (unknown,
# and paid as the dispatcher's or deliver's duration). Locally the target answers in ~1 ms.
AWS_TARGET_REQUEST_MS = 100.0
# What Step Functions adds to an Express run per task (lambda:invoke call and state handling).
AWS_SFN_TASK_OVERHEAD_MS = 20.0
# Data transfer per new TCP connection to a target beyond the HTTP bytes: the TLS 1.3 client side
# of the handshake (ClientHello ~520 B, Finished ~80 B) and the TCP/IP headers of ~6 packets
# (SYN, ACKs, FIN; 52 B each). The HTTP requests' own TCP/IP headers add ~52 B each.
TLS_AND_TCP_BYTES_PER_CONNECTION = 520 + 80 + 6 * 52
TCP_IP_BYTES_PER_REQUEST = 52

# Assumptions of the amortised and modeled lines (stated in the report).
ASSUMPTIONS: dict[str, Any] = {
    # The low-volume scenarios' rate (success_single, retried, slow_lane): 1M messages a month.
    "messages_per_month": 1_000_000,
    # success_volume and success_batch100: 50 messages/s sustained (129.6M a month).
    "volume_messages_per_second": 50.0,
    "dispatch_batch_size": 10,  # stacks/constructs/delivery_workflow.py DISPATCH_BATCH_SIZE
    "dispatch_batching_window_seconds": 1.0,  # DISPATCH_BATCHING_WINDOW
    "active_tokens": 1,
    "authorizer_cache_seconds": 300,  # stacks/constructs/authentication.py AUTHORIZER_CACHE_TTL
    "warm_deliver_containers": 2,
    "secret_cache_seconds": 300,  # functions/adapters/secrets.py CACHE_SECONDS
    "senders": 1,
    # X-Ray: one trace per API request and one per dispatcher invocation (the delivery side), each
    # side sampled by the default rule (1 request/s + 5%) at its own rate.
    "xray_reservoir_per_second": 1.0,
    "xray_fixed_rate": 0.05,
    "dynamodb_ttl_days": 30,
}
SECONDS_PER_MONTH = 30 * 24 * 3600

# Lambda's platform lines per invocation (text format, active tracing), as CloudWatch receives them.
_REQUEST_ID = "2f1d4a6e-5b7c-4d8e-9f0a-1b2c3d4e5f60"
PLATFORM_LOG_LINES = (
    f"START RequestId: {_REQUEST_ID} Version: $LATEST\n",
    f"END RequestId: {_REQUEST_ID}\n",
    f"REPORT RequestId: {_REQUEST_ID}\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 256 MB\t"
    "Max Memory Used: 92 MB\t\nXRAY TraceId: 1-674a1b2c-5ac6c58f5f5e5b4c2a6b7c8d\tSegmentId: 6b7c8d9e0f1a2b3c\t"
    "Sampled: true\t\n",
)
PLATFORM_LOG_BYTES = sum(len(line.encode()) for line in PLATFORM_LOG_LINES)

# What AWS's lambda:invoke integration puts beside `Payload` in a task's result (moto returns only
# StatusCode and Payload): it is in every TaskSucceeded event's output when execution data is logged.
_TRACE = "Root=1-674a1b2c-5ac6c58f5f5e5b4c2a6b7c8d;Parent=6b7c8d9e0f1a2b3c;Sampled=1"
_HEADERS = {
    "Connection": "keep-alive",
    "Content-Length": "412",
    "Content-Type": "application/json",
    "Date": "Mon, 30 Nov 2026 20:00:00 GMT",
    "X-Amz-Executed-Version": "$LATEST",
    "x-amzn-Remapped-Content-Length": "0",
    "x-amzn-RequestId": _REQUEST_ID,
    "X-Amzn-Trace-Id": _TRACE,
}
LAMBDA_RESULT_METADATA: dict[str, Any] = {
    "ExecutedVersion": "$LATEST",
    "SdkHttpMetadata": {
        "AllHttpHeaders": {name: [value] for name, value in _HEADERS.items()},
        "HttpHeaders": _HEADERS,
        "HttpStatusCode": 200,
    },
    "SdkResponseMetadata": {"RequestId": _REQUEST_ID},
}


# -- recording ----------------------------------------------------------------------------------------

_context = threading.local()


def _stack() -> list[str]:
    stack: list[str] | None = getattr(_context, "stack", None)
    if stack is None:
        stack = _context.stack = []
    return stack


@dataclass
class InvocationTiming:
    """One invocation's time inside emulated AWS calls and the local target, by thread, and the
    typical AWS latencies of the same calls (for AWS-like durations)."""

    inner_ms: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    modeled_ms: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, local_ms: float, modeled_ms: float) -> None:
        thread = threading.get_ident()
        self.inner_ms[thread] += local_ms
        self.modeled_ms[thread] += modeled_ms

    def aws_like_ms(self, wall_ms: float) -> float:
        # Threads of one invocation (the dispatcher's pool) wait in parallel: the longest counts.
        inner = max(self.inner_ms.values(), default=0.0)
        return aws_like_ms(wall_ms, inner, max(self.modeled_ms.values(), default=0.0))


def _timings() -> list[InvocationTiming]:
    timings: list[InvocationTiming] | None = getattr(_context, "timings", None)
    if timings is None:
        timings = _context.timings = []
    return timings


def _timed_depth() -> int:
    return int(getattr(_context, "timed_depth", 0))


class _Timed:
    """Adds the block's wall time (and a modeled AWS latency) to the current invocation, once: a
    nested timed block (a moto call inside a timed call) is already inside the outer one."""

    def __init__(self, modeled_ms: float) -> None:
        self.modeled_ms = modeled_ms
        self.timing = _timings()[-1] if _timings() else None
        self.started = 0.0

    def __enter__(self) -> None:
        _context.timed_depth = _timed_depth() + 1
        self.started = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        _context.timed_depth = _timed_depth() - 1
        if self.timing is not None and _timed_depth() == 0:
            self.timing.add((time.perf_counter() - self.started) * 1000, self.modeled_ms)


def current_bucket() -> str:
    stack = _stack()
    if stack:
        return stack[-1]
    if threading.current_thread().name.startswith("worker-"):
        return EVENT_SOURCE
    return LOCAL_ONLY


def _pool_tasks_inherit_bucket() -> None:
    """A pool task is charged to the function that submitted it (the dispatcher attempts a batch's
    messages in threads of its own); without this its calls would land in LOCAL_ONLY, uncounted."""
    from concurrent.futures import ThreadPoolExecutor

    submit = ThreadPoolExecutor.submit

    def submit_in_bucket(pool: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        inherited = list(_stack())
        inherited_timings = list(_timings())

        def call_in_bucket(*call_args: Any, **call_kwargs: Any) -> Any:
            stack, timings = _stack(), _timings()
            saved, saved_timings = stack[:], timings[:]
            stack[:], timings[:] = inherited, inherited_timings
            try:
                return fn(*call_args, **call_kwargs)
            finally:
                stack[:], timings[:] = saved, saved_timings

        return submit(pool, call_in_bucket, *args, **kwargs)

    ThreadPoolExecutor.submit = submit_in_bucket  # type: ignore[method-assign,assignment]


@dataclass
class ExecutionRecord:
    machine: str
    machine_type: str
    duration_seconds: float
    states_entered: int
    retries: int
    transitions: int
    failure_events: int
    # CloudWatch Logs bytes of this run under each `stacks.tracing` mode (stacks/tracing.py).
    log_bytes_by_tracing: dict[str, int]
    retries_by_state: dict[str, int]
    status: str
    # The function of every Lambda task scheduled (retries included), in order.
    task_functions: list[str] = field(default_factory=list)


@dataclass
class Recorder:
    lambda_calls: Counter[str] = field(default_factory=Counter)
    lambda_ms: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    lambda_billed_ms: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    lambda_errors: Counter[str] = field(default_factory=Counter)
    lambda_aws_ms: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    lambda_aws_billed_ms: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    log_bytes: Counter[str] = field(default_factory=Counter)
    metric_bytes: Counter[str] = field(default_factory=Counter)  # EMF lines (+26 B each)
    metric_lines: Counter[str] = field(default_factory=Counter)
    # Every distinct custom metric (namespace, name, dimensions) the EMF lines define.
    metric_keys: set[str] = field(default_factory=set)
    target_requests: Counter[str] = field(default_factory=Counter)
    aws_calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (bucket, service, op)
    ddb_write_units: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (bucket, op, table|index)
    ddb_read_units: defaultdict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    # The same units by key pattern (bench/capacity.py key_pattern): (bucket, table|index, pattern), and
    # the partition keys each pattern used: (table|index, pattern, scope) -> {(owner, partition key)}.
    ddb_key_writes: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    ddb_key_reads: defaultdict[tuple[str, str, str], float] = field(default_factory=lambda: defaultdict(float))
    ddb_partitions: defaultdict[tuple[str, str, str], set[tuple[str, str]]] = field(
        default_factory=lambda: defaultdict(set)
    )
    sqs_requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    sqs_empty_receives: int = 0
    executions: list[ExecutionRecord] = field(default_factory=list)
    uncounted: Counter[str] = field(default_factory=Counter)
    running_executions: int = 0
    inflight_invocations: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            running, inflight = self.running_executions, self.inflight_invocations
            fresh = Recorder()
            for name in (
                "lambda_calls", "lambda_ms", "lambda_billed_ms", "lambda_errors", "lambda_aws_ms",
                "lambda_aws_billed_ms", "log_bytes", "metric_bytes", "metric_lines", "metric_keys",
                "target_requests", "aws_calls", "ddb_write_units", "ddb_read_units", "ddb_key_writes",
                "ddb_key_reads", "ddb_partitions", "sqs_requests",
                "executions", "uncounted",
            ):  # fmt: skip
                setattr(self, name, getattr(fresh, name))
            self.sqs_empty_receives = 0
            self.running_executions, self.inflight_invocations = running, inflight


RECORDER = Recorder()


class _LogCapture(io.TextIOBase):
    """sys.stdout while counting: what a Lambda prints goes to its log group (counted, not shown)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def write(self, text: str) -> int:
        stack = _stack()
        if not stack:
            self.real.write(text)
            return len(text)
        size = len(text.encode("utf-8"))
        # Powertools prints each EMF line (json.dumps, then the newline) when a handler returns.
        emf = text.startswith('{"_aws":')
        if emf or (text == "\n" and getattr(_context, "after_emf", False)):
            keys = _metric_keys(text) if emf else set()
            with RECORDER.lock:
                RECORDER.metric_bytes[stack[-1]] += size + (LOG_EVENT_OVERHEAD_BYTES if emf else 0)
                RECORDER.metric_lines[stack[-1]] += 1 if emf else 0
                RECORDER.metric_keys |= keys
        else:
            with RECORDER.lock:
                RECORDER.log_bytes[stack[-1]] += size
        _context.after_emf = emf
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return False


def _metric_keys(line: str) -> set[str]:
    """The custom metrics one EMF line defines: namespace, metric name and dimension values."""
    try:
        document = json.loads(line)
    except ValueError:
        return set()
    keys = set()
    for directive in document.get("_aws", {}).get("CloudWatchMetrics", []):
        for dimensions in directive.get("Dimensions", []) or [[]]:
            values = ",".join(f"{name}={document.get(name)}" for name in dimensions)
            for metric in directive.get("Metrics", []):
                keys.add(f"{directive.get('Namespace')}/{metric.get('Name')}[{values}]")
    return keys


# -- hooks --------------------------------------------------------------------------------------------


class Hooks:
    """Installs the counting wrappers; `table_definition` gives the keys and indexes to price."""

    def __init__(self, table_definition: dict[str, Any]) -> None:
        self.base_keys = table_keys(table_definition)
        self.indexes = IndexSpec.from_table_definition(table_definition)

    def install(self) -> None:
        from botocore.client import BaseClient
        from moto.stepfunctions.parser.backend import execution as moto_execution

        from relay.local.emulator import LocalAws, template_topology

        original_invoke = LocalAws.invoke

        def counting_invoke(local: Any, function_name: str, event: dict[str, Any]) -> Any:
            stack, timings = _stack(), _timings()
            stack.append(function_name)
            timing = InvocationTiming()
            timings.append(timing)
            depth, _context.timed_depth = _timed_depth(), 0
            with RECORDER.lock:
                RECORDER.inflight_invocations += 1
            started = time.perf_counter()
            try:
                return original_invoke(local, function_name, event)
            except Exception:
                with RECORDER.lock:
                    RECORDER.lambda_errors[function_name] += 1
                raise
            finally:
                elapsed_ms = (time.perf_counter() - started) * 1000
                stack.pop()
                timings.pop()
                _context.timed_depth = depth
                aws_ms = timing.aws_like_ms(elapsed_ms)
                with RECORDER.lock:
                    RECORDER.inflight_invocations -= 1
                    RECORDER.lambda_calls[function_name] += 1
                    RECORDER.lambda_ms[function_name] += elapsed_ms
                    RECORDER.lambda_billed_ms[function_name] += lambda_billed_ms(elapsed_ms)
                    RECORDER.lambda_aws_ms[function_name] += aws_ms
                    RECORDER.lambda_aws_billed_ms[function_name] += lambda_billed_ms(aws_ms)

        LocalAws.invoke = counting_invoke  # type: ignore[method-assign,assignment]
        _pool_tasks_inherit_bucket()

        original_call = BaseClient._make_api_call  # type: ignore[attr-defined]
        hooks = self

        def counting_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            service = client.meta.service_model.service_name
            bucket = current_bucket()
            with RECORDER.lock:
                RECORDER.aws_calls[(bucket, service, operation)] += 1
            with _Timed(call_latency_ms(service, operation, AWS_CALL_LATENCY_MS)):
                if service == "dynamodb":
                    return hooks._dynamodb(original_call, client, operation, params, bucket)
                response = original_call(client, operation, params)
            if service == "sqs":
                hooks._sqs(operation, params, response, bucket)
            return response

        BaseClient._make_api_call = counting_call  # type: ignore[attr-defined]

        from functions.adapters.http_client import DeliveryClient

        original_send = DeliveryClient.send

        def timed_send(client: Any, url: str, method: str, headers: dict[str, str], *rest: Any, **options: Any) -> Any:
            with RECORDER.lock:
                RECORDER.target_requests[current_bucket()] += 1
            with _Timed(AWS_TARGET_REQUEST_MS):
                return original_send(client, url, method, headers, *rest, **options)

        DeliveryClient.send = timed_send  # type: ignore[method-assign,assignment]

        machine_types = {name: spec.type for name, spec in template_topology().state_machines.items()}
        original_start = moto_execution.Execution.start
        original_terminated = moto_execution.BaseExecutionWorkerCommunication.terminated

        def counting_start(execution: Any) -> None:
            with RECORDER.lock:
                RECORDER.running_executions += 1
            original_start(execution)

        def counting_terminated(communication: Any) -> None:
            try:
                original_terminated(communication)
            finally:
                execution = communication.execution
                record = _execution_record(execution, machine_types)
                with RECORDER.lock:
                    RECORDER.executions.append(record)
                    RECORDER.running_executions -= 1

        moto_execution.Execution.start = counting_start  # type: ignore[method-assign,assignment]
        moto_execution.BaseExecutionWorkerCommunication.terminated = counting_terminated  # type: ignore[method-assign,assignment]

    # -- DynamoDB ---------------------------------------------------------------------------------

    def _key_of(self, item: Item) -> Item:
        return {name: item[name] for name in self.base_keys}

    def _dynamodb(self, original: Any, client: Any, operation: str, params: dict[str, Any], bucket: str) -> Any:
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            return self._dynamodb_write(original, client, operation, params, bucket)
        response = original(client, operation, params)
        reads = self._read_units_by_key(operation, params, response)
        if reads is None:
            if operation not in ("DescribeTable", "CreateTable", "UpdateTimeToLive", "DescribeTimeToLive"):
                with RECORDER.lock:
                    RECORDER.uncounted[f"dynamodb:{operation}"] += 1
            return response
        with RECORDER.lock:
            RECORDER.ddb_read_units[(bucket, operation)] += sum(units for *_, units in reads)
            for container, partition, sort, units in reads:
                pattern = self._note_partition(container, partition, sort)
                RECORDER.ddb_key_reads[(bucket, container, pattern)] += units
        return response

    def _dynamodb_write(self, original: Any, client: Any, operation: str, params: dict[str, Any], bucket: str) -> Any:
        from botocore.exceptions import ClientError

        table = params.get("TableName", "")
        key = self._key_of(params["Item"]) if operation == "PutItem" else params["Key"]
        partition, sort = attribute_text(key["pk"]), attribute_text(key["sk"]) if "sk" in key else None
        before = _moto_item(table, key)
        try:
            response = original(client, operation, params)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                # A failed condition still consumes the write, sized on the larger image.
                consumed = write_units(max(item_size(before), item_size(params.get("Item"))))
                with RECORDER.lock:
                    RECORDER.ddb_write_units[(bucket, f"{operation} (condition failed)", "table")] += consumed
                    pattern = self._note_partition("table", partition, sort)
                    RECORDER.ddb_key_writes[(bucket, "table", pattern)] += consumed
            raise
        after = None if operation == "DeleteItem" else _moto_item(table, key)
        with RECORDER.lock:
            consumed = update_write_units(before, after)
            RECORDER.ddb_write_units[(bucket, operation, "table")] += consumed
            RECORDER.ddb_key_writes[(bucket, "table", self._note_partition("table", partition, sort))] += consumed
            for index in self.indexes:
                for index_partition, units in index_writes_by_partition(before, after, index, self.base_keys):
                    RECORDER.ddb_write_units[(bucket, operation, index.name)] += units
                    pattern = self._note_partition(index.name, index_partition, None)
                    RECORDER.ddb_key_writes[(bucket, index.name, pattern)] += units
        return response

    @staticmethod
    def _note_partition(container: str, partition: str, sort: str | None) -> str:
        """The key's pattern (bench/capacity.py), its partition noted as seen (caller holds the lock)."""
        pattern = key_pattern(container, partition, sort)
        RECORDER.ddb_partitions[(container, pattern.name, pattern.scope)].add((pattern.owner, partition))
        return pattern.name

    def _read_units_by_key(
        self, operation: str, params: dict[str, Any], response: dict[str, Any]
    ) -> list[tuple[str, str, str | None, float]] | None:
        """A read's units by (table|index, partition key, sort key); None for an operation not read here."""
        consistent = bool(params.get("ConsistentRead"))
        if operation == "GetItem":
            key = params["Key"]
            units = read_units(item_size(response.get("Item")), consistent)
            return [("table", attribute_text(key["pk"]), attribute_text(key.get("sk", "")), units)]
        if operation in ("Query", "Scan"):
            container = params.get("IndexName") or "table"
            returned = sum(item_size(item) for item in response.get("Items", []))
            return [(container, self._queried_partition(params), None, read_units(returned, consistent))]
        if operation == "BatchGetItem":
            reads: list[tuple[str, str, str | None, float]] = []
            for name, request in params["RequestItems"].items():
                found = response.get("Responses", {}).get(name, [])
                consistent = bool(request.get("ConsistentRead"))
                found_keys = {(attribute_text(item["pk"]), attribute_text(item.get("sk", ""))) for item in found}
                for item in found:
                    pk, sk = attribute_text(item["pk"]), attribute_text(item.get("sk", ""))
                    reads.append(("table", pk, sk, read_units(item_size(item), consistent)))
                for key in request["Keys"]:
                    pk, sk = attribute_text(key["pk"]), attribute_text(key.get("sk", ""))
                    if (pk, sk) not in found_keys:
                        reads.append(("table", pk, sk, read_units(0, consistent)))
            return reads
        return None

    def _queried_partition(self, params: dict[str, Any]) -> str:
        """The partition key value a Query names (`<hash key> = :value`), "" for a Scan."""
        hash_key = self.base_keys[0]
        for index in self.indexes:
            if index.name == params.get("IndexName"):
                hash_key = index.keys[0]
        names = params.get("ExpressionAttributeNames") or {}
        values = params.get("ExpressionAttributeValues") or {}
        for name, placeholder in re.findall(r"([#\w]+)\s*=\s*(:\w+)", params.get("KeyConditionExpression", "")):
            if names.get(name, name) == hash_key and placeholder in values:
                return attribute_text(values[placeholder])
        return ""

    # -- SQS --------------------------------------------------------------------------------------

    @staticmethod
    def _sqs(operation: str, params: dict[str, Any], response: dict[str, Any], bucket: str) -> None:
        if operation == "SendMessage":
            billed = sqs_requests(len(params["MessageBody"].encode()) + _attributes_bytes(params))
        elif operation == "SendMessageBatch":
            billed = sqs_requests(sum(len(entry["MessageBody"].encode()) for entry in params["Entries"]))
        elif operation == "ReceiveMessage":
            messages = response.get("Messages", [])
            if not messages:
                with RECORDER.lock:
                    RECORDER.sqs_empty_receives += 1
                return
            billed = sqs_requests(sum(len(message["Body"].encode()) for message in messages))
        else:
            billed = 1
        with RECORDER.lock:
            RECORDER.sqs_requests[(bucket, operation)] += billed


def _attributes_bytes(params: dict[str, Any]) -> int:
    size = 0
    for name, attribute in (params.get("MessageAttributes") or {}).items():
        size += len(name.encode()) + len(str(attribute.get("DataType", "")).encode())
        size += len(str(attribute.get("StringValue", "")).encode()) + len(attribute.get("BinaryValue", b""))
    return size


def _moto_backend() -> Any:
    from moto.dynamodb.models import dynamodb_backends

    from relay.local.emulator import ACCOUNT_ID, REGION

    return dynamodb_backends[ACCOUNT_ID][REGION]


def _moto_item(table: str, key: Item) -> Item | None:
    """The stored item, read from moto's backend directly (no SDK call, nothing counted)."""
    item = _moto_backend().get_item(table, key)
    if item is None:
        return None
    attributes: Item = item.to_json()["Attributes"]
    return attributes


def _message_items(table: str, partition_key: str) -> list[Item]:
    from moto.dynamodb.models.dynamo_type import DynamoType

    stored = _moto_backend().get_table(table).items.get(DynamoType({"S": partition_key}), {})
    return [item.to_json()["Attributes"] for item in stored.values()]


def _execution_record(execution: Any, machine_types: dict[str, str]) -> ExecutionRecord:
    history = execution.exec_worker.env.event_manager.get_event_history() if execution.exec_worker.env else []
    entered: Counter[str] = Counter()
    scheduled: Counter[str] = Counter()
    states_entered = failures = 0
    current = ""
    task_functions = []
    for event in history:
        kind = str(getattr(event["type"], "value", event["type"]))
        if kind.endswith("StateEntered"):
            states_entered += 1
            current = event.get("stateEnteredEventDetails", {}).get("name", "")
            if kind == "TaskStateEntered":
                entered[current] += 1
        elif kind in ("TaskScheduled", "LambdaFunctionScheduled"):
            scheduled[current] += 1
            function = _scheduled_function(event)
            if function:
                task_functions.append(function)
        if kind.endswith(("Failed", "TimedOut", "Aborted")):
            failures += 1
    retries_by_state = {name: scheduled[name] - entered[name] for name in scheduled if scheduled[name] > entered[name]}
    retries = sum(retries_by_state.values())
    stop = execution.stop_date or datetime.now(UTC)
    name = execution.state_machine.name
    machine_type = machine_types.get(name, "STANDARD")
    return ExecutionRecord(
        machine=name,
        machine_type=machine_type,
        duration_seconds=(stop - execution.start_date).total_seconds(),
        states_entered=states_entered,
        retries=retries,
        transitions=states_entered + retries,
        failure_events=failures,
        log_bytes_by_tracing=_log_bytes_by_tracing(history, execution.exec_arn, machine_type),
        retries_by_state=retries_by_state,
        status=str(getattr(execution.exec_status, "value", execution.exec_status)),
        task_functions=task_functions,
    )


def _scheduled_function(event: dict[str, Any]) -> str | None:
    """The Lambda function a TaskScheduled (lambda:invoke) or LambdaFunctionScheduled event calls."""
    details = event.get("taskScheduledEventDetails") or event.get("lambdaFunctionScheduledEventDetails") or {}
    if details.get("resourceType", "lambda") != "lambda":
        return None
    arn = details.get("resource", "")
    with contextlib.suppress(ValueError):
        arn = json.loads(details.get("parameters") or "{}").get("FunctionName", arn)
    name = str(arn).rsplit(":function:", 1)[-1].split(":")[0]
    return name or None


def _as_aws_history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """moto's history events with their data as AWS writes it: compact JSON, full lambda:invoke results."""
    events = []
    for event in history:
        event = dict(event)
        for name, details in list(event.items()):
            if name.endswith("EventDetails") and isinstance(details, dict):
                event[name] = {
                    field: _compact(value) if field in EXECUTION_DATA_FIELDS else value
                    for field, value in details.items()
                }
        details = event.get("taskSucceededEventDetails")
        if event_type(event) == "TaskSucceeded" and details and details.get("resourceType") == "lambda":
            result = json.loads(details["output"])
            details["output"] = json.dumps({**LAMBDA_RESULT_METADATA, **result}, separators=(",", ":"))
        events.append(event)
    return events


def _compact(value: Any) -> Any:
    try:
        return json.dumps(json.loads(value), separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return value


def _log_bytes_by_tracing(history: list[dict[str, Any]], execution_arn: str, machine_type: str) -> dict[str, int]:
    events = _as_aws_history(history)
    sizes = {}
    for mode in Tracing:
        logging = execution_logging(machine_type, mode)
        sizes[mode.value] = execution_log_bytes(events, execution_arn, logging.level, logging.include_execution_data)
    return sizes


# -- driving the scenarios ----------------------------------------------------------------------------


def _post(url: str, token: str, body: Any, path: str = "/messages") -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        connection.request(
            "POST",
            path,
            body=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _head(table: str, sender: str, message_id: str) -> MessageHead | None:
    """A message's head read straight from moto (not counted), decoded by the data-access layer."""
    key = MessageKey(sender, message_id)
    item = _moto_item(table, {"pk": {"S": key.partition_key}, "sk": {"S": HEAD_SORT_KEY}})
    return decode_head(item) if item else None


def _moto_queue(local: Any) -> Any:
    from moto.sqs.models import sqs_backends

    from relay.local.emulator import ACCOUNT_ID, REGION

    return sqs_backends[ACCOUNT_ID][REGION].queues.get(local.queue_name)


def _queues_empty(local: Any) -> bool:
    queue = _moto_queue(local)
    return queue is None or not queue.messages


def _wait_quiet(local: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        with RECORDER.lock:
            busy = RECORDER.running_executions > 0 or RECORDER.inflight_invocations > 0
        if busy or not _queues_empty(local):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 0.3:
            return
        time.sleep(0.02)
    raise TimeoutError("the local relay did not settle")


@dataclass
class Scenario:
    name: str
    path: str
    expected_status: str
    expected_attempts: int
    messages: int
    # sequential: each message after the previous finished; volume: paced senders in parallel;
    # batch: POST /messages/batch with `batch_size` messages each.
    mode: str = "sequential"
    # The production rate the amortised lines assume (authorizer cache, X-Ray sampling, fixed costs).
    messages_per_second: float = ASSUMPTIONS["messages_per_month"] / SECONDS_PER_MONTH
    batch_size: int = 1
    senders: int = 1
    # Delayed messages: the message's delaySeconds, and the wait its storage is priced for.
    delay_seconds: int = 0
    priced_delay_seconds: int = 0


class SkippedScenario(Exception):
    """The scenario cannot run against this relay (e.g. its route does not exist yet)."""


def _message(target_url: str, scenario: Scenario, message_id: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "senderId": "dev",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "targetUrl": f"{target_url}{scenario.path}",
        "body": one_kb_body(message_id),
        **({"delaySeconds": scenario.delay_seconds} if scenario.delay_seconds else {}),
    }


def _wait_finished(relay: Any, scenario: Scenario, message_ids: list[str], timeout: float) -> list[MessageHead]:
    deadline = time.monotonic() + timeout
    pending = list(message_ids)
    heads: dict[str, MessageHead] = {}
    while pending and time.monotonic() < deadline:
        for message_id in list(pending):
            head = _head(relay.local.table_name, "dev", message_id)
            if head and head.status.value in ("DELIVERED", "FAILED"):
                heads[message_id] = head
                pending.remove(message_id)
        if pending:
            time.sleep(0.02)
    if pending:
        raise TimeoutError(f"{scenario.name}: {len(pending)} messages did not finish")
    _wait_quiet(relay.local, timeout)
    return [heads[message_id] for message_id in message_ids]


def _send_sequential(relay: Any, target_url: str, scenario: Scenario, ids: list[str], timeout: float) -> int:
    for message_id in ids:
        status, _ = _post(relay.url, relay.dev_token, _message(target_url, scenario, message_id))
        if status != 202:
            raise RuntimeError(f"{scenario.name}: POST /messages answered {status}")
        _wait_finished(relay, scenario, [message_id], timeout)
    return len(ids)


@dataclass
class DelayedRun:
    """What sending delayed messages saw besides the counts: the sweeps it invoked and what each
    message stored at acceptance (kept until its due time; summed over the messages)."""

    api_requests: int = 0
    sweeps: int = 0
    waiting_table_bytes: float = 0.0
    waiting_index_bytes: float = 0.0


def _send_delayed(relay: Any, target_url: str, scenario: Scenario, ids: list[str], timeout: float) -> DelayedRun:
    """Each delayed message after the previous one finished. Mode `delayed`: its wait rides the
    queue's DelaySeconds. Mode `scheduler`: it waits in the scheduler's shards until a sweep, invoked
    here once it is due (the minute's sweep on AWS), hands it to the queue."""
    run = DelayedRun()
    table = relay.local.table_name
    for message_id in ids:
        status, body = _post(relay.url, relay.dev_token, _message(target_url, scenario, message_id))
        if status != 202 or json.loads(body).get("status") != "SCHEDULED":
            raise RuntimeError(f"{scenario.name}: POST /messages answered {status}: {body[:200]!r}")
        shard, due_at = _due_entry_of(table, message_id)
        if shard.startswith(SCHEDULER_SHARD_PREFIX) != (scenario.mode == "scheduler"):
            raise RuntimeError(f"{scenario.name}: the message waits in due shard {shard or '(none)'}")
        stored = _stored_bytes(table, MessageKey("dev", message_id).partition_key)
        run.waiting_table_bytes += stored[0]
        run.waiting_index_bytes += stored[1]
        if scenario.mode == "scheduler":
            time.sleep(max(0.0, due_at - time.time()) + 0.05)
            counts = relay.local.invoke(SCHEDULER, SWEEP_EVENT)
            run.sweeps += 1
            if counts.get("queued") != 1:
                raise RuntimeError(f"{scenario.name}: the sweep queued {counts}, not the one message")
        _wait_finished(relay, scenario, [message_id], timeout)
        run.api_requests += 1
    return run


def _due_entry_of(table: str, message_id: str) -> tuple[str, float]:
    """The head's `due` index entry (shard, due time), read from moto (not counted); ("", 0) for none."""
    key = MessageKey("dev", message_id)
    item = _moto_item(table, {"pk": {"S": key.partition_key}, "sk": {"S": HEAD_SORT_KEY}}) or {}
    return attribute_text(item.get("dueShard", "")), float(attribute_text(item.get("dueAt", "0")))


class _CompressedQueueLead:
    """QUEUE_LEAD_SECONDS set to COMPRESSED_QUEUE_LEAD_SECONDS in every loaded Relay module that holds
    it (the rule in functions/domain/scheduling.py, the due time ingest stores), then restored."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.saved: list[tuple[Any, str, int]] = []

    def __enter__(self) -> None:
        import functions.services.ingest
        import functions.services.scheduling.scheduler  # noqa: F401  (loaded, so patched too)

        # The lead, and the margin a scheduler entry keeps past it (a minute), in seconds.
        compressed = {"QUEUE_LEAD_SECONDS": self.seconds, "SCHEDULER_ENTRY_MARGIN_SECONDS": 0}
        for name, module in list(sys.modules.items()):
            for constant, value in compressed.items():
                if name.startswith("functions.") and hasattr(module, constant):
                    self.saved.append((module, constant, getattr(module, constant)))
                    setattr(module, constant, value)

    def __exit__(self, *_: object) -> None:
        for module, constant, value in self.saved:
            setattr(module, constant, value)


def measure_idle_sweeps(relay: Any, sweeps: int) -> dict[str, Any]:
    """The scheduler with nothing due, as every minute of a deployment runs it: its fixed cost."""
    RECORDER.reset()
    for _ in range(sweeps):
        counts = relay.local.invoke(SCHEDULER, SWEEP_EVENT)
        if any(counts.values()):
            raise RuntimeError(f"the scheduler found work in an idle sweep: {counts}")
    return _freeze()


def less_idle_sweeps(counted: dict[str, Any], idle: dict[str, Any], factor: float) -> dict[str, Any]:
    """The counts less `factor` times the idle sweeps' (the scheduler's own calls): what the sweeps did
    for the messages. Invocations, their fixed time and the empty shard queries are priced apart."""
    adjusted = dict(counted)
    for name in (
        "lambda_calls", "lambda_ms", "lambda_billed_ms", "lambda_aws_ms", "lambda_aws_billed_ms",
        "log_bytes", "metric_bytes", "metric_lines",
    ):  # fmt: skip
        values = dict(counted[name])
        if SCHEDULER in idle[name]:
            values[SCHEDULER] = max(0.0, values.get(SCHEDULER, 0.0) - idle[name][SCHEDULER] * factor)
        adjusted[name] = values
    for name in ("aws_calls", "ddb_read_units", "ddb_key_reads", "ddb_write_units", "ddb_key_writes", "sqs_requests"):
        idle_rows = {tuple(row[:-1]): row[-1] for row in idle[name] if row[0] == SCHEDULER}
        adjusted[name] = [
            [*row[:-1], max(0.0, row[-1] - idle_rows.get(tuple(row[:-1]), 0.0) * factor)] for row in counted[name]
        ]
    return adjusted


def _send_paced(relay: Any, target_url: str, scenario: Scenario, ids: list[str]) -> int:
    """`senders` threads, each starting its next POST on a schedule that totals the scenario's rate
    (the local relay may be slower: the rate it reached is reported)."""
    interval = scenario.senders / scenario.messages_per_second
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def sender(share: list[str], offset: float) -> None:
        start = time.monotonic() + offset
        for number, message_id in enumerate(share):
            delay = start + number * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            status, _ = _post(relay.url, relay.dev_token, _message(target_url, scenario, message_id))
            with lock:
                statuses[status] += 1

    threads = [
        threading.Thread(target=sender, args=(ids[i :: scenario.senders], i / scenario.messages_per_second))
        for i in range(scenario.senders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if set(statuses) != {202}:
        raise RuntimeError(f"{scenario.name}: POST /messages answered {dict(statuses)}")
    return len(ids)


def _send_batches(relay: Any, target_url: str, scenario: Scenario, ids: list[str]) -> int:
    requests = 0
    for start in range(0, len(ids), scenario.batch_size):
        chunk = ids[start : start + scenario.batch_size]
        envelope = {"messages": [_message(target_url, scenario, message_id) for message_id in chunk]}
        status, body = _post(relay.url, relay.dev_token, envelope, path="/messages/batch")
        if status == 404:
            raise SkippedScenario("POST /messages/batch answered 404: the route does not exist in this relay yet")
        if status != 200:
            raise SkippedScenario(f"POST /messages/batch answered {status}: {body[:300].decode(errors='replace')}")
        refused = _refused_in_batch(body)
        if refused:
            raise SkippedScenario(f"POST /messages/batch refused messages: {refused[:3]}")
        requests += 1
    return requests


def _refused_in_batch(body: bytes) -> list[Any]:
    """The per-message results of a batch answer that are not a 202 (the shape is `{results: [...]}`,
    each with the status a single POST would give, under `status` or `statusCode`)."""
    try:
        results = json.loads(body).get("results", [])
    except (ValueError, AttributeError):
        return [body[:200].decode(errors="replace")]
    refused = []
    for result in results:
        status = result.get("status", result.get("statusCode")) if isinstance(result, dict) else None
        if isinstance(status, int) and status != 202:
            refused.append(result)
    return refused


class _BatchingWindow:
    """The SQS event source's batching window, played on the local queue worker: a poll waits
    until the batch is full or the window has passed since a message became visible (AWS:
    MaximumBatchingWindowInSeconds), instead of taking whatever is there."""

    def __init__(self, relay: Any, batch_size: int, window_seconds: float) -> None:
        self.relay, self.batch_size, self.window = relay, batch_size, window_seconds
        self.saved: list[tuple[Any, Any]] = []

    def __enter__(self) -> None:
        for worker in self.relay.workers:
            original = worker.receive_batch

            def receive_batch(sqs: Any, original: Any = original) -> list[dict[str, Any]]:
                first_seen: float | None = None
                while True:
                    queue = _moto_queue(self.relay.local)
                    visible = sum(1 for message in list(queue.messages) if message.visible) if queue else 0
                    if not visible:
                        return []
                    first_seen = first_seen or time.monotonic()
                    if visible >= self.batch_size or time.monotonic() - first_seen >= self.window:
                        return list(original(sqs))
                    time.sleep(0.01)

            self.saved.append((worker, original))
            worker.receive_batch = receive_batch

    def __exit__(self, *_: object) -> None:
        for worker, _original in self.saved:
            del worker.receive_batch


def _freeze() -> dict[str, Any]:
    with RECORDER.lock:
        return {
            "lambda_calls": dict(RECORDER.lambda_calls),
            "lambda_ms": dict(RECORDER.lambda_ms),
            "lambda_billed_ms": dict(RECORDER.lambda_billed_ms),
            "lambda_aws_ms": dict(RECORDER.lambda_aws_ms),
            "lambda_aws_billed_ms": dict(RECORDER.lambda_aws_billed_ms),
            "lambda_errors": dict(RECORDER.lambda_errors),
            "log_bytes": dict(RECORDER.log_bytes),
            "metric_bytes": dict(RECORDER.metric_bytes),
            "metric_lines": dict(RECORDER.metric_lines),
            "metric_keys": sorted(RECORDER.metric_keys),
            "target_requests": dict(RECORDER.target_requests),
            "aws_calls": [[*key, count] for key, count in sorted(RECORDER.aws_calls.items())],
            "ddb_write_units": [[*key, units] for key, units in sorted(RECORDER.ddb_write_units.items())],
            "ddb_read_units": [[*key, units] for key, units in sorted(RECORDER.ddb_read_units.items())],
            "ddb_key_writes": [[*key, value] for key, value in sorted(RECORDER.ddb_key_writes.items())],
            "ddb_key_reads": [[*key, value] for key, value in sorted(RECORDER.ddb_key_reads.items())],
            # (table|index, pattern, scope, owners, partition keys)
            "ddb_partitions": [
                [*key, len({owner for owner, _ in seen}), len(seen)]
                for key, seen in sorted(RECORDER.ddb_partitions.items())
            ],
            "sqs_requests": [[*key, count] for key, count in sorted(RECORDER.sqs_requests.items())],
            "sqs_empty_receives": RECORDER.sqs_empty_receives,
            "executions": [asdict(record) for record in RECORDER.executions],
            "uncounted": dict(RECORDER.uncounted),
        }


def run_scenario(relay: Any, target: Any, scenario: Scenario, timeout: float) -> dict[str, Any]:
    _wait_quiet(relay.local, timeout)
    idle = measure_idle_sweeps(relay, IDLE_SWEEPS) if scenario.mode == "scheduler" else None
    RECORDER.reset()
    received_before, connections_before = len(target.received), target.connections
    ids = [f"cost-{scenario.name}-{uuid.uuid4().hex[:10]}" for _ in range(scenario.messages)]
    started = time.monotonic()
    delayed: DelayedRun | None = None
    if scenario.mode in ("sequential", "delayed", "scheduler"):
        if scenario.mode == "sequential":
            api_requests = _send_sequential(relay, target.url, scenario, ids, timeout)
        else:
            lead = _CompressedQueueLead(COMPRESSED_QUEUE_LEAD_SECONDS) if idle else contextlib.nullcontext()
            with lead:
                delayed = _send_delayed(relay, target.url, scenario, ids, timeout)
            api_requests = delayed.api_requests
        sent = time.monotonic()
        heads = [head for message_id in ids if (head := _head(relay.local.table_name, "dev", message_id))]
    else:
        with _BatchingWindow(
            relay, ASSUMPTIONS["dispatch_batch_size"], ASSUMPTIONS["dispatch_batching_window_seconds"]
        ):
            if scenario.mode == "batch":
                api_requests = _send_batches(relay, target.url, scenario, ids)
            else:
                api_requests = _send_paced(relay, target.url, scenario, ids)
            sent = time.monotonic()
            heads = _wait_finished(relay, scenario, ids, timeout)
    elapsed = time.monotonic() - started
    counted = _freeze()
    outcomes: Counter[str] = Counter(f"{head.status.value}/{head.attempts}" for head in heads)
    table_bytes = index_bytes = 0
    for message_id in ids:
        stored = _stored_bytes(relay.local.table_name, f"MSG#dev#{message_id}")
        table_bytes += stored[0]
        index_bytes += stored[1]
    requests = target.received[received_before:]
    expected = f"{scenario.expected_status}/{scenario.expected_attempts}"
    n = scenario.messages
    return {
        "scenario": asdict(scenario),
        "outcomes": dict(outcomes),
        "as_expected": outcomes == Counter({expected: n}),
        "api_requests": api_requests,
        "local_messages_per_second": n / max(sent - started, 1e-9),
        "local_seconds": elapsed,
        "storage_bytes_per_message": (table_bytes + index_bytes) / n,
        "table_bytes_per_message": table_bytes / n,
        "index_bytes_per_message": index_bytes / n,
        "target": {
            "requests": len(requests),
            "connections": target.connections - connections_before,
            "http_bytes": sum(
                http_request_bytes(request.method, request.path, request.headers, request.body) for request in requests
            ),
        },
        "counted": counted,
        **_delayed_outcome(delayed, idle, n),
    }


def _delayed_outcome(delayed: DelayedRun | None, idle: dict[str, Any] | None, n: int) -> dict[str, Any]:
    """A delayed scenario's extras: what each message stored while it waited; the sweeps invoked and
    the idle sweeps measured before them (the scheduler's fixed cost, priced apart)."""
    if delayed is None:
        return {}
    extras: dict[str, Any] = {
        "waiting": {
            "table_bytes_per_message": delayed.waiting_table_bytes / n,
            "index_bytes_per_message": delayed.waiting_index_bytes / n,
        }
    }
    if idle is not None:
        extras["sweeps"] = {"sweeps": delayed.sweeps, "idle_sweeps": IDLE_SWEEPS, "idle": idle}
    return extras


_HOOKS: Hooks | None = None


def _stored_bytes(table: str, partition_key: str) -> tuple[int, int]:
    """Table bytes of one message (items + 100 bytes of overhead each), and its index entries'."""
    assert _HOOKS is not None
    items = _message_items(table, partition_key)
    return (
        sum(item_size(item) + 100 for item in items),
        sum(index_storage_bytes(item, _HOOKS.indexes, _HOOKS.base_keys) for item in items),
    )


def measure_authorizer(relay: Any, invocations: int) -> dict[str, Any]:
    """The authorizer as API Gateway calls it on a cache miss (locally the server checks tokens itself)."""
    RECORDER.reset()
    event = {
        "type": "TOKEN",
        "authorizationToken": f"Bearer {relay.dev_token}",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc123def4/prod/POST/messages",
    }
    for _ in range(invocations):
        relay.local.invoke(AUTHORIZER, event)
    return _freeze()


# -- turning counts into usage per message ------------------------------------------------------------


def lambda_memory_mb() -> dict[str, Any]:
    """The deployed memory size, read from stacks/constructs/base/functions.py (and any override)."""
    source = (ROOT / "stacks" / "constructs" / "base" / "functions.py").read_text(encoding="utf-8")
    match = re.search(r"^DEFAULT_MEMORY_MB\s*=\s*(\d+)", source, re.MULTILINE)
    default = int(match.group(1)) if match else 128
    overrides = []
    for path in sorted((ROOT / "stacks").rglob("*.py")):
        if re.search(r"memory_size\s*=\s*(?!memory_size)\w", path.read_text(encoding="utf-8")):
            overrides.append(str(path.relative_to(ROOT)))
    return {"default_mb": default, "files_setting_memory_size": overrides}


def access_log_bytes() -> int:
    """One API Gateway access log line in the stack's format, filled with typical values.

    Priced as if access logging were on (`relay.apiGatewayCloudWatchRole` existing or create); with
    the default (none) the stage writes no access log, so the figure is an upper bound.
    """
    tree = ast.parse((ROOT / "stacks" / "api_mapping.py").read_text(encoding="utf-8"))
    fields: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "ACCESS_LOG_FORMAT" for target in node.targets
        ):
            fields = ast.literal_eval(node.value)
    sample = {
        "$context.requestId": str(uuid.UUID(int=1)),
        "$context.extendedRequestId": "Zx1ABCdEoAMEbXw=",
        "$context.requestTimeEpoch": "1764430000000",
        "$context.identity.sourceIp": "203.0.113.10",
        "$context.identity.userAgent": "python-requests/2.32.3",
        "$context.httpMethod": "POST",
        "$context.resourcePath": "/messages",
        "$context.status": "202",
        "$context.responseLength": "151",
        "$context.responseLatency": "212",
        "$context.integration.status": "200",
        "$context.integration.latency": "205",
        "$context.integration.error": "-",
        "$context.error.responseType": "-",
        "$context.error.message": "-",
        "$context.authorizer.senderId": "sender-a",
        "$context.xrayTraceId": "Root=1-674a1b2c-5ac6c58f5f5e5b4c2a6b7c8d",
    }
    line = json.dumps({name: sample.get(value, value) for name, value in fields.items()}) + "\n"
    return len(line.encode())


@dataclass(frozen=True)
class Pricing:
    """What pricing a scenario needs besides its counts: the policy's waits and the deployment."""

    authorizer: dict[str, Any]
    memory_mb: int
    fast_waits: tuple[float, ...]
    fast_full_jitter: bool
    access_log_line: int
    fixed_monthly_usd: float
    prices: dict[str, Any] = field(default_factory=dict)


def usage_per_message(result: dict[str, Any], pricing: Pricing, times: str = "local") -> tuple[Usage, dict[str, Any]]:
    """A scenario's usage per message; `times` "local" bills the local wall times, "aws" the
    AWS-like ones (Lambda from the per-invocation model, Express from its tasks' AWS-like times)."""
    sweeps = result.get("sweeps")
    counted = result["counted"]
    if sweeps:
        counted = less_idle_sweeps(counted, sweeps["idle"], sweeps["sweeps"] / sweeps["idle_sweeps"])
    scenario = result["scenario"]
    n = scenario["messages"]
    rate = scenario["messages_per_second"]
    messages_per_month = rate * SECONDS_PER_MONTH
    api_per_message = result["api_requests"] / n
    usage = Usage(api_requests=api_per_message)
    billed_ms = counted["lambda_aws_billed_ms"] if times == "aws" else counted["lambda_billed_ms"]

    functions = sorted(name for name in counted["lambda_calls"] if billed(name))
    for name in functions:
        usage.lambda_invocations[name] = counted["lambda_calls"][name] / n
        usage.lambda_billed_ms[name] = billed_ms.get(name, 0.0) / n
        usage.lambda_memory_mb[name] = pricing.memory_mb

    # The authorizer: API Gateway caches each token's answer; a miss is 1 in 1 + r*T requests.
    authorizer = pricing.authorizer
    auth_calls = authorizer["lambda_calls"].get(AUTHORIZER, 0) or 1
    auth_billed = authorizer["lambda_aws_billed_ms" if times == "aws" else "lambda_billed_ms"]
    misses = api_per_message * authorizer_misses_per_request(
        rate * api_per_message / ASSUMPTIONS["active_tokens"], ASSUMPTIONS["authorizer_cache_seconds"]
    )
    usage.authorizer_invocations = misses
    usage.authorizer_billed_ms = auth_billed.get(AUTHORIZER, 0.0) / auth_calls * misses
    usage.authorizer_memory_mb = pricing.memory_mb
    usage.authorizer_read_units = sum(row[-1] for row in authorizer["ddb_read_units"]) / auth_calls * misses

    mean_aws_ms = {
        name: counted["lambda_aws_ms"].get(name, 0.0) / calls
        for name, calls in counted["lambda_calls"].items()
        if calls
    }
    express_gb_s = 0.0
    express_runs = standard_transitions = 0
    sfn_log_by_tracing = dict.fromkeys((mode.value for mode in Tracing), 0.0)
    sfn_log_by_machine: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(sfn_log_by_tracing, 0.0))
    modeled_waits = 0.0
    for record in counted["executions"]:
        if record["machine_type"] == "EXPRESS":
            express_runs += 1
            if times == "aws":
                duration = express_run_ms(record["task_functions"], mean_aws_ms, AWS_SFN_TASK_OVERHEAD_MS) / 1000
            else:
                duration = record["duration_seconds"]
            if record["machine"] == "relay-delivery-fast":
                wait = expected_wait_seconds(
                    pricing.fast_waits, record["retries_by_state"].get("Deliver", 0), pricing.fast_full_jitter
                )
                duration += wait
                modeled_waits += wait
            express_gb_s += express_gb_seconds(duration)
        else:
            standard_transitions += record["transitions"]
        for mode, size in record["log_bytes_by_tracing"].items():
            sfn_log_by_tracing[mode] += size / n
            sfn_log_by_machine[record["machine"]][mode] += size / n
    usage.express_requests = express_runs / n
    usage.express_gb_seconds = express_gb_s / n
    usage.standard_transitions = standard_transitions / n

    writes = [row for row in counted["ddb_write_units"] if billed(row[0])]
    reads = [row for row in counted["ddb_read_units"] if billed(row[0])]
    usage.dynamodb_write_units = sum(row[-1] for row in writes) / n
    usage.dynamodb_read_units = sum(row[-1] for row in reads) / n
    ttl_days = ASSUMPTIONS["dynamodb_ttl_days"]
    usage.dynamodb_storage_gb_months = result["storage_bytes_per_message"] / 1024**3 * ttl_days / 30
    usage.pitr_gb_months = pitr_gb_months(result["table_bytes_per_message"], ttl_days)
    waiting = result.get("waiting")
    if waiting:
        # Its TTL counts from the due time: what it stored at acceptance is kept while it waits.
        delay = scenario["priced_delay_seconds"]
        waiting_bytes = waiting["table_bytes_per_message"] + waiting["index_bytes_per_message"]
        usage.dynamodb_storage_gb_months += waiting_gb_months(waiting_bytes, delay)
        usage.pitr_gb_months += waiting_gb_months(waiting["table_bytes_per_message"], delay)
    sqs_rows = [row for row in counted["sqs_requests"] if billed(row[0])]
    usage.sqs_requests = sum(row[-1] for row in sqs_rows) / n

    usage.secrets_calls = (
        ASSUMPTIONS["warm_deliver_containers"]
        * ASSUMPTIONS["senders"]
        * SECONDS_PER_MONTH
        / ASSUMPTIONS["secret_cache_seconds"]
        / messages_per_month
    )

    invocations = sum(usage.lambda_invocations.values()) + usage.authorizer_invocations
    app_log = sum(size for name, size in counted["log_bytes"].items() if billed(name)) / n
    # The log lines priced with the rest are those of the default deployment (stacks.tracing: errors).
    sfn_log = sfn_log_by_tracing[Tracing.ERRORS.value]
    platform = invocations * PLATFORM_LOG_BYTES
    access_log = api_per_message * pricing.access_log_line
    usage.log_bytes = app_log + platform + access_log + sfn_log
    usage.metric_log_bytes = sum(size for name, size in counted["metric_bytes"].items() if billed(name)) / n

    # X-Ray: a trace per API request and one per dispatcher invocation, each side sampled at its rate.
    api_rate = rate * api_per_message
    dispatches = usage.lambda_invocations.get("relay-dispatcher", 0.0)
    sampling = {
        "api": xray_sampled_fraction(
            api_rate, ASSUMPTIONS["xray_reservoir_per_second"], ASSUMPTIONS["xray_fixed_rate"]
        ),
        "delivery": xray_sampled_fraction(
            rate * dispatches, ASSUMPTIONS["xray_reservoir_per_second"], ASSUMPTIONS["xray_fixed_rate"]
        ),
    }
    usage.xray_traces = api_per_message * sampling["api"] + dispatches * sampling["delivery"]
    scheduler_sweeps = _add_sweeps(usage, sweeps, pricing, times, messages_per_month) if sweeps else None

    target = result["target"]
    usage.data_transfer_bytes = (
        target["http_bytes"]
        + target["requests"] * TCP_IP_BYTES_PER_REQUEST
        + target["connections"] * TLS_AND_TCP_BYTES_PER_CONNECTION
    ) / n
    usage.fixed_usd_per_million = amortised_usd_per_million(pricing.fixed_monthly_usd, messages_per_month)

    secrets_measured = sum(
        row[-1] for row in counted["aws_calls"] if row[1] == "secretsmanager" and row[2] == "GetSecretValue"
    )
    dispatcher_batches = [
        row[-1] for row in counted["sqs_requests"] if row[0] == EVENT_SOURCE and row[1] == "ReceiveMessage"
    ]
    details = {
        "lambda_wall_ms_per_invocation": {
            name: counted["lambda_ms"][name] / counted["lambda_calls"][name]
            for name in counted["lambda_calls"]
            if counted["lambda_calls"][name]
        },
        "lambda_aws_like_ms_per_invocation": mean_aws_ms,
        "dynamodb_writes_by_call": _per_message_rows(writes, n),
        "dynamodb_write_units_per_message": _write_breakdown(writes, n),
        "dynamodb_reads_by_call": _per_message_rows(reads, n),
        "dynamodb_key_patterns": key_pattern_use(counted, n),
        "sqs_requests_by_call": _per_message_rows(sqs_rows, n),
        "messages_per_dispatcher_invocation": n / counted["lambda_calls"]["relay-dispatcher"]
        if counted["lambda_calls"].get("relay-dispatcher")
        else None,
        "sqs_receives_with_messages": sum(dispatcher_batches),
        "executions_per_message": _execution_summary(counted["executions"], n),
        "express_modeled_retry_wait_seconds_per_message": modeled_waits / n,
        "log_bytes_per_message": {
            "function_output (Powertools logs)": app_log,
            "lambda_platform_lines": platform,
            "api_gateway_access_log": access_log,
            "step_functions_execution_logs (tracing errors)": sfn_log,
        },
        "emf_metric_bytes_per_message": usage.metric_log_bytes,
        "emf_metric_lines_per_message": sum(count for name, count in counted["metric_lines"].items() if billed(name))
        / n,
        "custom_metrics_seen": counted["metric_keys"],
        "xray_sampled_fraction": sampling,
        "authorizer_invocations_per_message": misses,
        "data_transfer": {
            "http_bytes_per_message": target["http_bytes"] / n,
            "target_requests_per_message": target["requests"] / n,
            "new_connections_per_message": target["connections"] / n,
        },
        "step_functions_log_bytes_per_message_by_tracing": sfn_log_by_tracing,
        **({"waiting": {**waiting, "priced_delay_seconds": scenario["priced_delay_seconds"]}} if waiting else {}),
        **({"scheduler_sweeps": scheduler_sweeps} if scheduler_sweeps else {}),
        "step_functions_log_bytes_per_message_by_machine": dict(sfn_log_by_machine),
        "secrets_manager_calls_measured_in_run": secrets_measured,
        "sqs_empty_receives_in_run (idle polling, fixed cost)": counted["sqs_empty_receives"],
        # The local server's token checks and the harness (the interpreter's Lambda calls are counted as
        # invocations above).
        "not_billed_local_only_calls": [
            row for row in counted["aws_calls"] if row[0] == LOCAL_ONLY and row[1] != "lambda"
        ],
        "uncounted_operations": counted["uncounted"],
    }
    return usage, details


def _add_sweeps(
    usage: Usage, sweeps: dict[str, Any], pricing: Pricing, times: str, messages_per_month: float
) -> dict[str, Any]:
    """The scheduler's sweeps, one a minute whatever is due, spread over the month's messages (each
    as the idle sweeps measured it): the invocation, its duration and the shard queries on the
    request path, its log lines, EMF lines and trace in observability."""
    idle, measured = sweeps["idle"], sweeps["idle_sweeps"]
    billed_ms = idle["lambda_aws_billed_ms" if times == "aws" else "lambda_billed_ms"]
    per_sweep = {
        "billed_ms": billed_ms.get(SCHEDULER, 0.0) / measured,
        "read_units": sum(row[-1] for row in idle["ddb_read_units"] if row[0] == SCHEDULER) / measured,
        "queries": sum(row[-1] for row in idle["aws_calls"] if row[0] == SCHEDULER and row[2] == "Query") / measured,
        "log_bytes": idle["log_bytes"].get(SCHEDULER, 0.0) / measured + PLATFORM_LOG_BYTES,
        "metric_bytes": idle["metric_bytes"].get(SCHEDULER, 0.0) / measured,
        # One invocation a minute is under the default rule's reservoir (1/s): every one is traced.
        "xray_traces": xray_sampled_fraction(
            1 / 60, ASSUMPTIONS["xray_reservoir_per_second"], ASSUMPTIONS["xray_fixed_rate"]
        ),
    }
    usd_per_month = sweeps_usd_per_month(
        SWEEPS_PER_MONTH, per_sweep["billed_ms"], pricing.memory_mb, per_sweep["read_units"], pricing.prices
    )
    share = SWEEPS_PER_MONTH / messages_per_month
    usage.scheduler_sweeps_usd_per_million = amortised_usd_per_million(usd_per_month, messages_per_month)
    usage.log_bytes += per_sweep["log_bytes"] * share
    usage.metric_log_bytes += per_sweep["metric_bytes"] * share
    usage.xray_traces += per_sweep["xray_traces"] * share
    return {
        "per_sweep": per_sweep,
        "sweeps_per_month": SWEEPS_PER_MONTH,
        "messages_per_month": messages_per_month,
        "request_path_usd_per_month": usd_per_month,
        "sweeps_in_run": sweeps["sweeps"],
    }


def _write_breakdown(writes: list[list[Any]], n: int) -> dict[str, Any]:
    """WRU per message by function and operation, split into the table and each index, with totals."""
    by_call: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    by_target: dict[str, float] = defaultdict(float)
    for bucket, operation, target, units in writes:
        by_call[f"{bucket} {operation}"][target] += units / n
        by_target[target] += units / n
    table_units = by_target.get("table", 0.0)
    return {
        "by_call": {call: dict(targets) for call, targets in sorted(by_call.items())},
        "by_table_or_index": dict(sorted(by_target.items(), key=lambda item: (item[0] != "table", item[0]))),
        "table": table_units,
        "indexes": sum(by_target.values()) - table_units,
        "total": sum(by_target.values()),
    }


def key_pattern_use(counted: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Write and read units per message by key pattern (bench/capacity.py PatternUse), with the partition
    keys each used: per owner for a sender's or a target's keys, all of them for deployment-wide keys."""
    units: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for bucket, container, pattern, value in counted["ddb_key_writes"]:
        if billed(bucket):
            units[(container, pattern)][0] += value / n
    for bucket, container, pattern, value in counted["ddb_key_reads"]:
        if billed(bucket):
            units[(container, pattern)][1] += value / n
    rows = []
    for container, pattern, scope, owners, partitions in counted["ddb_partitions"]:
        written, read = units.get((container, pattern), [0.0, 0.0])
        if not written and not read:
            continue  # only the reconciler, the authorizer or the harness touched it
        per_owner = partitions if scope == "deployment" else max(1, round(partitions / max(1, owners)))
        rows.append(
            {
                "name": pattern,
                "container": container,
                "scope": scope,
                "write_units": round(written, 6),
                "read_units": round(read, 6),
                "partitions": 1 if scope == "message" else per_owner,
            }
        )
    return sorted(rows, key=lambda row: (-row["write_units"], row["name"]))


def _per_message_rows(rows: list[list[Any]], n: int) -> list[list[Any]]:
    return [[*row[:-1], round(row[-1] / n, 4)] for row in rows]


def _execution_summary(executions: list[dict[str, Any]], n: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for record in executions:
        entry = summary.setdefault(
            record["machine"],
            {"type": record["machine_type"], "runs": 0, "transitions": 0, "retries": 0, "local_seconds": 0.0},
        )
        entry["runs"] += 1
        entry["transitions"] += record["transitions"]
        entry["retries"] += record["retries"]
        entry["local_seconds"] += record["duration_seconds"]
    for entry in summary.values():
        for name in ("runs", "transitions", "retries", "local_seconds"):
            entry[name] = round(entry[name] / n, 4)
    return summary


# -- main ---------------------------------------------------------------------------------------------


def _prepare_environment() -> None:
    """Powertools as deployed (INFO logs, EMF metrics on); tracing off (no X-Ray daemon here)."""
    os.environ.update(
        {
            "POWERTOOLS_SERVICE_NAME": "relay",
            "POWERTOOLS_METRICS_NAMESPACE": "Relay",
            "POWERTOOLS_METRICS_DISABLED": "false",
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "POWERTOOLS_TRACE_DISABLED": "true",
            ToolVariable.HOME: os.environ.get(ToolVariable.HOME) or f"/tmp/relay-bench-home-{os.getpid()}",
        }
    )
    os.environ.pop("POWERTOOLS_DEV", None)
    sys.stdout = _LogCapture(sys.stdout)


def run(scale: float) -> dict[str, Any]:
    global _HOOKS
    _prepare_environment()
    from functions.domain.config import FirstAttempt
    from relay.local.emulator import template_topology
    from relay.local.runtime import LocalRelay
    from relay.local.targets import TargetServer
    from stacks.definitions import read_definition, retry_schedule
    from stacks.project_config import delivery_policy, first_attempt

    policy = delivery_policy()
    # The dispatcher's own first attempt (delivery.firstAttempt: inline) comes before the lanes'.
    inline = 1 if first_attempt() == FirstAttempt.INLINE else 0
    fast = retry_schedule("delivery_fast.asl.json", policy.get("fastLane"))
    slow = retry_schedule("delivery_slow.asl.json", policy.get("slowLane"))
    fast_full_jitter = '"JitterStrategy": "FULL"' in json.dumps(read_definition("delivery_fast.asl.json"))
    _HOOKS = Hooks(template_topology().table.definition)
    _HOOKS.install()

    volume = ASSUMPTIONS["volume_messages_per_second"]
    scenarios = [
        Scenario("success_single", "/ok", "DELIVERED", 1, scaled(20, scale)),
        Scenario(
            "success_volume", "/ok", "DELIVERED", 1, scaled(100, scale), mode="volume", messages_per_second=volume,
            senders=8,
        ),
        Scenario(
            "success_batch100", "/ok", "DELIVERED", 1, 100 * scaled(1, scale), mode="batch",
            messages_per_second=volume, batch_size=100,
        ),
        Scenario("retried", "/flaky/3", "DELIVERED", 4, scaled(10, scale)),
        Scenario("slow_lane", "/fail", "FAILED", inline + fast.attempts + slow.attempts, scaled(4, scale)),
        # A short delay rides the queue's DelaySeconds (2 s here; priced for the longest, QUEUE_LEAD_SECONDS).
        Scenario(
            "scheduled_short", "/ok", "DELIVERED", 1, scaled(20, scale), mode="delayed", delay_seconds=2,
            priced_delay_seconds=QUEUE_LEAD_SECONDS,
        ),
        # A long one waits in the scheduler's shards until a sweep (COMPRESSED_QUEUE_LEAD_SECONDS).
        Scenario(
            "scheduled_long", "/ok", "DELIVERED", 1, scaled(20, scale), mode="scheduler",
            delay_seconds=COMPRESSED_QUEUE_LEAD_SECONDS + 2, priced_delay_seconds=PRICED_LONG_DELAY_SECONDS,
        ),
    ]  # fmt: skip
    assert tuple(scenario.name for scenario in scenarios) == SCENARIO_NAMES + tuple(SCHEDULED_SCENARIOS)
    memory = lambda_memory_mb()
    access_line = access_log_bytes()
    prices = load_prices(PRICES_PATH)
    fixed = fixed_monthly_costs(prices, memory["default_mb"])
    results: dict[str, Any] = {"scenarios": {}, "skipped": {}, "cost_per_million": {}}
    started = time.perf_counter()
    # Retry waits scaled to ~nothing: the slow lane's ~51 h maximum horizon takes under 2 s.
    # The scenarios share one target origin and price every retry: the circuit breaker (which would
    # open it and pause the rest) must not, so its threshold is out of reach; its failure-path
    # writes (one ADD per failed attempt) are still counted.
    environment = {Setting.BREAKER_FAILURE_THRESHOLD: "1000000"}
    with (
        TargetServer() as target,
        # The reconciler and the scheduler run on schedules (fixed costs, priced apart): not here, where
        # their rounds would land in whichever scenario is running. scheduled_long sweeps by itself.
        LocalRelay(
            port=0,
            time_scale=1e-5,
            reconcile_every_seconds=86_400,
            schedule_every_seconds=86_400,
            environment=environment,
        ) as relay,
    ):
        _emit_metrics()
        warm = Scenario("warmup", "/ok", "DELIVERED", 1, 3)
        run_scenario(relay, target, warm, timeout=60)
        authorizer = measure_authorizer(relay, 5)
        pricing = Pricing(
            authorizer, memory["default_mb"], fast.waits, fast_full_jitter, access_line, fixed["usd_per_month"], prices
        )
        for scenario in scenarios:
            if scenario.name == next(iter(SCHEDULED_SCENARIOS)):
                # The slow lane left failures in the shared target's health; a success clears them (a
                # write, not priced), so the delayed messages find the target as success_single did.
                run_scenario(relay, target, warm, timeout=60)
            try:
                outcome = run_scenario(relay, target, scenario, timeout=180)
            except SkippedScenario as skipped:
                results["skipped"][scenario.name] = str(skipped)
                results["cost_per_million"][scenario.name] = None
                continue
            entry = price_scenario(outcome, pricing, prices)
            results["scenarios"][scenario.name] = entry
            if scenario.name in SCHEDULED_SCENARIOS:
                continue  # in cost_per_million.scheduled, with the extra over success_single
            results["cost_per_million"][scenario.name] = {
                **entry["usd_per_million_aws_like"],
                "times": "aws_like",
                "aws_like": entry["usd_per_million_aws_like"],
                "local_times": entry["usd_per_million_local_times"],
            }
    results["cost_per_million"]["scheduled"] = scheduled_summary(results["scenarios"], prices)
    measured_slow = results["scenarios"]["slow_lane"]["details"]["executions_per_message"].get(
        "relay-delivery-slow", {}
    )
    results["slow_lane_check"] = {
        "default_policy_attempts": {"inline": inline, "fast": fast.attempts, "slow": slow.attempts},
        "slow_lane_initial_wait_seconds": slow.initial_wait_seconds,
        "standard_transitions_arithmetic": slow_lane_transitions(slow.initial_wait_seconds, slow.attempts),
        "standard_transitions_measured": measured_slow.get("transitions"),
        "slow_lane_max_horizon_hours": slow.max_horizon_seconds / 3600,
        "fast_lane_waits_seconds": list(fast.waits),
        "fast_lane_full_jitter": fast_full_jitter,
    }
    # The schedule's own Step Functions price (arithmetic, independent of the scenarios above).
    schedule_cost = retry_schedule_cost(fast, slow, prices)
    results["retry_schedule_cost"] = {
        **asdict(schedule_cost),
        "retried_usd_per_million": schedule_cost.retried_usd_per_million,
    }
    results["authorizer_per_invocation"] = {
        "wall_ms": authorizer["lambda_ms"].get(AUTHORIZER, 0.0) / max(1, authorizer["lambda_calls"].get(AUTHORIZER, 0)),
        "aws_like_ms": authorizer["lambda_aws_ms"].get(AUTHORIZER, 0.0)
        / max(1, authorizer["lambda_calls"].get(AUTHORIZER, 0)),
        "read_units": sum(row[-1] for row in authorizer["ddb_read_units"])
        / max(1, authorizer["lambda_calls"].get(AUTHORIZER, 0)),
    }
    metric_keys = sorted({key for entry in results["scenarios"].values() for key in entry["counted"]["metric_keys"]})
    results["custom_metrics"] = {
        "metrics": metric_keys,
        "count": len(metric_keys),
        "usd_per_month": custom_metrics_usd_per_month(len(metric_keys), prices),
        "note": "EMF-extracted metrics are custom metrics ($0.30 per metric-month): a fixed monthly cost "
        "per distinct name + dimensions seen in these runs, not per message; the EMF lines themselves "
        "are priced per message as log ingestion.",
    }
    results["lambda_memory"] = memory
    results["assumptions"] = {
        **ASSUMPTIONS,
        "lambda_platform_log_bytes_per_invocation": PLATFORM_LOG_BYTES,
        "api_gateway_access_log_bytes_per_request": access_line,
        "time_scale": 1e-5,
        "compressed_queue_lead_seconds": COMPRESSED_QUEUE_LEAD_SECONDS,
        "scheduler_sweeps_per_month": SWEEPS_PER_MONTH,
        "aws_call_latency_ms": AWS_CALL_LATENCY_MS,
        "aws_target_request_ms": AWS_TARGET_REQUEST_MS,
        "aws_sfn_task_overhead_ms": AWS_SFN_TASK_OVERHEAD_MS,
        "tls_and_tcp_bytes_per_connection": TLS_AND_TCP_BYTES_PER_CONNECTION,
        "tcp_ip_bytes_per_request": TCP_IP_BYTES_PER_REQUEST,
    }
    results["fixed_monthly"] = fixed
    results["prices"] = prices
    results["peers"] = {
        name: value
        for name, value in prices["peers_per_million_messages"].items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    results["seconds"] = time.perf_counter() - started
    return results


def scheduled_summary(scenarios: dict[str, Any], prices: dict[str, Any]) -> dict[str, Any] | None:
    """`cost_per_million.scheduled`: each delayed scenario's price (AWS-like times, both time models
    inside), its extra over success_single, and the long path at other horizons; None when any of
    them did not run."""
    base = scenarios.get("success_single")
    if base is None or any(name not in scenarios for name in SCHEDULED_SCENARIOS):
        return None
    summary: dict[str, Any] = {"times": "aws_like", "goal_extra_usd_per_million": GOAL_SCHEDULED_EXTRA_USD_PER_MILLION}
    extra: dict[str, Any] = {}
    for name, label in SCHEDULED_SCENARIOS.items():
        entry = scenarios[name]
        aws, local = entry["usd_per_million_aws_like"], entry["usd_per_million_local_times"]
        summary[label] = {
            **aws,
            "aws_like": aws,
            "local_times": local,
            "priced_delay_seconds": entry["details"]["waiting"]["priced_delay_seconds"],
        }
        extra[label] = {key: aws[key] - base["usd_per_million_aws_like"][key] for key in ("request_path", "all_in")} | {
            "local_times": {key: local[key] - base["usd_per_million_local_times"][key] for key in local}
        }
    summary["extra_over_success_single"] = extra
    summary["goal_met"] = {
        label: extra[label]["request_path"] <= GOAL_SCHEDULED_EXTRA_USD_PER_MILLION for label in extra
    }
    long = scenarios["scheduled_long"]
    per_day = waiting_usd_per_million_per_day(long["details"]["waiting"], prices)
    summary["long_delay_per_day_waiting"] = per_day
    priced_days = long["details"]["waiting"]["priced_delay_seconds"] / 86_400
    summary["long_delay_by_horizon_days"] = {
        str(days): {
            key: summary["long_delay"][key] + (days - priced_days) * per_day[key] for key in ("request_path", "all_in")
        }
        for days in HORIZON_DAYS
    }
    sweeps = long["details"]["scheduler_sweeps"]
    summary["scheduler_sweeps"] = {
        "request_path_usd_per_month": sweeps["request_path_usd_per_month"],
        "amortised_over_messages_per_month": sweeps["messages_per_month"],
        "request_path_usd_per_million": long["usage_per_message_aws_like"]["scheduler_sweeps_usd_per_million"],
        "per_sweep": sweeps["per_sweep"],
    }
    return summary


def waiting_usd_per_million_per_day(waiting: dict[str, Any], prices: dict[str, Any]) -> dict[str, float]:
    """What one more day of waiting adds per million messages: storage (request path) and PITR."""
    storage = waiting_gb_months(waiting["table_bytes_per_message"] + waiting["index_bytes_per_message"], 86_400)
    pitr = waiting_gb_months(waiting["table_bytes_per_message"], 86_400)
    storage_usd = storage * prices["dynamodb_storage"]["per_gb_month"] * 1_000_000
    pitr_usd = pitr * prices["dynamodb_pitr"]["per_gb_month"] * 1_000_000
    return {"request_path": storage_usd, "all_in": storage_usd + pitr_usd}


def _emit_metrics() -> None:
    """Undo relay dev's metric silencing (relay/local/emulator.py replaces `metrics.add_metric` with a
    no-op): the handlers' EMF lines are printed as deployed and counted as log ingestion."""
    from functions.adapters import observability

    observability.metrics.__dict__.pop("add_metric", None)


def price_scenario(outcome: dict[str, Any], pricing: Pricing, prices: dict[str, Any]) -> dict[str, Any]:
    usage, details = usage_per_message(outcome, pricing, "local")
    usage_aws, details_aws = usage_per_message(outcome, pricing, "aws")
    items, items_aws = line_items(usage, prices), line_items(usage_aws, prices)
    return {
        "messages": outcome["scenario"]["messages"],
        "mode": outcome["scenario"]["mode"],
        "messages_per_second_assumed": outcome["scenario"]["messages_per_second"],
        "local_messages_per_second": outcome["local_messages_per_second"],
        "api_requests": outcome["api_requests"],
        "outcomes": outcome["outcomes"],
        "as_expected": outcome["as_expected"],
        "storage_bytes_per_message": outcome["storage_bytes_per_message"],
        "table_bytes_per_message": outcome["table_bytes_per_message"],
        "index_bytes_per_message": outcome["index_bytes_per_message"],
        "usage_per_message": asdict(usage),
        "usage_per_message_aws_like": asdict(usage_aws),
        "line_items": [asdict(item) for item in items],
        "line_items_aws_like": [asdict(item) for item in items_aws],
        "usd_per_million": _totals(items),
        "usd_per_million_local_times": request_path_and_all_in(items),
        "usd_per_million_aws_like": request_path_and_all_in(items_aws),
        "details": {
            **details,
            "express_modeled_retry_wait_seconds_per_message": details_aws[
                "express_modeled_retry_wait_seconds_per_message"
            ],
        },
        "tracing": [
            asdict(cost)
            for cost in tracing_costs(
                details["step_functions_log_bytes_per_message_by_tracing"], Tracing.ERRORS.value, total(items), prices
            )
        ],
        "counted": outcome["counted"],
    }


def _totals(items: list[LineItem]) -> dict[str, float]:
    return {
        "core": total(items, "core"),
        "observability": total(items, "observability"),
        "other": total(items, "other"),
        "all": total(items),
    }


def fixed_monthly_costs(prices: dict[str, Any], memory_mb: int) -> dict[str, Any]:
    """What runs whatever the volume: the reconciler's schedule and the SQS poller's long polls."""
    runs = SECONDS_PER_MONTH / 60  # rate(1 minute)
    # Eventually consistent, empty queries: one per due shard (8), the resuming and open targets
    # lists, the senders list, and one sender's unclaimed sweep.
    reconciler_reads = runs * 12 * 0.5
    reconciler = (
        runs * prices["lambda"]["per_million_requests"] / 1e6
        + runs * 0.1 * memory_mb / 1024 * prices["lambda"]["per_gb_second_arm64"]
        + reconciler_reads * prices["dynamodb"]["per_million_read_request_units"] / 1e6
    )
    # Lambda's SQS event source long-polls (20 s) with about 5 pollers while the queue is idle.
    idle_receives = SECONDS_PER_MONTH / 20 * 5
    return {
        "reconciler_usd_per_month": reconciler,
        "reconciler_assumption": "43,200 runs/month of ~100 ms at the deployed memory, 12 empty queries each "
        "(8 due shards, resuming and open targets, senders, one sender's unclaimed sweep)",
        "sqs_idle_polling_usd_per_month": idle_receives * prices["sqs"]["per_million_requests"] / 1e6,
        "sqs_idle_polling_assumption": "5 pollers x 20 s long polls on an idle queue",
        "usd_per_month": reconciler + idle_receives * prices["sqs"]["per_million_requests"] / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    return section_main(__doc__.splitlines()[0] if __doc__ else "", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
