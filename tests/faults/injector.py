"""A seeded fault injector for the local runtime (`LocalRelay` / `LocalAws`).

It breaks the three things a Relay deployment depends on, at the seams the code already has:

- DynamoDB writes: `functions.adapters.aws.client("dynamodb")` is wrapped; a fraction of `put_item` and
  `update_item` calls fail with ProvisionedThroughputExceededException or InternalServerError. An
  InternalServerError is sometimes raised AFTER the write was applied (DynamoDB does not promise that
  a 500 means "not written"), so retried steps must be idempotent.
- SQS sends: `aws.client("sqs").send_message` to the delivery queue or the failed-messages queue fails
  for a fraction of calls, sometimes after the message was sent (the sender sees an error, the queue
  holds a message).
- Crashing steps: every Lambda handler is replaced through `LocalAws.overrides` by a wrapper around
  the real handler that raises a generic RuntimeError for a fraction of invocations, either before
  the handler ran or after it ran to the end (a crash after its side effects).
- A "down" switch (used while the harness restarts the runtime): every handler invocation crashes.

Determinism: a decision is not drawn from one shared random stream (threads would interleave it
differently on every run) but hashed from (seed, kind, step, message id, occurrence): "the 2nd
invocation of relay-deliver for message m-17 crashes before the handler" is the same on every run
with the same seed, whatever the thread timing. Only paths whose shape depends on timing (how many
times a queue message is redelivered, say) can differ between runs.

Every injected fault is recorded with the message ids it touched, so the checks can tell a message
whose outcome the faults explain from one that must have the exact outcome of its target.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from functions.adapters import aws
from relay.local.emulator import LocalAws, _import_handler

DYNAMODB_WRITES = frozenset({"put_item", "update_item"})
INGEST_FUNCTIONS = frozenset({"relay-validate", "relay-dedup", "relay-store", "relay-enqueue"})
DELIVERY_FUNCTIONS = frozenset(
    {"relay-dispatcher", "relay-deliver", "relay-finalize", "relay-handoff", "relay-reconciler"}
)
# The steps that crash: every step of ingest and delivery, and the reconciler.
CRASHING_FUNCTIONS = INGEST_FUNCTIONS | DELIVERY_FUNCTIONS
_MESSAGE_PREFIX = "MSG#"


@dataclass(frozen=True)
class FaultRates:
    """Probabilities per call (DynamoDB write, SQS send) or per handler invocation (crash)."""

    dynamodb_write: float = 0.02
    # Of the DynamoDB faults: throttled (never applied), InternalServerError before / after applying.
    dynamodb_throttle_share: float = 0.4
    dynamodb_applied_share: float = 0.3
    sqs_send: float = 0.05
    # Of the SQS faults: sent, and the sender still sees an error.
    sqs_applied_share: float = 0.3
    crash: float = 0.03
    # Of the crashes: after the real handler ran to the end.
    crash_after_share: float = 0.5


@dataclass(frozen=True)
class Fault:
    kind: str  # dynamodb | sqs | crash | down
    function: str  # the Lambda function it hit ("" outside a handler)
    detail: str  # e.g. "update_item InternalServerError applied", "before", "after"
    message_ids: tuple[str, ...]


def message_id_of_key(partition_key: str) -> str | None:
    """`MSG#<senderId>#<messageId>` -> messageId."""
    if not partition_key.startswith(_MESSAGE_PREFIX):
        return None
    return partition_key.split("#", 2)[2]


def message_ids_of_event(function_name: str, event: dict[str, Any]) -> tuple[str, ...]:
    """The message ids a handler invocation works on, read from its event."""
    if function_name == "relay-validate":
        try:
            document = json.loads(base64.b64decode(event.get("bodyBase64") or ""))
        except (ValueError, binascii.Error):
            return ()
        message_id = document.get("messageId") if isinstance(document, dict) else None
        return (message_id,) if isinstance(message_id, str) else ()
    if isinstance(event.get("message"), dict):
        return (str(event["message"].get("messageId", "")),)
    if "messageId" in event:
        return (str(event["messageId"]),)
    ids = []
    for record in event.get("Records", []):
        try:
            ids.append(str(json.loads(record["body"])["messageId"]))
        except (ValueError, KeyError, TypeError):
            continue
    return tuple(ids)


def _dynamodb_message_id(kwargs: dict[str, Any]) -> str | None:
    item = kwargs.get("Key") or kwargs.get("Item") or {}
    partition_key = item.get("pk", {}).get("S", "")
    return message_id_of_key(partition_key)


@dataclass
class FaultInjector:
    seed: int
    rates: FaultRates = field(default_factory=FaultRates)
    # SQS queue URLs whose sends may fail (the delivery and failed-messages queues).
    queue_urls: frozenset[str] = frozenset()
    down: bool = False
    enabled: bool = True
    faults: list[Fault] = field(default_factory=list)
    invocations: Counter[str] = field(default_factory=Counter)
    # Wall-clock seconds spent in each handler (all threads together).
    seconds: Counter[str] = field(default_factory=Counter)
    _occurrences: Counter[tuple[str, ...]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _context: threading.local = field(default_factory=threading.local)
    _real_client: Any = None
    _proxies: dict[str, Any] = field(default_factory=dict)
    _local: LocalAws | None = None

    # -- deterministic decisions --------------------------------------------------------------------

    def _draw(self, *key: str) -> float:
        """A uniform number in [0, 1) for the next occurrence of `key`, the same on every run."""
        with self._lock:
            self._occurrences[key] += 1
            occurrence = self._occurrences[key]
        digest = hashlib.blake2b(repr((self.seed, *key, occurrence)).encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def _record(self, kind: str, detail: str, message_ids: tuple[str, ...]) -> None:
        function = getattr(self._context, "function", "") or ""
        with self._lock:
            self.faults.append(Fault(kind, function, detail, message_ids))

    # -- installing -----------------------------------------------------------------------------------

    def install(self, local: LocalAws) -> None:
        """Wrap every handler of `local` and the process's boto3 clients (undo with `uninstall`)."""
        self._local = local
        for name, handler in local.handlers.items():
            local.overrides[name] = self._wrap_handler(name, _import_handler(handler))
        self._real_client = aws.client
        injector = self

        def client(service: str) -> Any:
            real = injector._real_client(service)
            if service not in ("dynamodb", "sqs"):
                return real
            proxy = injector._proxies.get(service)
            if proxy is None or proxy.real is not real:
                proxy = injector._proxies[service] = _FaultyClient(real, injector, service)
            return proxy

        client.cache_clear = self._real_client.cache_clear  # type: ignore[attr-defined]
        aws.client = client  # type: ignore[assignment]

    def uninstall(self) -> None:
        if self._real_client is not None:
            aws.client = self._real_client
            self._real_client = None
        if self._local is not None:
            for name in self._local.handlers:
                self._local.overrides.pop(name, None)
            self._local = None

    @contextmanager
    def installed(self, local: LocalAws) -> Iterator[FaultInjector]:
        self.install(local)
        try:
            yield self
        finally:
            self.uninstall()

    # -- crashing steps -------------------------------------------------------------------------------

    def _wrap_handler(self, function_name: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        injector = self

        def wrapped(event: dict[str, Any], context: Any) -> Any:
            message_ids = message_ids_of_event(function_name, event)
            with injector._lock:
                injector.invocations[function_name] += 1
            outer = getattr(injector._context, "function", None)
            injector._context.function = function_name
            started = time.monotonic()
            try:
                crash = injector._crash_decision(function_name, message_ids)
                if crash == "before":
                    raise RuntimeError(f"injected crash before {function_name} ran")
                result = handler(event, context)
                if crash == "after" or (crash is None and injector.down):
                    injector._record("down" if injector.down else "crash", "after", message_ids)
                    raise RuntimeError(f"injected crash after {function_name} ran")
                return result
            finally:
                injector._context.function = outer
                with injector._lock:
                    injector.seconds[function_name] += time.monotonic() - started

        return wrapped

    def _crash_decision(self, function_name: str, message_ids: tuple[str, ...]) -> str | None:
        if not self.enabled:
            return None
        if self.down:
            # The process is going away: half the steps die before doing anything, half after.
            when = "before" if self._draw("down", function_name, *message_ids[:1]) < 0.5 else None
            if when:
                self._record("down", "before", message_ids)
            return when
        if function_name not in CRASHING_FUNCTIONS:
            return None
        if self._draw("crash", function_name, *message_ids[:1]) >= self.rates.crash:
            return None
        after = self._draw("crash-when", function_name, *message_ids[:1]) < self.rates.crash_after_share
        if not after:
            self._record("crash", "before", message_ids)
        return "after" if after else "before"

    # -- AWS calls ------------------------------------------------------------------------------------

    def dynamodb_write(self, call: Callable[..., Any], operation: str, kwargs: dict[str, Any]) -> Any:
        message_id = _dynamodb_message_id(kwargs)
        if not self.enabled or self._draw("dynamodb", operation, message_id or "") >= self.rates.dynamodb_write:
            return call(**kwargs)
        ids = (message_id,) if message_id else ()
        pick = self._draw("dynamodb-kind", operation, message_id or "")
        if pick < self.rates.dynamodb_throttle_share:
            code, applied = "ProvisionedThroughputExceededException", False
        else:
            code = "InternalServerError"
            applied = pick >= 1 - self.rates.dynamodb_applied_share
        if applied:
            try:
                call(**kwargs)
            except ClientError:
                applied = False  # the real call refused it (a failed condition): nothing was written
        self._record("dynamodb", f"{operation} {code} {'applied' if applied else 'not-applied'}", ids)
        raise ClientError({"Error": {"Code": code, "Message": "injected"}}, operation)

    def sqs_send(self, call: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        if not self.enabled or kwargs.get("QueueUrl") not in self.queue_urls:
            return call(**kwargs)
        try:
            message_id = str(json.loads(kwargs.get("MessageBody", "{}")).get("messageId", ""))
        except ValueError:
            message_id = ""
        if self._draw("sqs", str(kwargs.get("QueueUrl")), message_id) >= self.rates.sqs_send:
            return call(**kwargs)
        applied = self._draw("sqs-kind", message_id) < self.rates.sqs_applied_share
        if applied:
            call(**kwargs)
        queue = str(kwargs.get("QueueUrl", "")).rsplit("/", 1)[-1]
        self._record("sqs", f"send_message {queue} {'sent' if applied else 'not-sent'}", (message_id,))
        raise ClientError(
            {"Error": {"Code": "AWS.SimpleQueueService.ServiceUnavailable", "Message": "injected"}}, "SendMessage"
        )

    # -- reading the record -----------------------------------------------------------------------------

    def summary(self) -> dict[str, int]:
        with self._lock:
            faults = list(self.faults)
        counts: Counter[str] = Counter()
        for fault in faults:
            counts[f"{fault.kind}: {fault.function or '-'}: {fault.detail}"] += 1
        return dict(sorted(counts.items()))

    def touched(self, functions: frozenset[str] | None = None) -> set[str]:
        """Message ids hit by a fault inside one of `functions` (every fault when None)."""
        with self._lock:
            faults = list(self.faults)
        return {
            message_id
            for fault in faults
            if functions is None or fault.function in functions
            for message_id in fault.message_ids
        }


class _FaultyClient:
    """A boto3 client whose selected operations go through the injector first."""

    def __init__(self, real: Any, injector: FaultInjector, service: str) -> None:
        self.real = real
        self._injector = injector
        self._service = service

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.real, name)
        if self._service == "dynamodb" and name in DYNAMODB_WRITES:
            return lambda **kwargs: self._injector.dynamodb_write(attribute, name, kwargs)
        if self._service == "sqs" and name == "send_message":
            return lambda **kwargs: self._injector.sqs_send(attribute, kwargs)
        return attribute
