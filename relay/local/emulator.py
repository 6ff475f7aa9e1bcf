"""The embedded AWS of `relay dev` and the tests: moto in-process, real handlers, real ASL.

This is the only place that knows Relay runs locally. It
- runs the synthesized template (relay/local/template.py reads it; relay/local/synth.py keeps it
  current): the table, queues, usage plans, functions and state machines are the template's,
- starts moto with its Step Functions interpreter and without Docker,
- routes every Lambda invoke (from the interpreter or from code) to the real handler, in-process,
- enforces IAM: each handler, execution and API Gateway call acts as its role from the template
  (relay/local/iam.py),
- runs EXPRESS machines synchronously (StartSyncExecution is missing from moto) and
- scales Retry/Wait sleeps and queue visibility timeouts by `time_scale`, leaving counts and
  computed waits intact.
"""

from __future__ import annotations

import contextlib
import copy
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
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from functions.contract.settings_names import Setting
from relay.local import iam, moto_pace
from relay.local.executions import run_sync_execution, stepfunctions_backend, stop_execution
from relay.local.synth import current_template
from relay.local.template import (
    ACCOUNT_ID,
    DEFAULT_TABLE_NAME,
    FUNCTION,
    QUEUE_VARIABLES,
    REGION,
    Topology,
    arn,
    load_topology,
    shared_environment,
)
from stacks.definitions import DELIVERY_LANES, apply_delivery_policy, machine_name
from stacks.schedule import delivery_schedule

__all__ = [
    "ACCOUNT_ID",
    "REGION",
    "LocalAws",
    "LocalLambdaContext",
    "run_sync_execution",
    "template_topology",
]

Handler = Callable[[dict[str, Any], Any], Any]

# The local name of each delivery lane's machine (stacks.definitions.DELIVERY_LANES names its file).
LANE_MACHINES = {lane: machine_name(file_name) for lane, file_name in DELIVERY_LANES.items()}
LOCAL_MIN_VISIBILITY_SECONDS = 5
_LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


def template_topology(template: Path | None = None, table_name: str = DEFAULT_TABLE_NAME) -> Topology:
    """What relay dev runs (`template`, or the current cdk.out template), without starting anything."""
    return load_topology(current_template(template), table_name)


class LocalLambdaContext:
    """Enough of the Lambda context object for Powertools."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = arn(FUNCTION, function_name)
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
    """One embedded AWS running the synthesized template: start() it, use boto3 as usual, stop() it."""

    # The local names of the delivery and failed-messages queues (relay/local/template.py names them).
    queue_name: ClassVar[str] = QUEUE_VARIABLES[Setting.QUEUE_URL]
    failed_queue_name: ClassVar[str] = QUEUE_VARIABLES[Setting.FAILED_QUEUE_URL]

    table_name: str = DEFAULT_TABLE_NAME
    time_scale: float = 1.0
    # Overrides of the template's retry policies, cdk.json's `relay.delivery` shape:
    # {"fastLane": {...}, "slowLane": {...}} (empty: the template's policies as synthesized).
    delivery_policy: dict[str, Any] = field(default_factory=dict)
    # Layered over the template's function environment (local settings such as private targets).
    environment: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, Handler] = field(default_factory=dict)
    # None: cdk.out/Relay.template.json, synthesized first when older than the sources.
    template: Path | None = None
    # The template it runs (set by start()).
    template_path: Path | None = None
    # Authorize every call of a handler or a state machine against its role in the template.
    enforce_iam: bool = True
    topology: Topology | None = None
    state_machine_arns: dict[str, str] = field(default_factory=dict)
    queue_urls: dict[str, str] = field(default_factory=dict)
    _mock: Any = None
    _authorizer: iam.Authorizer | None = None
    _saved_env: dict[str, str | None] = field(default_factory=dict)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> LocalAws:
        if _ACTIVE:
            # moto's backends are process-wide: a second embedded AWS would share (and see) the
            # first one's tables, queues, secrets and runs instead of starting clean.
            raise RuntimeError("another LocalAws is running in this process; stop it first")
        self.template_path = current_template(self.template)
        self.topology = load_topology(self.template_path, self.table_name)
        # moto logs every Choice on a missing path as an error; those are normal control flow here.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
        from moto import mock_aws

        self._mock = mock_aws(
            config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
        )
        self._mock.start()
        _install_patches()
        _ACTIVE.append(self)
        # CloudWatch has no local stand-in, and Powertools flushes every 100 metrics to stdout even
        # when disabled; relay dev's output is for people, so metrics are dropped locally.
        from functions.adapters import observability

        observability.metrics.add_metric = lambda *args, **kwargs: None  # type: ignore[method-assign]
        self._create_table()
        self._create_queues()
        self._create_usage_plans()
        self._create_event_buses()
        # Overridden lane policies: the attempting functions compare Retry-After with these waits.
        lane_waits = delivery_schedule(self.delivery_policy).lane_waits.environment() if self.delivery_policy else {}
        self._apply_env({**_LOCAL_CREDENTIALS, **shared_environment(self.topology), **lane_waits, **self.environment})
        self._create_state_machines()
        if self.enforce_iam:
            self._authorizer = iam.Authorizer(self.topology.policies)
            iam.enforce(self._authorizer)
        return self

    def _create_table(self) -> None:
        import boto3

        assert self.topology is not None
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        table = self.topology.table
        dynamodb.create_table(**table.definition)
        if table.ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=self.table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )

    def _create_queues(self) -> None:
        import boto3

        assert self.topology is not None
        sqs = boto3.client("sqs", region_name=REGION)
        for spec in self.topology.queues.values():
            attributes: Any = self._scaled_visibility(spec.attributes)
            self.queue_urls[spec.name] = sqs.create_queue(QueueName=spec.name, Attributes=attributes)["QueueUrl"]

    def _create_usage_plans(self) -> None:
        """The template's usage plans (the default one tagged with the table): `relay senders create`
        puts each new sender's API key in it here as on AWS, and the local gateway checks the key."""
        import boto3

        assert self.topology is not None
        apigateway = boto3.client("apigateway", region_name=REGION)
        for plan in self.topology.usage_plans:
            apigateway.create_usage_plan(name=plan.name, throttle=plan.throttle, tags=plan.tags)

    def _create_event_buses(self) -> None:
        """The template's EventBridge buses: operational notifications are put on them as on AWS."""
        import boto3

        assert self.topology is not None
        events = boto3.client("events", region_name=REGION)
        for name in self.topology.event_buses:
            events.create_event_bus(Name=name)

    def _scaled_visibility(self, attributes: dict[str, str]) -> dict[str, str]:
        """A queue's visibility timeout is a retry wait too: scaled, down to a local floor.

        The floor keeps a dispatcher batch that is slow in-process (moto, shared threads) from being
        received twice while it still runs.
        """
        if "VisibilityTimeout" not in attributes:
            return attributes
        deployed = int(attributes["VisibilityTimeout"])
        scaled = min(deployed, max(LOCAL_MIN_VISIBILITY_SECONDS, round(deployed * self.time_scale)))
        return {**attributes, "VisibilityTimeout": str(scaled)}

    def _create_state_machines(self) -> None:
        import boto3

        assert self.topology is not None
        sfn = boto3.client("stepfunctions", region_name=REGION)
        policies = {LANE_MACHINES[lane]: policy for lane, policy in self.delivery_policy.items() if policy}
        for spec in self.topology.state_machines.values():
            definition = spec.definition
            if spec.name in policies:
                definition = json.dumps(apply_delivery_policy(json.loads(definition), policies[spec.name]))
            self.state_machine_arns[spec.name] = sfn.create_state_machine(
                name=spec.name,
                definition=definition,
                roleArn=spec.role_arn,
                type=spec.type,  # type: ignore[arg-type]
            )["stateMachineArn"]

    def stop(self) -> None:
        if self._mock is not None:
            self._settle_executions()
        if self._authorizer is not None:
            iam.release(self._authorizer)
            self._authorizer = None
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

        backend = stepfunctions_backend()
        for machine_arn in self.state_machine_arns.values():
            with contextlib.suppress(Exception):
                for execution in list(backend.describe_state_machine(machine_arn).executions):
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

    @property
    def handlers(self) -> dict[str, str]:
        """Local function name -> the handler the template deploys for it."""
        assert self.topology is not None, "start() the LocalAws first"
        return self.topology.handlers

    def role_of(self, function_name: str) -> str | None:
        """The role a function's calls are authorized against (None: not checked)."""
        assert self.topology is not None, "start() the LocalAws first"
        return self.topology.functions[function_name].role_arn if self.enforce_iam else None

    def invoke(self, function_name: str, event: dict[str, Any]) -> Any:
        """Run a handler in-process as Lambda would (overrides first, for fault injection)."""
        handler = self.overrides.get(function_name) or _import_handler(self.handlers[function_name])
        with iam.acting_as(self.role_of(function_name)):
            return handler(copy.deepcopy(event), LocalLambdaContext(function_name))

    def start_sync_execution(self, state_machine: str, execution_input: dict[str, Any]) -> dict[str, Any]:
        """StartSyncExecution for an EXPRESS machine (its name or ARN), as API Gateway's integration
        makes it: authorized against the integration's role from the template (AccessDenied raises),
        then run in the calling thread."""
        machine_arn = self.state_machine_arns.get(state_machine, state_machine)
        assert self.topology is not None
        if self.enforce_iam and self.topology.api_start_role_arn:
            params = {"stateMachineArn": machine_arn}
            iam.authorize_as(self.topology.api_start_role_arn, "StartSyncExecution", "states", params)
        return run_sync_execution(machine_arn, execution_input)


_ACTIVE: list[LocalAws] = []
# Threads of a stopped LocalAws that were still running a step when it stopped.
_ORPHANED_THREADS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
_PATCH_LOCK = threading.Lock()
_patched = False


def _reset_caches() -> None:
    from functions.adapters import aws
    from functions.domain import config

    config.get_settings.cache_clear()
    aws.reset_process_state()


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

        LambdaSimpleBackend.invoke = _local_invoke  # type: ignore[method-assign]
        moto_pace.install()
        _serialise_dynamodb_writes()
        retrier_decl.time = _ScaledSleep()  # type: ignore[assignment]
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

        def scaled_wait(self: Any, env: Any, wait_seconds: int) -> None:
            scale = _ACTIVE[-1].time_scale if _ACTIVE else 1.0
            if wait_seconds > 0:
                env.program_state_event.wait(wait_seconds * scale)

        WaitFunction._wait_interval = scaled_wait  # type: ignore[method-assign]
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
