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

Three scenarios, each message sent and finished before the next (as at low volume, so SQS batches
hold one message): success (target 200), retried (503 x3 then 200), slow lane (always 500). The
retry policy is the default one of cdk.json / statemachines/, with retry waits scaled to almost
nothing; the waits' cost (Express duration) is added back arithmetically from retry_schedule.

Run as `python -m bench.cost_run --out FILE` (bench.run does it in a fresh process).
"""

from __future__ import annotations

import argparse
import ast
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
from pathlib import Path
from typing import Any

from bench.common import PRICES_PATH, ROOT, bench_scale, machine_info, one_kb_body, scaled, write_json
from bench.cost_model import (
    EXECUTION_DATA_FIELDS,
    IndexSpec,
    Item,
    Usage,
    event_type,
    execution_log_bytes,
    expected_wait_seconds,
    express_gb_seconds,
    index_storage_bytes,
    index_write_units,
    item_size,
    lambda_billed_ms,
    line_items,
    load_prices,
    read_units,
    slow_lane_transitions,
    sqs_requests,
    table_keys,
    total,
    tracing_costs,
    update_write_units,
    write_units,
)
from relay.tracing import Tracing, execution_logging

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
BILLED_BUCKETS = (*MESSAGE_PATH_FUNCTIONS, EVENT_SOURCE)

# Assumptions of the amortised and modeled lines (stated in the report).
ASSUMPTIONS: dict[str, Any] = {
    "messages_per_month": 1_000_000,
    "active_tokens": 1,
    "authorizer_cache_seconds": 300,  # stacks/constructs/authentication.py AUTHORIZER_CACHE_TTL
    "warm_deliver_containers": 2,
    "secret_cache_seconds": 300,  # functions/shared/secrets.py CACHE_SECONDS
    "senders": 1,
    "xray_traces_per_message": 2,  # the API request's trace and the delivery's (SQS -> dispatcher -> lane)
    "xray_sampled_fraction": 1.0,  # default rule: 1 request/s reservoir + 5%; 1M/month is 0.4 msg/s
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

        def call_in_bucket(*call_args: Any, **call_kwargs: Any) -> Any:
            stack = _stack()
            saved = stack[:]
            stack[:] = inherited
            try:
                return fn(*call_args, **call_kwargs)
            finally:
                stack[:] = saved

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
    # CloudWatch Logs bytes of this run under each `relay.tracing` mode (relay/tracing.py).
    log_bytes_by_tracing: dict[str, int]
    retries_by_state: dict[str, int]
    status: str


@dataclass
class Recorder:
    lambda_calls: Counter[str] = field(default_factory=Counter)
    lambda_ms: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    lambda_billed_ms: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    lambda_errors: Counter[str] = field(default_factory=Counter)
    log_bytes: Counter[str] = field(default_factory=Counter)
    aws_calls: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (bucket, service, op)
    ddb_write_units: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (bucket, op, table|index)
    ddb_read_units: defaultdict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
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
                "lambda_calls", "lambda_ms", "lambda_billed_ms", "lambda_errors", "log_bytes", "aws_calls",
                "ddb_write_units", "ddb_read_units", "sqs_requests", "executions", "uncounted",
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
        if stack:
            with RECORDER.lock:
                RECORDER.log_bytes[stack[-1]] += len(text.encode("utf-8"))
        else:
            self.real.write(text)
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return False


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
            stack = _stack()
            stack.append(function_name)
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
                with RECORDER.lock:
                    RECORDER.inflight_invocations -= 1
                    RECORDER.lambda_calls[function_name] += 1
                    RECORDER.lambda_ms[function_name] += elapsed_ms
                    RECORDER.lambda_billed_ms[function_name] += lambda_billed_ms(elapsed_ms)

        LocalAws.invoke = counting_invoke  # type: ignore[method-assign,assignment]
        _pool_tasks_inherit_bucket()

        original_call = BaseClient._make_api_call  # type: ignore[attr-defined]
        hooks = self

        def counting_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            service = client.meta.service_model.service_name
            bucket = current_bucket()
            with RECORDER.lock:
                RECORDER.aws_calls[(bucket, service, operation)] += 1
            if service == "dynamodb":
                return hooks._dynamodb(original_call, client, operation, params, bucket)
            response = original_call(client, operation, params)
            if service == "sqs":
                hooks._sqs(operation, params, response, bucket)
            return response

        BaseClient._make_api_call = counting_call  # type: ignore[attr-defined]

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
        from botocore.exceptions import ClientError

        table = params.get("TableName", "")
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            key = self._key_of(params["Item"]) if operation == "PutItem" else params["Key"]
            before = _moto_item(table, key)
            try:
                response = original(client, operation, params)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    # A failed condition still consumes the write, sized on the larger image.
                    consumed = write_units(max(item_size(before), item_size(params.get("Item"))))
                    with RECORDER.lock:
                        RECORDER.ddb_write_units[(bucket, f"{operation} (condition failed)", "table")] += consumed
                raise
            after = None if operation == "DeleteItem" else _moto_item(table, key)
            with RECORDER.lock:
                RECORDER.ddb_write_units[(bucket, operation, "table")] += update_write_units(before, after)
                for index in self.indexes:
                    consumed = index_write_units(before, after, index, self.base_keys)
                    if consumed:
                        RECORDER.ddb_write_units[(bucket, operation, index.name)] += consumed
            return response
        response = original(client, operation, params)
        units: float | None = None
        if operation == "GetItem":
            units = read_units(item_size(response.get("Item")), bool(params.get("ConsistentRead")))
        elif operation in ("Query", "Scan"):
            returned = sum(item_size(item) for item in response.get("Items", []))
            units = read_units(returned, bool(params.get("ConsistentRead")))
        elif operation == "BatchGetItem":
            units = 0.0
            for name, request in params["RequestItems"].items():
                found = response.get("Responses", {}).get(name, [])
                consistent = bool(request.get("ConsistentRead"))
                units += sum(read_units(item_size(item), consistent) for item in found)
                units += read_units(0, consistent) * max(0, len(request["Keys"]) - len(found))
        elif operation not in ("DescribeTable", "CreateTable", "UpdateTimeToLive", "DescribeTimeToLive"):
            with RECORDER.lock:
                RECORDER.uncounted[f"dynamodb:{operation}"] += 1
        if units is not None:
            with RECORDER.lock:
                RECORDER.ddb_read_units[(bucket, operation)] += units
        return response

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
    for event in history:
        kind = str(getattr(event["type"], "value", event["type"]))
        if kind.endswith("StateEntered"):
            states_entered += 1
            current = event.get("stateEnteredEventDetails", {}).get("name", "")
            if kind == "TaskStateEntered":
                entered[current] += 1
        elif kind in ("TaskScheduled", "LambdaFunctionScheduled"):
            scheduled[current] += 1
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
    )


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


def _post(url: str, token: str, message: dict[str, Any]) -> int:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        body = json.dumps(message).encode()
        connection.request(
            "POST",
            "/messages",
            body=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _head(table: str, sender: str, message_id: str) -> Item | None:
    return _moto_item(table, {"pk": {"S": f"MSG#{sender}#{message_id}"}, "sk": {"S": "MSG"}})


def _queues_empty(local: Any) -> bool:
    from moto.sqs.models import sqs_backends

    from relay.local.emulator import ACCOUNT_ID, REGION

    backend = sqs_backends[ACCOUNT_ID][REGION]
    queue = backend.queues.get(local.queue_name)
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


def _send_and_finish(relay: Any, target_url: str, scenario: Scenario, message_id: str, timeout: float) -> Item:
    message = {
        "messageId": message_id,
        "senderId": "dev",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "targetUrl": f"{target_url}{scenario.path}",
        "body": one_kb_body(message_id),
    }
    status = _post(relay.url, relay.dev_token, message)
    if status != 202:
        raise RuntimeError(f"{scenario.name}: POST /messages answered {status}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        head = _head(relay.local.table_name, "dev", message_id)
        if head and head["status"]["S"] in ("DELIVERED", "FAILED"):
            _wait_quiet(relay.local, timeout)
            return head
        time.sleep(0.02)
    raise TimeoutError(f"{scenario.name}: {message_id} did not finish")


def _freeze() -> dict[str, Any]:
    with RECORDER.lock:
        return {
            "lambda_calls": dict(RECORDER.lambda_calls),
            "lambda_ms": dict(RECORDER.lambda_ms),
            "lambda_billed_ms": dict(RECORDER.lambda_billed_ms),
            "lambda_errors": dict(RECORDER.lambda_errors),
            "log_bytes": dict(RECORDER.log_bytes),
            "aws_calls": [[*key, count] for key, count in sorted(RECORDER.aws_calls.items())],
            "ddb_write_units": [[*key, units] for key, units in sorted(RECORDER.ddb_write_units.items())],
            "ddb_read_units": [[*key, units] for key, units in sorted(RECORDER.ddb_read_units.items())],
            "sqs_requests": [[*key, count] for key, count in sorted(RECORDER.sqs_requests.items())],
            "sqs_empty_receives": RECORDER.sqs_empty_receives,
            "executions": [asdict(record) for record in RECORDER.executions],
            "uncounted": dict(RECORDER.uncounted),
        }


def run_scenario(relay: Any, target_url: str, scenario: Scenario, timeout: float) -> dict[str, Any]:
    _wait_quiet(relay.local, timeout)
    RECORDER.reset()
    outcomes: Counter[str] = Counter()
    storage_bytes = 0
    for _ in range(scenario.messages):
        message_id = f"cost-{scenario.name}-{uuid.uuid4().hex[:10]}"
        head = _send_and_finish(relay, target_url, scenario, message_id, timeout)
        outcomes[f"{head['status']['S']}/{head['attempts']['N']}"] += 1
        storage_bytes += _stored_bytes(relay.local.table_name, f"MSG#dev#{message_id}")
    counted = _freeze()
    expected = f"{scenario.expected_status}/{scenario.expected_attempts}"
    return {
        "scenario": asdict(scenario),
        "outcomes": dict(outcomes),
        "as_expected": outcomes == Counter({expected: scenario.messages}),
        "storage_bytes_per_message": storage_bytes / scenario.messages,
        "counted": counted,
    }


_HOOKS: Hooks | None = None


def _stored_bytes(table: str, partition_key: str) -> int:
    """Table bytes of one message (items + 100 bytes of overhead each) and its index entries."""
    assert _HOOKS is not None
    items = _message_items(table, partition_key)
    return sum(item_size(item) + 100 + index_storage_bytes(item, _HOOKS.indexes, _HOOKS.base_keys) for item in items)


def measure_authorizer(relay: Any, invocations: int) -> dict[str, Any]:
    """The authorizer as API Gateway calls it on a cache miss (locally the server checks tokens itself)."""
    RECORDER.reset()
    event = {
        "type": "TOKEN",
        "authorizationToken": f"Bearer {relay.dev_token}",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc123def4/prod/POST/messages",
    }
    for _ in range(invocations):
        relay.local.invoke("relay-authorizer", event)
    return _freeze()


# -- turning counts into usage per message ------------------------------------------------------------


def lambda_memory_mb() -> dict[str, Any]:
    """The deployed memory size, read from stacks/constructs/functions.py (and any override)."""
    source = (ROOT / "stacks" / "constructs" / "functions.py").read_text(encoding="utf-8")
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
    tree = ast.parse((ROOT / "relay" / "api_mapping.py").read_text(encoding="utf-8"))
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


def usage_per_message(
    result: dict[str, Any],
    authorizer: dict[str, Any],
    memory_mb: int,
    fast_waits: tuple[float, ...],
    fast_full_jitter: bool,
    access_log_line: int,
) -> tuple[Usage, dict[str, Any]]:
    counted = result["counted"]
    n = result["scenario"]["messages"]
    usage = Usage(api_requests=1.0)

    for name in MESSAGE_PATH_FUNCTIONS:
        calls = counted["lambda_calls"].get(name, 0)
        if calls:
            usage.lambda_invocations[name] = calls / n
            usage.lambda_billed_ms[name] = counted["lambda_billed_ms"].get(name, 0.0) / n
            usage.lambda_memory_mb[name] = memory_mb

    # The authorizer: one invocation per token per cache period, spread over the month's messages.
    per_message = (
        ASSUMPTIONS["active_tokens"]
        * SECONDS_PER_MONTH
        / ASSUMPTIONS["authorizer_cache_seconds"]
        / ASSUMPTIONS["messages_per_month"]
    )
    auth_calls = authorizer["lambda_calls"].get("relay-authorizer", 0) or 1
    usage.lambda_invocations["relay-authorizer (amortised)"] = per_message
    usage.lambda_billed_ms["relay-authorizer (amortised)"] = (
        authorizer["lambda_billed_ms"].get("relay-authorizer", 0.0) / auth_calls * per_message
    )
    usage.lambda_memory_mb["relay-authorizer (amortised)"] = memory_mb
    auth_reads = sum(row[-1] for row in authorizer["ddb_read_units"]) / auth_calls * per_message

    express_gb_s = 0.0
    express_runs = standard_transitions = 0
    sfn_log_by_tracing = dict.fromkeys((mode.value for mode in Tracing), 0.0)
    sfn_log_by_machine: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(sfn_log_by_tracing, 0.0))
    modeled_waits = 0.0
    for record in counted["executions"]:
        if record["machine_type"] == "EXPRESS":
            express_runs += 1
            duration = record["duration_seconds"]
            if record["machine"] == "relay-delivery-fast":
                wait = expected_wait_seconds(fast_waits, record["retries_by_state"].get("Deliver", 0), fast_full_jitter)
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

    writes = [row for row in counted["ddb_write_units"] if row[0] in BILLED_BUCKETS]
    reads = [row for row in counted["ddb_read_units"] if row[0] in BILLED_BUCKETS]
    usage.dynamodb_write_units = sum(row[-1] for row in writes) / n
    usage.dynamodb_read_units = sum(row[-1] for row in reads) / n + auth_reads
    ttl_days = 30
    usage.dynamodb_storage_gb_months = result["storage_bytes_per_message"] / 1024**3 * ttl_days / 30
    usage.sqs_requests = sum(row[-1] for row in counted["sqs_requests"] if row[0] in BILLED_BUCKETS) / n

    usage.secrets_calls = (
        ASSUMPTIONS["warm_deliver_containers"]
        * ASSUMPTIONS["senders"]
        * SECONDS_PER_MONTH
        / ASSUMPTIONS["secret_cache_seconds"]
        / ASSUMPTIONS["messages_per_month"]
    )

    invocations = sum(usage.lambda_invocations.values())
    app_log = sum(counted["log_bytes"].get(name, 0) for name in MESSAGE_PATH_FUNCTIONS) / n
    # The log lines priced with the rest are those of the default deployment (relay.tracing: errors).
    sfn_log = sfn_log_by_tracing[Tracing.ERRORS.value]
    usage.log_bytes = app_log + invocations * PLATFORM_LOG_BYTES + access_log_line + sfn_log
    usage.xray_traces = ASSUMPTIONS["xray_traces_per_message"] * ASSUMPTIONS["xray_sampled_fraction"]

    secrets_measured = sum(
        row[-1] for row in counted["aws_calls"] if row[1] == "secretsmanager" and row[2] == "GetSecretValue"
    )
    details = {
        "lambda_wall_ms_per_invocation": {
            name: counted["lambda_ms"][name] / counted["lambda_calls"][name]
            for name in counted["lambda_calls"]
            if counted["lambda_calls"][name]
        },
        "dynamodb_writes_by_call": _per_message_rows(writes, n),
        "dynamodb_reads_by_call": _per_message_rows(reads, n),
        "sqs_requests_by_call": _per_message_rows(
            [row for row in counted["sqs_requests"] if row[0] in BILLED_BUCKETS], n
        ),
        "executions_per_message": _execution_summary(counted["executions"], n),
        "express_modeled_retry_wait_seconds_per_message": modeled_waits / n,
        "log_bytes_per_message": {
            "function_output (Powertools logs + EMF metrics)": app_log,
            "lambda_platform_lines": invocations * PLATFORM_LOG_BYTES,
            "api_gateway_access_log": access_log_line,
            "step_functions_execution_logs (tracing errors)": sfn_log,
        },
        "step_functions_log_bytes_per_message_by_tracing": sfn_log_by_tracing,
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
            "RELAY_HOME": os.environ.get("RELAY_HOME") or f"/tmp/relay-bench-home-{os.getpid()}",
        }
    )
    os.environ.pop("POWERTOOLS_DEV", None)
    sys.stdout = _LogCapture(sys.stdout)


def run(scale: float) -> dict[str, Any]:
    global _HOOKS
    _prepare_environment()
    from functions.shared.config import BREAKER_THRESHOLD_VARIABLE, FirstAttempt
    from relay.definitions import read_definition, retry_schedule
    from relay.local.emulator import template_topology
    from relay.local.runtime import LocalRelay
    from relay.local.targets import TargetServer
    from relay.project_config import delivery_policy, first_attempt

    policy = delivery_policy()
    # The dispatcher's own first attempt (delivery.firstAttempt: inline) comes before the lanes'.
    inline = 1 if first_attempt() == FirstAttempt.INLINE else 0
    fast = retry_schedule("delivery_fast.asl.json", policy.get("fastLane"))
    slow = retry_schedule("delivery_slow.asl.json", policy.get("slowLane"))
    fast_full_jitter = '"JitterStrategy": "FULL"' in json.dumps(read_definition("delivery_fast.asl.json"))
    _HOOKS = Hooks(template_topology().table.definition)
    _HOOKS.install()

    scenarios = [
        Scenario("success", "/ok", "DELIVERED", 1, scaled(20, scale)),
        Scenario("retried", "/flaky/3", "DELIVERED", 4, scaled(10, scale)),
        Scenario("slow_lane", "/fail", "FAILED", inline + fast.attempts + slow.attempts, scaled(4, scale)),
    ]
    memory = lambda_memory_mb()
    access_line = access_log_bytes()
    prices = load_prices(PRICES_PATH)
    results: dict[str, Any] = {"scenarios": {}}
    started = time.perf_counter()
    # Retry waits scaled to ~nothing: the slow lane's ~51 h maximum horizon takes under 2 s.
    # The scenarios share one target origin and price every retry: the circuit breaker (which would
    # open it and pause the rest) must not, so its threshold is out of reach; its failure-path
    # writes (one ADD per failed attempt) are still counted.
    environment = {BREAKER_THRESHOLD_VARIABLE: "1000000"}
    with (
        TargetServer() as target,
        LocalRelay(port=0, time_scale=1e-5, reconcile_every_seconds=86_400, environment=environment) as relay,
    ):
        warm = Scenario("warmup", "/ok", "DELIVERED", 1, 3)
        run_scenario(relay, target.url, warm, timeout=60)
        authorizer = measure_authorizer(relay, 5)
        for scenario in scenarios:
            outcome = run_scenario(relay, target.url, scenario, timeout=120)
            usage, details = usage_per_message(
                outcome, authorizer, memory["default_mb"], fast.waits, fast_full_jitter, access_line
            )
            items = line_items(usage, prices)
            results["scenarios"][scenario.name] = {
                "messages": scenario.messages,
                "outcomes": outcome["outcomes"],
                "as_expected": outcome["as_expected"],
                "storage_bytes_per_message": outcome["storage_bytes_per_message"],
                "usage_per_message": asdict(usage),
                "line_items": [asdict(item) for item in items],
                "usd_per_million": {
                    "core": total(items, "core"),
                    "observability": total(items, "observability"),
                    "all": total(items),
                },
                "details": details,
                "tracing": [
                    asdict(cost)
                    for cost in tracing_costs(
                        details["step_functions_log_bytes_per_message_by_tracing"],
                        Tracing.ERRORS.value,
                        total(items),
                        prices,
                    )
                ],
                "counted": outcome["counted"],
            }
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
    results["authorizer_per_invocation"] = {
        "wall_ms": authorizer["lambda_ms"].get("relay-authorizer", 0.0)
        / max(1, authorizer["lambda_calls"].get("relay-authorizer", 0)),
        "read_units": sum(row[-1] for row in authorizer["ddb_read_units"])
        / max(1, authorizer["lambda_calls"].get("relay-authorizer", 0)),
    }
    results["lambda_memory"] = memory
    results["assumptions"] = {
        **ASSUMPTIONS,
        "lambda_platform_log_bytes_per_invocation": PLATFORM_LOG_BYTES,
        "api_gateway_access_log_bytes_per_request": access_line,
        "dynamodb_ttl_days": 30,
        "time_scale": 1e-5,
    }
    results["fixed_monthly"] = fixed_monthly_costs(prices, memory["default_mb"])
    results["prices"] = prices
    results["peers"] = {
        name: value
        for name, value in prices["peers_per_million_messages"].items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    results["seconds"] = time.perf_counter() - started
    return results


def fixed_monthly_costs(prices: dict[str, Any], memory_mb: int) -> dict[str, Any]:
    """What runs whatever the volume: the reconciler's schedule and the SQS poller's long polls."""
    runs = SECONDS_PER_MONTH / 60  # rate(1 minute)
    reconciler_reads = runs * 8 * 0.5  # one eventually consistent query per due shard (8), empty
    reconciler = (
        runs * prices["lambda"]["per_million_requests"] / 1e6
        + runs * 0.1 * memory_mb / 1024 * prices["lambda"]["per_gb_second_arm64"]
        + reconciler_reads * prices["dynamodb"]["per_million_read_request_units"] / 1e6
    )
    # Lambda's SQS event source long-polls (20 s) with about 5 pollers while the queue is idle.
    idle_receives = SECONDS_PER_MONTH / 20 * 5
    return {
        "reconciler_usd_per_month": reconciler,
        "reconciler_assumption": "43,200 runs/month of ~100 ms at the deployed memory, 8 empty due-index queries each",
        "sqs_idle_polling_usd_per_month": idle_receives * prices["sqs"]["per_million_requests"] / 1e6,
        "sqs_idle_polling_assumption": "5 pollers x 20 s long polls on an idle queue",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    results = run(bench_scale())
    results["machine"] = machine_info()
    write_json(Path(args.out), results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
