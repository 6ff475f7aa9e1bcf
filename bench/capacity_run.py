"""A reconciler round with 1 and with 5,000 active senders, measured on the embedded AWS.

Why: the reconciler's sweep of never-claimed messages reads the activity items of its window
(`ACTIVE#<minute>#<shard>`, written at ingest: each names the first messages of a sender and
minute, or marks the sender busy), the busy senders' messages accepted in it (the bySender index)
and then the heads. Issue 20 asks that a round with 5,000 senders take at most 1.5x the round with
one. Both configurations carry the same traffic
(as many messages in the sweep's window as there are senders): one sender sending all of them, or every sender
one, so the ratio shows what the number of senders alone costs.

How, in a fresh LocalAws per configuration (moto, the synthesized template, IAM enforced):
- traffic as real traffic makes it: each message through the ingest handlers (validate, dedup,
  store, enqueue: bench/overhead.py's `ingest_direct`), so store writes the activity item, the
  content and the head with its bySender entry; then the dispatcher's claim write (ENQUEUED,
  q = run), the one thing of a delivery the sweep looks at (a claimed message is not "never
  claimed"). The delivery itself is not run: at ~40 ms a message in moto it would take minutes,
  and a delivered head is read the same way (one BatchGetItem entry);
- the re-drive window (`RELAY_REDRIVE_AFTER_SECONDS`) is REDRIVE_AFTER_SECONDS instead of 300 s,
  so the messages are inside the sweep's window seconds after they were sent; the window (180 s
  deployed) is widened to cover the traffic when sending it took longer (`sweep_window_covering`);
  every round's coverage of the traffic is recorded;
- rounds through the reconciler's handler (functions/reconciler/handler.py), each timed, with
  every AWS call counted and its time inside moto; a round's AWS-like time is its own time outside
  moto plus bench/cost_run.py's typical latency per call, one after another. Moto answers a GSI
  query by scanning the table and a BatchGetItem far slower than DynamoDB, so a round here takes
  many times its AWS-like time: the rounds get LOCAL_ROUND_SECONDS (instead of the deployed
  function's 42 s budget) so that they finish and their work is measured whole; whether a round
  fits the deployed budget is judged from its AWS-like time (bench/capacity.py reconciler_summary).

Also, first: `relay dev`'s isolation of a healthy message from a trickling target's batch
(bench/dev_isolation.py, `dev_isolation` in the section).

Run as `python -m bench.capacity_run --out FILE` (bench.run does it in a fresh process).
BENCH_CAPACITY_SENDERS (default 5,000) and BENCH_CAPACITY_MESSAGES (default: as many as senders)
shrink it for a quick look; BENCH_SCALE scales the number of rounds (at least 3).
"""

from __future__ import annotations

import base64
import importlib
import json
import math
import os
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench import dev_isolation
from bench.capacity import key_pattern
from bench.common import one_kb_body, scaled, section_main
from functions.contract.indexes import SENDER_INDEX
from functions.contract.key_prefixes import ACTIVITY_PREFIX
from functions.contract.settings_names import Setting, ToolVariable

MANY_SENDERS = 5000
# Seconds a message waits unclaimed before the sweep looks at it (300 s deployed): short, so the
# traffic is inside the sweep's window soon after it was sent.
REDRIVE_AFTER_SECONDS = 10
RECONCILER = "relay-reconciler"
# A round's time budget here (moto is slow; see above), and the time the rounds may take after the
# traffic, kept in the sweep's window.
LOCAL_ROUND_SECONDS = 600
ROUNDS_ALLOWANCE_SECONDS = 3 * LOCAL_ROUND_SECONDS
SCHEDULED_EVENT = {"source": "aws.events", "detail-type": "Scheduled Event"}
# No request is sent: the traffic is claimed, not delivered (a private address passes validation).
TARGET_URL = "http://127.0.0.1:9/ok"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


# -- counting a round's AWS calls ---------------------------------------------------------------------


@dataclass
class RoundCalls:
    """The AWS calls of one round: by `service:Operation` (queries by index), the time spent inside
    them (moto), the bySender partitions queried (the busy senders the sweep read) and the heads
    the sweep read."""

    calls: Counter[str] = field(default_factory=Counter)
    inner_ms: float = 0.0
    modeled_ms: float = 0.0
    senders_queried: set[str] = field(default_factory=set)
    activity_queries: int = 0
    heads_read: int = 0
    # The sweep's own calls (activity queries, bySender queries, head reads): modeled AWS latency,
    # and their time in moto.
    sweep_modeled_ms: float = 0.0
    sweep_inner_ms: float = 0.0


class _Recorder:
    """Wraps botocore once; records every call made while `recording()` is open, on any thread (the
    sweep reads heads on several; rounds run one at a time)."""

    def __init__(self) -> None:
        self._current: RoundCalls | None = None
        self._lock = threading.Lock()
        self._installed = False

    def install(self) -> None:
        if self._installed:
            return
        from botocore.client import BaseClient

        from bench.cost_model import call_latency_ms
        from bench.cost_run import AWS_CALL_LATENCY_MS

        original = BaseClient._make_api_call  # type: ignore[attr-defined]
        recorder = self

        def recording_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            current = recorder._current
            if current is None:
                return original(client, operation, params)
            service = client.meta.service_model.service_name
            started = time.perf_counter()
            try:
                return original(client, operation, params)
            finally:
                modeled = call_latency_ms(service, operation, AWS_CALL_LATENCY_MS)
                inner = (time.perf_counter() - started) * 1000
                with recorder._lock:
                    current.inner_ms += inner
                    current.modeled_ms += modeled
                    if _note(current, service, operation, params):
                        current.sweep_modeled_ms += modeled
                        current.sweep_inner_ms += inner

        BaseClient._make_api_call = recording_call  # type: ignore[attr-defined]
        self._installed = True

    @contextmanager
    def recording(self) -> Iterator[RoundCalls]:
        self.install()
        calls = RoundCalls()
        self._current = calls
        try:
            yield calls
        finally:
            self._current = None


def _note(calls: RoundCalls, service: str, operation: str, params: dict[str, Any]) -> bool:
    """Count one call; True when it is the sweep's (an activity or bySender query, a head read)."""
    name = f"{service}:{operation}"
    sweep = operation == "BatchGetItem"
    if sweep:
        calls.heads_read += sum(len(request.get("Keys", [])) for request in params.get("RequestItems", {}).values())
    if operation == "Query":
        index = params.get("IndexName")
        name += f"[{index or 'table'}]"
        values = params.get("ExpressionAttributeValues") or {}
        partition = str((values.get(":pk") or {}).get("S", ""))
        if index == SENDER_INDEX:
            calls.senders_queried.add(key_pattern(SENDER_INDEX, partition).owner)  # a sender's shards: one sender
            sweep = True
        elif index is None and partition.startswith(ACTIVITY_PREFIX):
            calls.activity_queries += 1
            sweep = True
    calls.calls[name] += 1
    return sweep


RECORDER = _Recorder()


# -- traffic --------------------------------------------------------------------------------------------


def _ingest_state(sender_id: str, message_id: str) -> dict[str, Any]:
    """What the API's integration hands the ingest machine for one POST /messages of `sender_id`."""
    message = {
        "messageId": message_id,
        "senderId": sender_id,
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "targetUrl": TARGET_URL,
        "body": one_kb_body(message_id),
    }
    body = base64.b64encode(json.dumps(message).encode()).decode()
    return {"requestId": str(uuid.uuid4()), "senderId": sender_id, "bodyBase64": body}


def _claim(local: Any, sender_id: str, message_id: str) -> None:
    """The dispatcher's claim write (functions/services/delivery/dispatch.py `_claim`, first claim of
    run 0): the lease, ENQUEUED and `q = run`, as the dispatcher's role."""
    from functions.domain.config import get_settings
    from functions.domain.model import Event, EventType, MessageKey
    from functions.services.delivery import dependencies
    from relay.local import iam

    deps = dependencies(get_settings())
    with iam.acting_as(local.role_of("relay-dispatcher")):
        head = deps.repository.get_head(MessageKey(sender_id, message_id), consistent=False)
        if head is None:
            raise RuntimeError(f"message {sender_id}/{message_id} was not stored")
        now = datetime.now(UTC)
        epoch = int(now.timestamp())
        enqueued = Event(EventType.ENQUEUED, now, head.run, None, {})
        if deps.repository.claim(head, epoch + deps.settings.fast_lane_lease_seconds, epoch, enqueued, None) is None:
            raise RuntimeError(f"message {sender_id}/{message_id} could not be claimed")


@dataclass
class Traffic:
    senders: int
    messages: int
    seconds: float
    first_accepted: float  # time.time() of the first and last acceptance
    last_accepted: float


def send_traffic(local: Any, senders: list[str], messages: int) -> Traffic:
    """`messages` messages spread evenly over `senders`, each accepted (202) and claimed."""
    from bench.overhead import ingest_direct

    started = time.perf_counter()
    first = last = 0.0
    for number in range(messages):
        sender_id = senders[number % len(senders)]
        message_id = f"cap-{number:05d}-{uuid.uuid4().hex[:8]}"
        answer = ingest_direct(local, _ingest_state(sender_id, message_id))
        if answer.get("statusCode") != 202:
            raise RuntimeError(f"ingest answered {answer.get('statusCode')}: {answer.get('body', '')[:200]}")
        last = time.time()
        first = first or last
        _claim(local, sender_id, message_id)
        if number % DISPATCH_BATCH == DISPATCH_BATCH - 1:
            _drain(local)
    _drain(local)
    return Traffic(len(senders), messages, time.perf_counter() - started, first, last)


# The claimed messages leave the delivery queue as the dispatcher's event source takes them, a
# batch at a time (moto scans the whole queue on every send: thousands left in it would make each
# send slower than the one before).
DISPATCH_BATCH = 10


def _drain(local: Any) -> None:
    import boto3

    from relay.local import iam
    from relay.local.emulator import REGION

    sqs = boto3.client("sqs", region_name=REGION)
    url = local.queue_urls[local.queue_name]
    with iam.acting_as(local.role_of("relay-dispatcher")):
        while received := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=DISPATCH_BATCH).get("Messages", []):
            entries: list[Any] = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(received)]
            sqs.delete_message_batch(QueueUrl=url, Entries=entries)


# -- rounds -----------------------------------------------------------------------------------------------


class _DeployedContext:
    """The Lambda context of a scheduled invocation of the deployed reconciler (its timeout)."""

    def __init__(self, timeout_seconds: float) -> None:
        from relay.local.emulator import LocalLambdaContext

        self._inner = LocalLambdaContext(RECONCILER)
        self._deadline = time.monotonic() + timeout_seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def deployed_timeout_seconds() -> float:
    """The reconciler function's timeout in the stack (a periodic step's: stacks/constructs/base/functions.py)."""
    from stacks.constructs.base.functions import PERIODIC_TIMEOUT

    return float(PERIODIC_TIMEOUT.to_seconds())


@dataclass
class Round:
    local_ms: float
    aws_like_ms: float
    inner_ms: float
    heads_read: int  # the messages the sweep looked at (BatchGetItem keys)
    busy_senders_queried: int  # senders whose bySender index the sweep read (busy in a minute)
    activity_queries: int
    sweep_finished: bool  # the round did not report `unfinished` (its budget lasted)
    sweep_aws_like_ms: float  # the modeled AWS latency of the sweep's calls, one after another
    sweep_local_ms: float  # the time of the sweep's calls in moto
    calls: dict[str, int]
    counts: dict[str, Any]
    # Share of the traffic's acceptance times inside the sweep's window when the round started.
    window_coverage: float
    error: str | None = None


def run_round(local: Any, timeout_seconds: float, traffic: Traffic, window_seconds: float | None = None) -> Round:
    """One reconciler round through its handler, as the scheduled rule invokes it."""
    from relay.local import iam

    handler = _handler(local)
    coverage = window_coverage(traffic, time.time(), window_seconds)
    error = None
    answer: Any = None
    with RECORDER.recording() as calls:
        started = time.perf_counter()
        try:
            with iam.acting_as(local.role_of(RECONCILER)):
                answer = handler(dict(SCHEDULED_EVENT), _DeployedContext(timeout_seconds))
        except Exception as raised:  # a round that raises is reported, not hidden
            error = f"{type(raised).__name__}: {str(raised)[:300]}"
        wall_ms = (time.perf_counter() - started) * 1000
    return Round(
        local_ms=wall_ms,
        aws_like_ms=max(0.0, wall_ms - calls.inner_ms) + calls.modeled_ms,
        inner_ms=calls.inner_ms,
        heads_read=calls.heads_read,
        busy_senders_queried=len(calls.senders_queried),
        activity_queries=calls.activity_queries,
        sweep_finished=not (answer or {}).get("unfinished"),
        sweep_aws_like_ms=calls.sweep_modeled_ms,
        sweep_local_ms=calls.sweep_inner_ms,
        calls=dict(sorted(calls.calls.items())),
        counts={str(key): value for key, value in (answer or {}).items()},
        window_coverage=coverage,
        error=error,
    )


def _handler(local: Any) -> Any:
    module_name, _, attribute = local.handlers[RECONCILER].rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


def window_coverage(traffic: Traffic, at: float, sweep_window_seconds: float | None = None) -> float:
    """The share of the traffic's acceptance span inside the sweep's window [at - R - W, at - R]."""
    from functions.services.reconciler import SWEEP_WINDOW_SECONDS

    width = max(sweep_window_seconds or SWEEP_WINDOW_SECONDS, REDRIVE_AFTER_SECONDS)
    low, high = at - REDRIVE_AFTER_SECONDS - width, at - REDRIVE_AFTER_SECONDS
    span = traffic.last_accepted - traffic.first_accepted
    if span <= 0:
        return 1.0 if low <= traffic.first_accepted <= high else 0.0
    inside = max(0.0, min(high, traffic.last_accepted) - max(low, traffic.first_accepted))
    return inside / span


# -- one configuration ------------------------------------------------------------------------------------


def measure(senders: int, messages: int, rounds: int, timeout_seconds: float) -> dict[str, Any]:
    """A fresh embedded AWS, `messages` messages from `senders` senders, then `rounds` rounds."""
    from relay.local.emulator import LocalAws

    environment: dict[str, str] = {
        Setting.ALLOW_PRIVATE_TARGETS: "true",
        Setting.REQUIRE_SENDER: "true",
        Setting.REDRIVE_AFTER_SECONDS: str(REDRIVE_AFTER_SECONDS),
    }
    prefix = f"cap{senders}-{uuid.uuid4().hex[:4]}"
    sender_ids = [f"{prefix}-s{number:05d}" for number in range(senders)]
    with LocalAws(environment=environment) as local:
        RECORDER.install()
        run_round(local, timeout_seconds, Traffic(0, 0, 0.0, 0.0, 0.0))  # imports, clients: warm
        _progress(f"{senders} sender(s): sending {messages} messages")
        traffic = send_traffic(local, sender_ids, messages)
        _progress(f"{senders} sender(s): sent in {traffic.seconds:.0f} s; {rounds} rounds")
        # Every message accepted at least the re-drive window ago: all inside the sweep's window.
        time.sleep(max(0.0, traffic.last_accepted + REDRIVE_AFTER_SECONDS + 1 - time.time()))
        with sweep_window_covering(traffic) as width, local_round_budget():
            samples = [run_round(local, LOCAL_ROUND_SECONDS, traffic, width) for _ in range(rounds)]
    return {**summarize(traffic, samples), "sweep_window_seconds": width}


@contextmanager
def sweep_window_covering(traffic: Traffic) -> Iterator[float]:
    """The sweep's window (180 s deployed) widened, when the traffic took longer to send than it
    spans, so that every message is in it during the rounds: the bench sends thousands of messages
    over minutes where real traffic of that size arrives in seconds. The width decides which
    messages a round finds, not what one costs (a few more activity queries: a few per minute)."""
    from functions.services import reconciler

    deployed = reconciler.SWEEP_WINDOW_SECONDS
    width = max(deployed, math.ceil(traffic.last_accepted - traffic.first_accepted) + ROUNDS_ALLOWANCE_SECONDS)
    reconciler.SWEEP_WINDOW_SECONDS = width
    try:
        yield float(width)
    finally:
        reconciler.SWEEP_WINDOW_SECONDS = deployed


@contextmanager
def local_round_budget() -> Iterator[None]:
    """The reconciler's round budget raised to LOCAL_ROUND_SECONDS (the handler caps a round at
    ROUND_BUDGET_SECONDS, 45 s deployed), so that a round in moto finishes its work."""
    from functions.reconciler import handler

    deployed = handler.ROUND_BUDGET_SECONDS
    handler.ROUND_BUDGET_SECONDS = LOCAL_ROUND_SECONDS
    try:
        yield
    finally:
        handler.ROUND_BUDGET_SECONDS = deployed


def _progress(text: str) -> None:
    print(f"capacity: {text}", file=sys.stderr, flush=True)


def summarize(traffic: Traffic, samples: list[Round]) -> dict[str, Any]:
    local = [sample.local_ms for sample in samples]
    aws = [sample.aws_like_ms for sample in samples]
    return {
        "traffic": asdict(traffic),
        "rounds": [asdict(sample) for sample in samples],
        "median_local_ms": statistics.median(local),
        "median_aws_like_ms": statistics.median(aws),
        "messages_swept_per_round": [sample.heads_read for sample in samples],
        "busy_senders_queried_per_round": [sample.busy_senders_queried for sample in samples],
        "window_coverage_per_round": [round(sample.window_coverage, 3) for sample in samples],
        "errors": [sample.error for sample in samples if sample.error],
    }


def run(scale: float) -> dict[str, Any]:
    os.environ.setdefault(ToolVariable.HOME, f"/tmp/relay-bench-home-{os.getpid()}")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    many = _env_int("BENCH_CAPACITY_SENDERS", MANY_SENDERS)
    messages = _env_int("BENCH_CAPACITY_MESSAGES", many)
    rounds = scaled(3, scale, minimum=3)
    timeout = deployed_timeout_seconds()
    started = time.perf_counter()
    # First, while this process has nothing else going: `relay dev` with a healthy message behind a
    # trickling target's batch (seconds; its own LocalRelay, stopped before the rounds' LocalAws).
    _progress("relay dev: a healthy message behind a trickling target's batch")
    isolation = dev_isolation.run(scale)
    one = measure(1, messages, rounds, timeout)
    spread = measure(many, messages, rounds, timeout)
    from functions.reconciler.handler import ROUND_MARGIN_SECONDS
    from functions.services.reconciler import ROUND_BUDGET_SECONDS, SWEEP_SHARE, SWEEP_WINDOW_SECONDS

    budget = max(1.0, min(ROUND_BUDGET_SECONDS, timeout - ROUND_MARGIN_SECONDS))
    return {
        "reconciler": {
            "senders_1": one,
            f"senders_{many}": spread,
            "many_senders": many,
            "messages": messages,
            "rounds_each": rounds,
            "redrive_after_seconds": REDRIVE_AFTER_SECONDS,
            "sweep_window_seconds_deployed": SWEEP_WINDOW_SECONDS,
            "deployed_timeout_seconds": timeout,
            "round_budget_seconds": budget,
            "sweep_budget_seconds": budget * SWEEP_SHARE,
        },
        "dev_isolation": isolation,
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    return section_main("a reconciler round with 1 and with many active senders", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
