"""Delivery as plain functions over the data-access layer: dispatch, attempt, fail, hand off.

The dispatcher makes a message's first attempt itself (`delivery.firstAttempt: inline`, the
default): a message its target takes at once costs no state machine run. Only a retryable failure
starts a fast-lane run, which continues with the next attempt. The retrying itself is not here:
the delivery state machines' Retry policies re-run `attempt` whenever it raises DeliveryRetryable.
Every attempt counts itself atomically in the head and appends ATTEMPT_STARTED (and
ATTEMPT_FAILED) under keys derived from its attempt number, so a retried step never writes an
event twice, whether the dispatcher or a lane made it.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.shared import aws
from functions.shared.clock import iso, parse_iso
from functions.shared.config import MAX_PARALLEL_DISPATCH, FirstAttempt, Settings
from functions.shared.exceptions import (
    DeliveryRejected,
    DeliveryRetryable,
    RelayError,
    TargetBlocked,
    TargetTimeout,
    TargetUnreachable,
)
from functions.shared.metric_names import Metric
from functions.shared.model import TERMINAL_STATUSES, EventType, MessageKey, Status
from functions.shared.observability import logger, metrics
from functions.shared.queue import MessageQueue
from functions.shared.repository import MessageRepository
from functions.shared.secrets import SigningSecrets
from functions.shared.signing import signature_headers
from functions.shared.workflows import Workflows, execution_name

if TYPE_CHECKING:
    # The client (urllib3, TLS) is loaded only by the functions that deliver (see `client`).
    from functions.shared.http_client import DeliveryClient, DeliveryResponse

RETRYABLE_STATUS_CODES = frozenset({408, 425, 429})
SNIPPET_CHARS = 512
SIGNING_SECRET_MISSING = "SigningSecretMissing"
MISSING_SECRET_DETAIL = (
    "the sender's signing secret was not found in Secrets Manager; nothing is sent unsigned. "
    "Restore it (or run `relay senders rotate-secret`) and the next attempt delivers."
)


def is_retryable_status(status_code: int) -> bool:
    return status_code in RETRYABLE_STATUS_CODES or 500 <= status_code <= 599


def webhook_id(key: MessageKey) -> str:
    """The same id on every delivery of a message, so receivers can dedupe."""
    return f"{key.sender_id}:{key.message_id}"


def _is_expired(head: dict[str, Any], now: datetime) -> bool:
    return parse_iso(head["expiresAt"]) <= now


@dataclass
class DeliveryDependencies:
    settings: Settings
    repository: MessageRepository
    workflows: Workflows
    secrets: SigningSecrets
    failed_queue: MessageQueue

    @cached_property
    def client(self) -> DeliveryClient:
        """Built on first use: only the functions that deliver load urllib3 and TLS (cold start)."""
        from functions.shared.http_client import DeliveryClient

        return DeliveryClient(
            allow_private=self.settings.allow_private_targets,
            connect_timeout=self.settings.connect_timeout_seconds,
            total_timeout=self.settings.total_timeout_seconds,
            max_response_bytes=self.settings.max_response_bytes,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryDependencies:
        return cls(
            settings=settings,
            repository=MessageRepository(settings.table_name),
            workflows=Workflows(),
            secrets=SigningSecrets(),
            failed_queue=MessageQueue(settings.failed_queue_url),
        )


@lru_cache(maxsize=4)
def dependencies(settings: Settings) -> DeliveryDependencies:
    """One set of clients per process (and per settings), reused across warm invocations."""
    return DeliveryDependencies.from_settings(settings)


# They hold a secrets cache and clients of the AWS they were built for.
aws.on_reset(dependencies.cache_clear)


def run_input(key: MessageKey, run: int) -> dict[str, Any]:
    return {**key.to_dict(), "run": run}


# -- dispatcher -------------------------------------------------------------------------------------

# What the dispatcher's first attempt names as its `lane` in ATTEMPT_STARTED (it has no execution).
INLINE_LANE = "inline"


def dispatch_batch(records: list[tuple[str, str]], deps: DeliveryDependencies) -> list[str]:
    """Dispatch one SQS batch, `(record id, body)` each, in parallel; the ids of the failed records.

    A failed record is reported alone (partial batch response): SQS redelivers just it once its
    visibility timeout ends, and the lease in the head keeps a redelivery from attempting while
    the first one still runs. Threads started here act with the function's identity (relay dev).
    """
    if not records:
        return []
    with ThreadPoolExecutor(max_workers=min(len(records), MAX_PARALLEL_DISPATCH)) as pool:
        futures = {pool.submit(_dispatch_text, body, deps): record_id for record_id, body in records}
    failed = []
    for future, record_id in futures.items():
        error = future.exception()
        if error is not None:
            logger.error("Dispatching a queued message failed", exc_info=error, extra={"record": record_id})
            failed.append(record_id)
    return failed


def _dispatch_text(body: str, deps: DeliveryDependencies) -> str:
    return dispatch(json.loads(body), deps)


def dispatch(queued: dict[str, Any], deps: DeliveryDependencies) -> str:
    """Claim one queued message and deliver it: the first attempt inline (or a fast-lane run).

    Unless it is done, stale or already claimed: the claim is the lease in the head, so a
    redelivered queue message never attempts (or starts a run) beside a live one.
    """
    key = MessageKey(queued["senderId"], queued["messageId"])
    run = int(queued.get("run", 0))
    logger.set_correlation_id(key.message_id)
    head = deps.repository.get_head(key)
    if head is None:
        logger.warning("Queued message has no stored head; dropping it")
        return "missing"
    if head["status"] in TERMINAL_STATUSES:
        # A redelivery after the step that ended it failed before its event: complete the history.
        _ensure_terminal_event(deps, key, run, head)
        return "terminal"
    if int(head.get("run", 0)) != run:
        return "stale-run"
    now = datetime.now(UTC)
    if _is_expired(head, now):
        fail_message({**run_input(key, run), "reason": "expired before delivery"}, deps)
        return "expired"
    name = execution_name(key, run, "fast", unique=uuid.uuid4().hex[:8])
    epoch = int(now.timestamp())
    # One lease for the inline attempt and the fast-lane run it may start (settings: the lease
    # covers both), taken with a condition, so it is idempotent and exclusive.
    if not deps.repository.claim_delivery(key, run, name, epoch + deps.settings.fast_lane_lease_seconds, epoch):
        return "already-running"
    if deps.settings.first_attempt == FirstAttempt.STATE_MACHINE:
        return _start_fast_lane(deps, key, run, name)
    return _attempt_inline(deps, key, run, name)


def _attempt_inline(deps: DeliveryDependencies, key: MessageKey, run: int, name: str) -> str:
    """The first attempt in the dispatcher, with the outcome rules of the fast lane's Deliver step:
    2xx is DELIVERED (no run at all), DeliveryRejected is FAILED (as MarkFailed), DeliveryRetryable
    starts the fast-lane run, which continues with the next attempt."""
    try:
        try:
            result = attempt({**run_input(key, run), "lane": INLINE_LANE}, deps)
        except DeliveryRejected as rejected:
            fail_message({**run_input(key, run), "reason": str(rejected)[:SNIPPET_CHARS]}, deps)
            return "failed"
        except DeliveryRetryable:
            return _start_fast_lane(deps, key, run, name)
    except Exception:
        # A crashed step (a failed write, say): give the lease back so the queue's redelivery repeats
        # it soon. A repeated attempt first records the interrupted one (`attempt`); a message that
        # ended meanwhile gets its terminal event (`dispatch`: terminal).
        _release(deps, key, run)
        raise
    return "delivered" if result["outcome"] == Status.DELIVERED else str(result["outcome"])


def _start_fast_lane(deps: DeliveryDependencies, key: MessageKey, run: int, name: str) -> str:
    try:
        deps.workflows.start(deps.settings.fast_lane_arn, name, run_input(key, run))
    except Exception:
        # Give the lease back so the queue's redelivery (or the reconciler) can start it again.
        _release(deps, key, run)
        raise
    return "started"


def _release(deps: DeliveryDependencies, key: MessageKey, run: int) -> None:
    """Best effort: when the release fails too, the lease simply runs out and the reconciler re-drives."""
    try:
        deps.repository.release_claim(key, run)
    except RelayError:
        logger.exception("Could not release the delivery lease")


# -- one attempt ------------------------------------------------------------------------------------


def _attempt_failed(
    deps: DeliveryDependencies,
    key: MessageKey,
    run: int,
    attempt: int,
    ttl: int,
    error: str,
    detail: str,
    response: DeliveryResponse | None,
    duration_ms: int,
    retrying_because: str | None = None,
) -> None:
    """Record a failed attempt (and RETRYING when it will be retried).

    Bookkeeping is best effort here: the outcome the caller raises next decides what the state
    machine does, and a storage hiccup must not turn a retryable failure into an extra attempt.
    """
    now = datetime.now(UTC)
    details: dict[str, Any] = {"attempt": attempt, "error": error, "durationMs": duration_ms}
    if detail:
        details["detail"] = detail[:SNIPPET_CHARS]
    if response is not None:
        details["statusCode"] = response.status_code
        if response.body_snippet:
            details["responseSnippet"] = response.body_snippet[:SNIPPET_CHARS]
        if response.retry_after_seconds is not None:
            details["retryAfterSeconds"] = response.retry_after_seconds
    metrics.add_metric(name=Metric.ATTEMPTS_FAILED, unit=MetricUnit.Count, value=1)
    try:
        deps.repository.append_event(key, EventType.ATTEMPT_FAILED, iso(now), ttl, run=run, slot=attempt, **details)
        if retrying_because is not None:
            deps.repository.record_retrying(key, run, iso(now), retrying_because[:SNIPPET_CHARS])
    except RelayError:
        logger.exception("Could not record the failed attempt")


def attempt(event: dict[str, Any], deps: DeliveryDependencies) -> dict[str, Any]:
    """One delivery attempt. Raises DeliveryRetryable (the Retry policy runs it again) or
    DeliveryRejected (the run marks the message FAILED); returns when delivered or nothing to do."""
    key = MessageKey(event["senderId"], event["messageId"])
    run = int(event.get("run", 0))
    lane = str(event.get("lane", "fast"))
    logger.set_correlation_id(key.message_id)
    head, content = deps.repository.get_head_and_content(key)
    if head is None or head["status"] in TERMINAL_STATUSES or int(head.get("run", 0)) != run:
        if head is not None:
            _ensure_terminal_event(deps, key, run, head)
        return {"outcome": "skipped", "status": head["status"] if head else None}
    now = datetime.now(UTC)
    if head["status"] == Status.DELIVERING and int(head.get("attempts", 0)) > 0:
        # The run's previous attempt started but did not record its result (its step failed after
        # counting it: a write failed, the Lambda crashed); record it before counting another.
        _record_interrupted(deps, key, run, int(head["attempts"]), int(head["ttl"]), now)
    if _is_expired(head, now):
        raise DeliveryRejected("expired: the message passed its expiry before it could be delivered")

    started = deps.repository.begin_attempt(key, run, iso(now), str(event.get("executionArn", "")))
    if started is None:
        return {"outcome": "skipped", "status": None}
    number = int(started["attempts"])
    ttl = int(head["ttl"])
    deps.repository.append_event(
        key,
        EventType.ATTEMPT_STARTED,
        iso(now),
        ttl,
        run=run,
        slot=number,
        attempt=number,
        lane=lane,
        executionArn=str(event.get("executionArn", "")),
    )
    metrics.add_metric(name=Metric.ATTEMPTS, unit=MetricUnit.Count, value=1)

    body = content["body"].encode("utf-8") if "body" in content else None
    secret = deps.secrets.get(key.sender_id)
    if secret is None:
        # Nothing is sent unsigned. A missing secret is the deployment's fault, not the message's:
        # an operator can restore it, so the attempt fails retryably (and alarms) instead of FAILED.
        metrics.add_metric(name=Metric.SIGNING_SECRET_MISSING, unit=MetricUnit.Count, value=1)
        reason = f"{SIGNING_SECRET_MISSING}: {MISSING_SECRET_DETAIL}"
        _attempt_failed(
            deps, key, run, number, ttl, SIGNING_SECRET_MISSING, MISSING_SECRET_DETAIL, None, 0, retrying_because=reason
        )
        raise DeliveryRetryable(reason)
    headers = dict(content.get("headers", {}))
    headers.update(signature_headers(secret, webhook_id(key), int(time.time()), body or b""))

    started_clock = time.monotonic()
    response: DeliveryResponse | None = None
    try:
        response = deps.client.send(content["targetUrl"], content.get("method", "POST"), headers, body)
    except TargetBlocked as error:
        _attempt_failed(deps, key, run, number, ttl, "TargetBlocked", str(error), None, _ms(started_clock))
        raise DeliveryRejected(f"blocked: {error}") from None
    except (TargetTimeout, TargetUnreachable) as error:
        name = type(error).__name__
        _attempt_failed(
            deps, key, run, number, ttl, name, str(error), None, _ms(started_clock), retrying_because=f"{name}: {error}"
        )
        raise DeliveryRetryable(f"{name}: {error}") from None

    if 200 <= response.status_code <= 299:
        finished_at = datetime.now(UTC)
        if deps.repository.finish(key, run, Status.DELIVERED.value, iso(finished_at)) is not None:
            deps.repository.append_event(
                key,
                EventType.DELIVERED,
                iso(finished_at),
                ttl,
                run=run,
                slot=number,
                attempt=number,
                statusCode=response.status_code,
                durationMs=response.duration_ms,
                # The target took the request (2xx status line) but what followed was broken: say so.
                **({"anomaly": response.anomaly[:SNIPPET_CHARS]} if response.anomaly else {}),
            )
            metrics.add_metric(name=Metric.DELIVERED, unit=MetricUnit.Count, value=1)
            accepted = parse_iso(head["acceptedAt"])
            metrics.add_metric(
                name=Metric.LATENCY,
                unit=MetricUnit.Milliseconds,
                value=(finished_at - accepted).total_seconds() * 1000,
            )
        return {"outcome": "DELIVERED", "attempt": number, "statusCode": response.status_code}

    summary = f"HTTP {response.status_code}"
    retryable = is_retryable_status(response.status_code)
    _attempt_failed(
        deps,
        key,
        run,
        number,
        ttl,
        "HttpStatus",
        "",
        response,
        response.duration_ms,
        retrying_because=summary if retryable else None,
    )
    if retryable:
        raise DeliveryRetryable(summary)
    kind = "redirects are not followed" if 300 <= response.status_code <= 399 else "not retried"
    raise DeliveryRejected(f"{summary}: {kind}")


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _ensure_terminal_event(deps: DeliveryDependencies, key: MessageKey, run: int, head: dict[str, Any]) -> None:
    """A later step (or a redelivered queue message) found the run's message DELIVERED or FAILED:
    the step that marked it may have failed before writing its terminal event. Write it now; every
    write here is keyed like the original (same run, slot and type), so an existing event is kept."""
    if int(head.get("run", 0)) != run:
        return
    try:
        if head["status"] == Status.DELIVERED:
            number = int(head.get("attempts", 0))
            at = str(head.get("deliveredAt") or head.get("updatedAt") or iso(datetime.now(UTC)))
            deps.repository.append_event(
                key, EventType.DELIVERED, at, int(head["ttl"]), run=run, slot=number, attempt=number
            )
        elif head["status"] == Status.FAILED:
            _record_failed_events(deps, key, run, head, str(head.get("lastError") or "unknown"))
    except RelayError:
        logger.exception("Could not record the terminal event")
        raise


def _record_failed_events(
    deps: DeliveryDependencies, key: MessageKey, run: int, head: dict[str, Any], reason: str
) -> None:
    """The last attempt's result (when it has none) and the FAILED event, both idempotent."""
    attempts = int(head.get("attempts", 0))
    at = str(head.get("failedAt") or head.get("updatedAt") or iso(datetime.now(UTC)))
    if attempts > 0:
        # The last attempt may not have recorded its result (a failed write); never end without one.
        # Dated with the failure, which it precedes (a repair later must not put it after FAILED).
        _record_interrupted(deps, key, run, attempts, int(head["ttl"]), parse_iso(at))
    deps.repository.append_event(key, EventType.FAILED, at, int(head["ttl"]), run=run, slot=attempts, reason=reason)


def _record_interrupted(
    deps: DeliveryDependencies, key: MessageKey, run: int, number: int, ttl: int, now: datetime
) -> None:
    """Give attempt `number` a result when it has none (a no-op when its ATTEMPT_FAILED exists).

    Raises when the write fails: the step is retried before another attempt is counted (or before
    FAILED is recorded), so no attempt is left without a result.
    """
    try:
        deps.repository.append_event(
            key,
            EventType.ATTEMPT_FAILED,
            iso(now),
            ttl,
            run=run,
            slot=number,
            attempt=number,
            error="AttemptInterrupted",
            detail="the attempt's result was not recorded (its step failed); the request may have reached the target",
        )
    except RelayError:
        logger.exception("Could not record the interrupted attempt")
        raise


# -- endings ----------------------------------------------------------------------------------------


def failure_reason(event: dict[str, Any]) -> str:
    """A readable reason from a Catch's `{Error, Cause}` (Cause is Lambda's error JSON)."""
    if event.get("reason"):
        return str(event["reason"])
    failure = event.get("failure") or {}
    error = str(failure.get("Error", "Unknown"))
    cause = failure.get("Cause") or ""
    try:
        message = str(json.loads(cause).get("errorMessage", ""))
    except (ValueError, AttributeError):
        message = str(cause)
    if error == "DeliveryRetryable":
        return f"retries exhausted; last error: {message}"[:SNIPPET_CHARS]
    if error == "DeliveryRejected":
        return message[:SNIPPET_CHARS]
    return f"{error}: {message}"[:SNIPPET_CHARS] if message else error


def fail_message(event: dict[str, Any], deps: DeliveryDependencies) -> dict[str, Any]:
    """Mark a run's message FAILED with its reason, record the event and dead-letter it."""
    key = MessageKey(event["senderId"], event["messageId"])
    run = int(event.get("run", 0))
    reason = failure_reason(event)
    now = datetime.now(UTC)
    head = deps.repository.finish(key, run, Status.FAILED.value, iso(now), last_error=reason)
    if head is None:
        head = deps.repository.get_head(key)
        if head is None or head["status"] != Status.FAILED.value or int(head.get("run", 0)) != run:
            if head is not None:
                _ensure_terminal_event(deps, key, run, head)
            return {"outcome": "skipped"}
        reason = str(head.get("lastError", reason))  # a retried step: keep the first reason
    attempts = int(head.get("attempts", 0))
    _record_failed_events(deps, key, run, head, reason)
    deps.failed_queue.send_json(
        {**run_input(key, run), "reason": reason, "attempts": attempts, "failedAt": head["failedAt"]}
    )
    metrics.add_metric(name=Metric.FAILED, unit=MetricUnit.Count, value=1)
    return {"outcome": "FAILED", "reason": reason}


def move_to_slow_lane(event: dict[str, Any], deps: DeliveryDependencies) -> dict[str, Any]:
    """Hand a message that exhausted the fast lane to the STANDARD slow lane (idempotent by name)."""
    key = MessageKey(event["senderId"], event["messageId"])
    run = int(event.get("run", 0))
    head = deps.repository.get_head(key)
    if head is None or head["status"] in TERMINAL_STATUSES or int(head.get("run", 0)) != run:
        if head is not None:
            _ensure_terminal_event(deps, key, run, head)
        return {"outcome": "skipped"}
    # One slow-lane run per fast-lane run: a retried hand-off reads the same attempts count (the same
    # name, so the start is idempotent), while a message re-driven after its slow-lane run died gets a
    # new one. (A fixed name per run made every later hand-off find the dead run and start nothing.)
    name = execution_name(key, run, "slow", unique=f"a{int(head.get('attempts', 0))}")
    now = datetime.now(UTC)
    deps.repository.extend_claim(key, run, int(now.timestamp()) + deps.settings.slow_lane_lease_seconds, name)
    execution_arn = deps.workflows.start(deps.settings.slow_lane_arn, name, run_input(key, run))
    deps.repository.append_event(
        key,
        EventType.MOVED_TO_SLOW_LANE,
        iso(now),
        int(head["ttl"]),
        run=run,
        slot=int(head.get("attempts", 0)),
        executionArn=execution_arn,
        reason=failure_reason(event),
    )
    return {"outcome": "MOVED_TO_SLOW_LANE", "executionArn": execution_arn}
