"""The embedded AWS of `relay dev` and the tests: moto in-process, real handlers, real ASL.

This is the only place that knows Relay runs locally. It
- starts moto with its Step Functions interpreter and without Docker,
- creates the table and queues with the same keys and indexes as the CDK stack,
- routes every Lambda invoke (from the interpreter or from code) to the real handler, in-process,
- loads `statemachines/*.asl.json` with the same `${Placeholder}` substitution as the stack,
- runs EXPRESS machines synchronously (StartSyncExecution is missing from moto) and
- scales Retry/Wait sleeps by `time_scale`, leaving counts and computed waits intact.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import importlib
import json
import logging
import os
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

from relay.definitions import render_definition

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"

Handler = Callable[[dict[str, Any], Any], Any]

# Lambda function name -> handler, the same handlers the stack deploys.
FUNCTIONS: dict[str, str] = {
    "relay-validate": "functions.validate.handler.lambda_handler",
    "relay-dedup": "functions.dedup.handler.lambda_handler",
    "relay-store": "functions.store.handler.lambda_handler",
    "relay-enqueue": "functions.enqueue.handler.lambda_handler",
    "relay-dispatcher": "functions.dispatcher.handler.lambda_handler",
    "relay-deliver": "functions.deliver.handler.lambda_handler",
    "relay-fail": "functions.finalize.handler.lambda_handler",
    "relay-handoff": "functions.handoff.handler.lambda_handler",
    "relay-api": "functions.api.handler.lambda_handler",
    "relay-authorizer": "functions.authorizer.handler.lambda_handler",
    "relay-reconciler": "functions.reconciler.handler.lambda_handler",
}
_DELIVERY_FUNCTIONS = {
    "DeliverFunctionArn": "relay-deliver",
    "FailFunctionArn": "relay-fail",
    "HandoffFunctionArn": "relay-handoff",
}

# State machine name -> (file, type, placeholder -> function name, delivery policy key)
STATE_MACHINES: dict[str, tuple[str, str, dict[str, str], str | None]] = {
    "relay-ingest": (
        "ingest.asl.json",
        "EXPRESS",
        {
            "ValidateFunctionArn": "relay-validate",
            "DedupFunctionArn": "relay-dedup",
            "StoreFunctionArn": "relay-store",
            "EnqueueFunctionArn": "relay-enqueue",
        },
        None,
    ),
    "relay-delivery-fast": ("delivery_fast.asl.json", "EXPRESS", _DELIVERY_FUNCTIONS, "fastLane"),
    "relay-delivery-slow": ("delivery_slow.asl.json", "STANDARD", _DELIVERY_FUNCTIONS, "slowLane"),
}


_ARN_ENV = {"relay-delivery-fast": "RELAY_FAST_LANE_ARN", "relay-delivery-slow": "RELAY_SLOW_LANE_ARN"}


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"


def table_definition(table_name: str) -> dict[str, Any]:
    """The table as the stack defines it (stacks/constructs/storage.py mirrors this)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "gsi1pk", "AttributeType": "S"},
            {"AttributeName": "gsi1sk", "AttributeType": "S"},
            {"AttributeName": "dueShard", "AttributeType": "S"},
            {"AttributeName": "dueAt", "AttributeType": "N"},
        ],
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "byStatus",
                "KeySchema": [
                    {"AttributeName": "gsi1pk", "KeyType": "HASH"},
                    {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
            {
                "IndexName": "due",
                "KeySchema": [
                    {"AttributeName": "dueShard", "KeyType": "HASH"},
                    {"AttributeName": "dueAt", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            },
        ],
    }


class LocalLambdaContext:
    """Enough of the Lambda context object for Powertools."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function_arn(function_name)
        self.memory_limit_in_mb = 256
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@cache
def _import_handler(dotted: str) -> Handler:
    module_name, _, attribute = dotted.rpartition(".")
    handler: Handler = getattr(importlib.import_module(module_name), attribute)
    return handler


@dataclass
class LocalAws:
    """One embedded AWS: start() it, use boto3 as usual, stop() it."""

    table_name: str = "relay-local"
    queue_name: str = "relay-delivery"
    failed_queue_name: str = "relay-failed"
    time_scale: float = 1.0
    # cdk.json's `relay.delivery` shape: {"fastLane": {...}, "slowLane": {...}}
    delivery_policy: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, Handler] = field(default_factory=dict)
    state_machine_arns: dict[str, str] = field(default_factory=dict)
    queue_urls: dict[str, str] = field(default_factory=dict)
    _mock: Any = None
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> LocalAws:
        if _ACTIVE:
            # moto's backends are process-wide: a second embedded AWS would share (and see) the
            # first one's tables, queues, secrets and runs instead of starting clean.
            raise RuntimeError("another LocalAws is running in this process; stop it first")
        # moto logs every Choice on a missing path as an error; those are normal control flow here.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        base_env = {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "RELAY_TABLE_NAME": self.table_name,
        }
        from moto import mock_aws

        self._mock = mock_aws(
            config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
        )
        self._mock.start()
        _install_patches()
        _ACTIVE.append(self)
        # CloudWatch has no local stand-in, and Powertools flushes every 100 metrics to stdout even
        # when disabled; relay dev's output is for people, so metrics are dropped locally.
        from functions.shared import observability

        observability.metrics.add_metric = lambda *args, **kwargs: None  # type: ignore[method-assign]
        import boto3

        boto3.client("dynamodb", region_name=REGION).create_table(**table_definition(self.table_name))
        boto3.client("dynamodb", region_name=REGION).update_time_to_live(
            TableName=self.table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
        )
        sqs = boto3.client("sqs", region_name=REGION)
        dead_letters = sqs.create_queue(QueueName=f"{self.queue_name}-dlq")["QueueUrl"]
        dead_letters_arn = sqs.get_queue_attributes(QueueUrl=dead_letters, AttributeNames=["QueueArn"])
        self.queue_urls[f"{self.queue_name}-dlq"] = dead_letters
        self.queue_urls[self.queue_name] = sqs.create_queue(
            QueueName=self.queue_name,
            Attributes={
                "VisibilityTimeout": "5",
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dead_letters_arn["Attributes"]["QueueArn"], "maxReceiveCount": "5"}
                ),
            },
        )["QueueUrl"]
        self.queue_urls[self.failed_queue_name] = sqs.create_queue(QueueName=self.failed_queue_name)["QueueUrl"]
        base_env["RELAY_QUEUE_URL"] = self.queue_urls[self.queue_name]
        base_env["RELAY_FAILED_QUEUE_URL"] = self.queue_urls[self.failed_queue_name]
        for name in STATE_MACHINES:
            base_env[_ARN_ENV.get(name, "")] = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{name}"
        base_env.pop("", None)
        self._apply_env({**base_env, **self.environment})

        sfn = boto3.client("stepfunctions", region_name=REGION)
        for name, (file_name, machine_type, placeholders, policy_key) in STATE_MACHINES.items():
            definition = render_definition(
                file_name,
                {key: function_arn(value) for key, value in placeholders.items()},
                self.delivery_policy.get(policy_key) if policy_key else None,
            )
            self.state_machine_arns[name] = sfn.create_state_machine(
                name=name,
                definition=definition,
                roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/relay-local",
                type=machine_type,  # type: ignore[arg-type]
            )["stateMachineArn"]
        return self

    def stop(self) -> None:
        if self._mock is not None:
            self._settle_executions()
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _reset_caches()

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _apply_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        _reset_caches()

    def _settle_executions(self, timeout_seconds: float = 20.0) -> None:
        """Stop this AWS's running executions and wait for their threads, so that nothing of it
        acts on the next embedded AWS (moto's backends and interpreter threads are process-wide).
        A thread still busy after the timeout is refused every later Lambda invoke."""
        from moto.stepfunctions.parser.utils import TMP_THREADS

        backend = _backend()
        for arn in self.state_machine_arns.values():
            with contextlib.suppress(Exception):
                for execution in list(backend.describe_state_machine(arn).executions):
                    stop_execution(execution)
        deadline = time.monotonic() + timeout_seconds
        for thread in list(TMP_THREADS):
            thread.join(max(0.0, deadline - time.monotonic()))
        leftovers = [thread for thread in TMP_THREADS if thread.is_alive()]
        _ORPHANED_THREADS.update(leftovers)
        TMP_THREADS[:] = [thread for thread in TMP_THREADS if thread.is_alive()]
        if leftovers:
            logging.getLogger("relay.local").warning("%d execution threads outlived their LocalAws", len(leftovers))

    # -- running things ----------------------------------------------------------------------------

    def invoke(self, function_name: str, event: dict[str, Any]) -> Any:
        """Run a handler in-process as Lambda would (overrides first, for fault injection)."""
        handler = self.overrides.get(function_name) or _import_handler(FUNCTIONS[function_name])
        return handler(copy.deepcopy(event), LocalLambdaContext(function_name))

    def start_sync_execution(self, state_machine: str, execution_input: dict[str, Any]) -> dict[str, Any]:
        """StartSyncExecution for an EXPRESS machine, run in the calling thread."""
        return run_sync_execution(self.state_machine_arns[state_machine], execution_input)


_ACTIVE: list[LocalAws] = []
# Threads of a stopped LocalAws that were still running a step when it stopped.
_ORPHANED_THREADS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
_PATCH_LOCK = threading.Lock()
_patched = False


def _reset_caches() -> None:
    from functions.shared import aws, config

    config.get_settings.cache_clear()
    aws.reset_process_state()


def stop_execution(execution: Any, error: str = "LocalAwsStopped", cause: str = "the embedded AWS stopped") -> bool:
    """Stop a running execution as its process ending would; False when it had ended first.

    A run that has just started has no evaluation environment yet (moto then fails to stop it), so
    this tries again for a moment.
    """
    deadline = time.monotonic() + 5
    while str(getattr(execution.exec_status, "value", "")) == "RUNNING":
        try:
            execution.stop(stop_date=datetime.datetime.now(tz=datetime.UTC), error=error, cause=cause)
            return True
        except AttributeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    return False


def _current() -> LocalAws:
    if not _ACTIVE:
        raise RuntimeError("no LocalAws is running")
    return _ACTIVE[-1]


def _local_invoke(
    self: Any, function_name: str, qualifier: Any, body: Any, headers: Any, response_headers: Any
) -> bytes:
    name = function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") else function_name
    event = json.loads(body) if body else {}
    try:
        if threading.current_thread() in _ORPHANED_THREADS:
            raise RuntimeError("this run belongs to an embedded AWS that has stopped")
        result = _current().invoke(name, event)
    except Exception as error:
        # Lambda's error envelope: the interpreter reads the error name from errorType, so
        # Retry/Catch on a Relay exception class name work as on AWS.
        response_headers["x-amz-function-error"] = "Unhandled"
        return json.dumps({"errorType": type(error).__name__, "errorMessage": str(error)}).encode()
    return json.dumps(result).encode()


class _ScaledSleep:
    """Stands in for the `time` module inside moto's retrier and Wait state."""

    def __getattr__(self, name: str) -> Any:
        import time

        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        import time

        scale = _ACTIVE[-1].time_scale if _ACTIVE else 1.0
        time.sleep(max(0.0, seconds * scale))


def _install_patches() -> None:
    global _patched
    with _PATCH_LOCK:
        if _patched:
            return
        from moto.awslambda_simple.models import LambdaSimpleBackend
        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
        from moto.stepfunctions.parser.backend import execution_worker

        LambdaSimpleBackend.invoke = _local_invoke  # type: ignore[method-assign]
        _serialise_dynamodb_writes()
        retrier_decl.time = _ScaledSleep()  # type: ignore[assignment]
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

        def scaled_wait(self: Any, env: Any, wait_seconds: int) -> None:
            scale = _ACTIVE[-1].time_scale if _ACTIVE else 1.0
            if wait_seconds > 0:
                env.program_state_event.wait(wait_seconds * scale)

        WaitFunction._wait_interval = scaled_wait  # type: ignore[method-assign]

        # Parsing a definition is two thirds of a run's cost; programs keep per-run state in the
        # evaluation environment, so one parsed program serves every execution of a definition.
        parse = AmazonStateLanguageParser.parse

        @lru_cache(maxsize=32)
        def cached_parse(definition: str) -> Any:
            return parse(definition)

        def entrypoint(worker: Any) -> Any:
            return cached_parse(worker._evaluation_details.state_machine_details.definition)[0]

        execution_worker.ExecutionWorker._get_evaluation_entrypoint = entrypoint  # type: ignore[method-assign,assignment]
        _patched = True


def _serialise_dynamodb_writes() -> None:
    """DynamoDB applies each conditional write atomically; moto's backend is not thread-safe.

    One lock around moto's write paths restores that guarantee, so concurrent twins race exactly
    as they do on AWS (one conditional put wins) instead of on moto's internals.
    """
    import functools

    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in (
        "put_item",
        "update_item",
        "delete_item",
        "transact_write_items",
        "get_item",
        "query",
        "scan",
        "batch_get_item",
        "batch_write_item",
    ):
        if not hasattr(DynamoDBBackend, name):
            continue
        original = getattr(DynamoDBBackend, name)

        def locked(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(*args, **kwargs)

        setattr(DynamoDBBackend, name, functools.wraps(original)(locked))


def _backend() -> Any:
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    return stepfunctions_parser_backends[ACCOUNT_ID][REGION]


def run_sync_execution(
    state_machine_arn: str, execution_input: dict[str, Any], name: str | None = None
) -> dict[str, Any]:
    """Run one execution to its end in this thread and answer like StartSyncExecution."""
    from moto.stepfunctions.parser.backend.execution import SyncExecution
    from moto.stepfunctions.parser.utils import TMP_THREADS

    backend = _backend()
    state_machine = backend.describe_state_machine(state_machine_arn)
    name = name or str(uuid.uuid4())
    execution = SyncExecution(
        name=name,
        sm_type=state_machine.sm_type,
        role_arn=state_machine.roleArn,
        exec_arn=f"arn:aws:states:{REGION}:{ACCOUNT_ID}:express:{state_machine.name}:{name}:{uuid.uuid4()}",
        account_id=ACCOUNT_ID,
        region_name=REGION,
        state_machine=state_machine,
        start_date=datetime.datetime.now(tz=datetime.UTC),
        cloud_watch_logging_session=None,
        input_data=json.dumps(execution_input),
        trace_header=None,
        activity_store={},
    )
    execution.start()
    # moto keeps every worker thread in a module list; a long-running dev server must not.
    TMP_THREADS[:] = [thread for thread in TMP_THREADS if thread.is_alive()]
    output: dict[str, Any] = dict(execution.to_start_sync_execution_output())
    return output
