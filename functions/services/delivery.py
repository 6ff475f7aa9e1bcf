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

from functions.adapters import aws
from functions.adapters.observability import logger, metrics
from functions.adapters.queue import MessageQueue
from functions.adapters.repository import MessageRepository
from functions.adapters.secrets import SigningSecrets
from functions.adapters.target_store import TargetRepository
from functions.adapters.workflows import Workflows, execution_name, standard_execution_arn
from functions.contract.lanes import Lane
from functions.contract.metric_names import Metric
from functions.domain.breaker import BreakerPolicy, TargetHealth
from functions.domain.clock import iso
from functions.domain.config import MAX_PARALLEL_DISPATCH, FirstAttempt, Settings
from functions.domain.exceptions import (
    ClaimHeld,
    DeliveryDeferred,
    DeliveryPaused,
    DeliveryRejected,
    DeliveryRetryable,
    DeliveryThrottled,
    RelayError,
    TargetBlocked,
    TargetTimeout,
    TargetUnreachable,
)
from functions.domain.flow import LEASE_MARGIN_SECONDS, Permit, Target, Wait
from functions.domain.model import Event, EventType, MessageHead, MessageKey, Status, StoredMessage, fencing_token
from functions.domain.origins import origin_of
from functions.domain.signing import signature_headers
from functions.services.target_health import TargetBreaker, pause
from functions.services.targets import FlowControl

if TYPE_CHECKING:
    # The client (urllib3, TLS) is loaded only by the functions that deliver (see `client`).
    from functions.adapters.http_client import DeliveryClient, DeliveryResponse

RETRYABLE_STATUS_CODES = frozenset({408, 425, 429})
# Details kept in the head on failures (each later write of the head pays for its size).
SNIPPET_CHARS = 256
SIGNING_SECRET_MISSING = "SigningSecretMissing"
MISSING_SECRET_DETAIL = (
    "the sender's signing secret was not found in Secrets Manager; nothing is sent unsigned. "
    "Restore it (or run `relay senders rotate-secret`) and the next attempt delivers."
)


def is_retryable_status(status_code: int) -> bool:
    # A code outside 100-599 is invalid; RFC 9110 (section 15) says to treat it as a 5xx.
    return status_code in RETRYABLE_STATUS_CODES or not 100 <= status_code <= 499


def retry_delay(retry_after: int | None, cap: int, expires_at: datetime, now: datetime) -> int | None:
    """How long the next attempt waits for a target's `Retry-After` (seconds, or None when it sent
    none): what it asked, capped by the deployment's maximum and by the message's expiry."""
    if retry_after is None:
        return None
    until_expiry = int((expires_at - now).total_seconds())
    return max(0, min(retry_after, cap, until_expiry))


def next_retry_wait(settings: Settings, lane: str, retry_count: int) -> int | None:
    """What the lane's next attempt would wait on its own (functions/domain/config.LaneWaits.next_wait)."""
    return settings.lane_waits.next_wait(lane, retry_count)


def run_attempts(head: MessageHead) -> int:
    """The attempts the head's current run has counted (a replay starts a run with none)."""
    return head.run_attempts


def run_tokens(event: dict[str, Any]) -> tuple[str, ...]:
    """The fencing tokens a lane's step shows: the name its run was handed the message under, then
    the run's own execution ARN (its first attempt takes the message over under the ARN)."""
    return tuple(fencing_token(str(event[name])) for name in ("owner", "executionArn") if event.get(name))


def attempt_lease(deps: DeliveryDependencies, stored: StoredMessage, now: int) -> int:
    """Until when an attempt begun now may still be sending: its timeout plus a margin."""
    timeout = stored.content.timeout_seconds or deps.settings.total_timeout_seconds
    return now + int(timeout) + LEASE_MARGIN_SECONDS


def webhook_id(key: MessageKey) -> str:
    """The same id on every delivery of a message, so receivers can dedupe."""
    return f"{key.sender_id}:{key.message_id}"


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
        from functions.adapters.http_client import DeliveryClient

        return DeliveryClient(
            allow_private=self.settings.allow_private_targets,
            connect_timeout=self.settings.connect_timeout_seconds,
            total_timeout=self.settings.total_timeout_seconds,
            max_response_bytes=self.settings.max_response_bytes,
        )

    @cached_property
    def flow(self) -> FlowControl:
        """Per-target limits (functions/services/targets.py); free for a target without limits."""
        return FlowControl(
            TargetRepository(self.settings.table_name),
            Target(
                "*",
                self.settings.target_default_rate_per_second,
                self.settings.target_default_max_concurrency,
            ),
            lease_seconds=self.settings.total_timeout_seconds + LEASE_MARGIN_SECONDS,
        )

    @cached_property
    def delivery_queue(self) -> MessageQueue:
        """Where the dispatcher puts back a message whose target is at its limit."""
        return MessageQueue(self.settings.queue_url)

    @cached_property
    def breaker(self) -> TargetBreaker:
        """Target health, cached in the warm function (functions/services/target_health.py)."""
        from functions.adapters.target_health_store import TargetHealthRepository

        store = TargetHealthRepository.from_settings(self.settings)
        return TargetBreaker(store, BreakerPolicy.from_settings(self.settings))

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

# The error of an attempt whose result was never recorded (its step died, or its lease ran out).
INTERRUPTED_ERROR = "AttemptInterrupted"
INTERRUPTED_DETAIL = "the attempt's result was not recorded (its step failed); the request may have reached the target"


@dataclass(frozen=True)
class QueuedRecord:
    """One delivery-queue record as the dispatcher receives it."""

    record_id: str
    body: str
    sent_at: datetime | None = None  # SQS's SentTimestamp: when the message was enqueued


def dispatch_batch(records: list[QueuedRecord], deps: DeliveryDependencies) -> list[str]:
    """Dispatch one SQS batch in parallel; the ids of the records SQS must deliver again.

    A failed record is reported alone (partial batch response): SQS redelivers just it once its
    visibility timeout ends. Threads started here act with the function's identity (relay dev).
    """
    if not records:
        return []
    with ThreadPoolExecutor(max_workers=min(len(records), MAX_PARALLEL_DISPATCH)) as pool:
        futures = {pool.submit(_dispatch_record, record, deps): record.record_id for record in records}
    failed = []
    for future, record_id in futures.items():
        error = future.exception()
        if isinstance(error, ClaimHeld):
            logger.info("Queued message is claimed by a live attempt; SQS delivers it again", extra={"id": record_id})
            failed.append(record_id)
        elif error is not None:
            logger.error("Dispatching a queued message failed", exc_info=error, extra={"record": record_id})
            failed.append(record_id)
    return failed


def _dispatch_record(record: QueuedRecord, deps: DeliveryDependencies) -> str:
    return dispatch(json.loads(record.body), deps, queue_message_id=record.record_id, sent_at=record.sent_at)


def _interrupted(head: MessageHead, at: datetime) -> Event | None:
    """The result of the head's counted attempt that has none (its step failed after counting it)."""
    number = head.unresolved_attempt
    if number is None:
        return None
    details = {"error": INTERRUPTED_ERROR, "detail": INTERRUPTED_DETAIL}
    return Event(EventType.ATTEMPT_FAILED, at, head.run, number, details)


def _attempt_started(head: MessageHead, at: datetime, lane: str, execution_arn: str = "") -> Event:
    details = {"lane": lane, "executionArn": execution_arn} if execution_arn else {"lane": lane}
    return Event(EventType.ATTEMPT_STARTED, at, head.run, head.attempts + 1, details)


def dispatch(
    queued: dict[str, Any],
    deps: DeliveryDependencies,
    queue_message_id: str = "",
    sent_at: datetime | None = None,
) -> str:
    """Claim one queued message and deliver it: the first attempt inline (or a fast-lane run).

    Unless it is done, stale or already claimed: the claim is the lease in the head, so a
    redelivered queue message never attempts (or starts a run) beside a live one. The claim also
    records ENQUEUED (at SQS's sent time) and, inline, counts the attempt: one write.
    The first read is eventually consistent (half the price): the claim's conditions refuse a stale
    head, and only then is the message read again, consistently.
    """
    key = MessageKey(queued["senderId"], queued["messageId"])
    logger.set_correlation_id(key.message_id)
    for consistent in (False, True):
        stored = deps.repository.get_message(key, consistent=consistent)
        if stored is None:
            if consistent:
                logger.warning("Queued message has no stored head; dropping it")
                return "missing"
            continue
        outcome = _claim_and_deliver(deps, queued, stored, queue_message_id, sent_at, last_try=consistent)
        if outcome is not None:
            return outcome
    return "already-running"  # pragma: no cover - the consistent pass always decides


def _claim_and_deliver(
    deps: DeliveryDependencies,
    queued: dict[str, Any],
    stored: StoredMessage,
    queue_message_id: str,
    sent_at: datetime | None,
    last_try: bool,
) -> str | None:
    """None when the claim was refused on a possibly stale read (the caller reads again)."""
    head, key, run = stored.head, stored.head.key, int(queued.get("run", 0))
    if head.is_terminal:
        return "terminal"
    if head.run != run:
        return "stale-run" if head.run > run or last_try else None
    now = datetime.now(UTC)
    if head.is_expired(now):
        fail_message({**run_input(key, run), "reason": "expired before delivery"}, deps)
        return "expired"
    inline = deps.settings.first_attempt == FirstAttempt.INLINE
    epoch = int(now.timestamp())
    blocked = _blocked_by(deps, stored)
    if blocked is not None:
        # Its target is OPEN: PAUSED instead of attempted (unless a live run holds the lease).
        paused = pause(deps.repository, head, blocked, deps.breaker.policy, lease_free_at=epoch)
        if paused is not None:
            return "paused"
        return _claim_refused(deps, key, run, epoch) if last_try else None
    permit: Permit | Wait | None = _flow_permit(deps, stored) if inline else None
    if isinstance(permit, Wait):
        return _defer(deps, queued, head, permit)
    enqueued = None
    if head.enqueued_run < run:
        details = {"queueMessageId": queue_message_id} if queue_message_id else {}
        enqueued = Event(EventType.ENQUEUED, min(sent_at or now, now), run, None, details)
    # The fast-lane run this delivery may start: its name is the claim's fencing token.
    name = execution_name(key, run, Lane.FAST, unique=uuid.uuid4().hex[:8])
    claimed = deps.repository.claim(
        head,
        epoch + deps.settings.fast_lane_lease_seconds,
        epoch,
        enqueued,
        started=_attempt_started(head, now, Lane.INLINE) if inline else None,
        interrupted=_interrupted(head, now) if inline else None,
        # Every delivery as a run: the reconciler watches the run from its start.
        due_at=None if inline else epoch + deps.settings.fast_lane_lease_seconds,
        owner=fencing_token(name),
        attempt_lease_until=attempt_lease(deps, stored, epoch) if inline else None,
    )
    if claimed is None:
        deps.flow.release(permit)
        return _claim_refused(deps, key, run, epoch) if last_try else None
    if not inline:
        return _start_fast_lane(deps, key, run, name)
    try:
        return _attempt_inline(deps, StoredMessage(claimed, stored.content), name)
    finally:
        deps.flow.release(permit)


def _flow_permit(deps: DeliveryDependencies, stored: StoredMessage) -> Permit | Wait:
    """Room at the message's target now (a Permit), or how long to wait; asked before an attempt
    is counted, so waiting never spends one. Free for a target without limits (cached config)."""
    try:
        origin = origin_of(stored.content.target_url)
    except ValueError:
        # Not a URL the client would send to: the attempt fails on its own, nothing to limit.
        return Permit(stored.head.key.sender_id, "")
    permit = deps.flow.acquire(stored.head.key.sender_id, origin)
    if isinstance(permit, Wait):
        metrics.add_metric(name=Metric.THROTTLED, unit=MetricUnit.Count, value=1)
    return permit


def _defer(deps: DeliveryDependencies, queued: dict[str, Any], head: MessageHead, wait: Wait) -> str:
    """Put a queued message whose target is at its limit back on the queue, visible after the wait.

    No claim, no attempt: waiting never spends one. A new queue message (not a visibility change of
    this one) keeps SQS's receive count, and so the dead-letter queue, for real failures. When the
    send fails, the record fails and SQS delivers it again after its visibility timeout.

    Waiting is not trouble: the message's due time is pushed past the wait (one write per re-drive
    window, not per deferral), so the reconciler never counts a waiting message as stuck. Who
    re-drives it if the queue copy is lost: the reconciler, once that due time passes.
    """
    epoch = int(time.time())
    window = deps.settings.redrive_after_seconds
    if head.due_at is None or head.due_at < epoch + wait.whole_seconds + window:
        deps.repository.hold_while_waiting(head, epoch + wait.whole_seconds + 2 * window)
    deps.delivery_queue.send_json(queued, delay_seconds=wait.whole_seconds)
    return "deferred"


def _claim_refused(deps: DeliveryDependencies, key: MessageKey, run: int, now: int) -> str:
    """Another claim holds the message. When nothing else watches it (an inline attempt has no due
    time), keep the queue message: SQS delivers it again after its visibility timeout, by when a
    claim whose dispatcher died has run out, so the message is never left behind."""
    head = deps.repository.get_head(key)
    if head is None or head.is_terminal or head.run != run or head.due_at is not None:
        return "already-running"
    if head.leased(now) or head.attempt_in_flight(now):
        raise ClaimHeld(f"claimed until {head.lease_until or head.attempt_lease_until}")
    return "already-running"


def _attempt_inline(deps: DeliveryDependencies, stored: StoredMessage, name: str) -> str:
    """The first attempt in the dispatcher, with the outcome rules of the fast lane's Deliver step:
    2xx is DELIVERED (no run at all), DeliveryRejected is FAILED (as MarkFailed), DeliveryRetryable
    starts the fast-lane run, which continues with the next attempt."""
    key, run = stored.head.key, stored.head.run
    try:
        try:
            result = _send(deps, stored, Lane.INLINE)
        except DeliveryRejected as rejected:
            fail_message({**run_input(key, run), "reason": str(rejected)[:SNIPPET_CHARS], "owner": name}, deps)
            return "failed"
        except DeliveryRetryable as retryable:
            return _start_fast_lane(deps, key, run, name, retryable.wait_seconds)
        except DeliveryDeferred as deferred:
            # The target's Retry-After is longer than the fast lane would wait: the slow lane waits it.
            return _defer_to_slow_lane(deps, key, run, deferred.seconds, name)
    except Exception:
        # A crashed step (a failed write, say): give the lease back so the queue's redelivery repeats
        # it soon; the repeated attempt first records the interrupted one.
        _release(deps, key, run, name)
        raise
    return "delivered" if result["outcome"] == Status.DELIVERED else str(result["outcome"])


def _start_fast_lane(
    deps: DeliveryDependencies, key: MessageKey, run: int, name: str, wait_seconds: int | None = None
) -> str:
    payload = run_input(key, run)
    if wait_seconds:
        payload["waitSeconds"] = wait_seconds  # the inline attempt's Retry-After: waited before the next one
    try:
        deps.workflows.start(deps.settings.fast_lane_arn, name, payload)
    except Exception:
        # Give the lease back so the queue's redelivery (or the reconciler) can start it again.
        _release(deps, key, run, name)
        raise
    return "started"


def _defer_to_slow_lane(deps: DeliveryDependencies, key: MessageKey, run: int, wait_seconds: int, owner: str) -> str:
    try:
        move_to_slow_lane({**run_input(key, run), "waitSeconds": wait_seconds, "owner": owner}, deps)
    except Exception:
        _release(deps, key, run, owner)
        raise
    return "deferred"


def _release(deps: DeliveryDependencies, key: MessageKey, run: int, owner: str) -> None:
    """Best effort: when the release fails too, the lease simply runs out and the queue redelivers."""
    try:
        deps.repository.release_claim(key, run, (fencing_token(owner),))
    except RelayError:
        logger.exception("Could not release the delivery lease")


def finish_run(event: dict[str, Any], deps: DeliveryDependencies) -> dict[str, Any]:
    """A lane's ending step: MarkFailed (the message FAILED) or GiveBack (`giveUp`: the run gave up)."""
    return give_up_run(event, deps) if event.get("giveUp") else fail_message(event, deps)


def give_up_run(event: dict[str, Any], deps: DeliveryDependencies) -> dict[str, Any]:
    """A lane run that gives up (an internal error outlasted its retries, a hand-off that failed)
    releases its lease and makes the message due now: the reconciler re-drives it within one round
    instead of when the run's long lease would have ended. Only the run that owns it can."""
    key = MessageKey(event["senderId"], event["messageId"])
    run = int(event.get("run", 0))
    deps.repository.release_claim(key, run, run_tokens(event), due_at=int(time.time()))
    return {"outcome": "released"}


# -- one attempt ------------------------------------------------------------------------------------


def attempt(event: dict[str, Any], deps: DeliveryDependencies) -> dict[str, Any]:
    """One delivery attempt of a lane. Raises DeliveryRetryable (the Retry policy runs it again),
    DeliveryDeferred (the lane waits for the target's Retry-After) or DeliveryRejected (the run marks
    the message FAILED); returns when delivered or nothing to do.

    Read eventually consistent first, like the dispatcher: a stale head fails the attempt's
    conditions and is read again, consistently, before anything is decided."""
    key = MessageKey(event["senderId"], event["messageId"])
    run = int(event.get("run", 0))
    logger.set_correlation_id(key.message_id)
    for consistent in (False, True):
        stored = deps.repository.get_message(key, consistent=consistent)
        if stored is None or stored.head.is_terminal or stored.head.run != run:
            if not consistent:
                continue
            return {"outcome": "skipped", "status": stored.head.status.value if stored else None}
        head = stored.head
        now = datetime.now(UTC)
        if head.is_expired(now):
            # MarkFailed records the result of an interrupted attempt together with FAILED.
            raise DeliveryRejected("expired: the message passed its expiry before it could be delivered")
        tokens = run_tokens(event)
        if not head.owned_by(*tokens):
            if not consistent:
                continue
            # Another run (or the reconciler) took the message: this one stops before it sends.
            return {"outcome": "skipped", "status": head.status.value}
        epoch = int(now.timestamp())
        blocked = _blocked_by(deps, stored)
        if blocked is not None:
            if pause(deps.repository, head, blocked, deps.breaker.policy, owner=tokens) is None:
                return {"outcome": "skipped", "status": None}
            # The run ends here (its lease is given back); the message keeps its attempts.
            raise DeliveryPaused(f"target {blocked.origin} is {blocked.state.value}")
        permit = _flow_permit(deps, stored)
        if isinstance(permit, Wait):
            # Before the attempt is counted: the lane's DeliveryThrottled retrier tries again shortly.
            raise DeliveryThrottled(f"the target is at its limit; room in {permit.seconds:.2f} s")
        try:
            started = _attempt_started(head, now, str(event.get("lane", Lane.FAST)), str(event.get("executionArn", "")))
            lease = attempt_lease(deps, stored, epoch)
            handed, own = tokens[0], tokens[-1]
            begun = deps.repository.begin_attempt(head, started, _interrupted(head, now), (handed, own), lease)
            if begun is not None:
                lane, retry_count = str(event.get("lane", Lane.FAST)), int(event.get("retryCount") or 0)
                return _send(deps, StoredMessage(begun, stored.content), lane, retry_count)
        finally:
            deps.flow.release(permit)
    return {"outcome": "skipped", "status": None}


def _target(stored: StoredMessage) -> str | None:
    try:
        return origin_of(stored.content.target_url)
    except ValueError:
        return None


def _blocked_by(deps: DeliveryDependencies, stored: StoredMessage) -> TargetHealth | None:
    """The OPEN target health that keeps this message from being attempted (cached read)."""
    origin = _target(stored)
    if origin is None:
        return None
    return deps.breaker.blocking(stored.head.key.sender_id, origin, stored.head.key.message_id)


def _target_answered(deps: DeliveryDependencies, stored: StoredMessage, failed: bool) -> None:
    """Tell the breaker: a retryable failure is counted (one ADD); a success closes or resets it
    only when the warm function knows of failures, and closes an open target only if the attempt
    started after it opened (its ATTEMPT_STARTED time, as the head `_send` was given records it).
    Best effort: delivery never fails on it."""
    origin = _target(stored)
    if origin is None:
        return
    sender, message_id = stored.head.key.sender_id, stored.head.key.message_id
    try:
        if failed:
            deps.breaker.failed(sender, origin, message_id)
        else:
            started = stored.head.last_event(EventType.ATTEMPT_STARTED)
            at = int(started.at.timestamp()) if started and started.attempt == stored.head.attempts else None
            deps.breaker.succeeded(sender, origin, message_id, at)
    except RelayError:
        logger.exception("Could not record the target's health")


def _send(deps: DeliveryDependencies, stored: StoredMessage, lane: str, retry_count: int = 0) -> dict[str, Any]:
    """Send the counted attempt `stored.head.attempts` and record its result in the same head.

    `lane` and `retry_count` (the lane's retries of its Deliver step so far) tell what the next
    attempt would wait, to compare with a target's Retry-After."""
    head, content = stored.head, stored.content
    number = head.attempts
    metrics.add_metric(name=Metric.ATTEMPTS, unit=MetricUnit.Count, value=1)
    secret = deps.secrets.get(head.key.sender_id)
    if secret is None:
        # Nothing is sent unsigned. A missing secret is the deployment's fault, not the message's:
        # an operator can restore it, so the attempt fails retryably (and alarms) instead of FAILED.
        metrics.add_metric(name=Metric.SIGNING_SECRET_MISSING, unit=MetricUnit.Count, value=1)
        reason = f"{SIGNING_SECRET_MISSING}: {MISSING_SECRET_DETAIL}"
        _attempt_failed(deps, head, SIGNING_SECRET_MISSING, MISSING_SECRET_DETAIL, None, 0, retry_reason=reason)
        raise DeliveryRetryable(reason)
    body = content.body
    headers = content.headers
    headers.update(signature_headers(secret, webhook_id(head.key), int(time.time()), body or b""))

    started_clock = time.monotonic()
    try:
        response = deps.client.send(content.target_url, content.method, headers, body, content.timeout_seconds)
    except TargetBlocked as error:
        _attempt_failed(deps, head, "TargetBlocked", str(error), None, _ms(started_clock))
        raise DeliveryRejected(f"blocked: {error}") from None
    except (TargetTimeout, TargetUnreachable) as error:
        name = type(error).__name__
        summary = f"{name}: {error}"
        exhausted = _budget_exhausted(stored, summary)
        _attempt_failed(
            deps, head, name, str(error), None, _ms(started_clock), retry_reason=None if exhausted else summary
        )
        _target_answered(deps, stored, failed=True)
        if exhausted:
            raise DeliveryRejected(exhausted) from None
        raise DeliveryRetryable(summary) from None

    if 200 <= response.status_code <= 299:
        _record_delivered(deps, head, response)
        _target_answered(deps, stored, failed=False)
        return {"outcome": "DELIVERED", "attempt": number, "statusCode": response.status_code}

    summary = f"HTTP {response.status_code}"
    retryable = is_retryable_status(response.status_code)
    exhausted = _budget_exhausted(stored, summary) if retryable else None
    now = datetime.now(UTC)
    delay = None
    if retryable and not exhausted:
        cap = deps.settings.max_retry_after_seconds
        delay = retry_delay(response.retry_after_seconds, cap, head.expires_at, now)
    _attempt_failed(
        deps,
        head,
        "HttpStatus",
        response.anomaly or "",  # an invalid status code says so
        response,
        response.duration_ms,
        retry_reason=summary if retryable and not exhausted else None,
        retry_delay_seconds=delay,
    )
    if retryable:
        _target_answered(deps, stored, failed=True)
    if exhausted:
        raise DeliveryRejected(exhausted)
    if retryable:
        if delay and _defers(deps.settings, stored.head, lane, retry_count, delay):
            raise DeliveryDeferred(delay)
        raise DeliveryRetryable(summary, wait_seconds=delay or None)
    kind = "redirects are not followed" if 300 <= response.status_code <= 399 else "not retried"
    raise DeliveryRejected(f"{summary}: {kind}")


def _budget_exhausted(stored: StoredMessage, summary: str) -> str | None:
    """The FAILED reason when this retryable failure spent the message's own retry budget."""
    budget = stored.content.max_attempts
    if budget is None or run_attempts(stored.head) < budget:
        return None
    return f"retry budget of {budget} attempts exhausted; last error: {summary}"[:SNIPPET_CHARS]


def _defers(settings: Settings, head: MessageHead, lane: str, retry_count: int, delay: int) -> bool:
    """Whether a Retry-After of `delay` seconds needs a Wait state: the lane's next attempt would come
    sooner. The slow lane's own retries restart after each such wait, so it defers only while the
    run is within the deployment's attempts (then its own retries, and their end, take over)."""
    next_wait = next_retry_wait(settings, lane, retry_count)
    if next_wait is None or delay <= next_wait:
        return False
    return lane != Lane.SLOW or not settings.max_attempts or run_attempts(head) < settings.max_attempts


def _record_delivered(deps: DeliveryDependencies, head: MessageHead, response: DeliveryResponse) -> None:
    finished_at = datetime.now(UTC)
    details: dict[str, Any] = {"statusCode": response.status_code, "durationMs": response.duration_ms}
    if response.anomaly:
        # The target took the request (2xx status line) but what followed was broken: say so.
        details["anomaly"] = response.anomaly[:SNIPPET_CHARS]
    delivered = Event(EventType.DELIVERED, finished_at, head.run, head.attempts, details)
    if deps.repository.finish_delivered(head.key, head.run, delivered, head.owner) is None:
        return  # a retried step: the first one recorded it
    metrics.add_metric(name=Metric.DELIVERED, unit=MetricUnit.Count, value=1)
    metrics.add_metric(
        name=Metric.LATENCY,
        unit=MetricUnit.Milliseconds,
        value=(finished_at - head.accepted_at).total_seconds() * 1000,
    )


def _attempt_failed(
    deps: DeliveryDependencies,
    head: MessageHead,
    error: str,
    detail: str,
    response: DeliveryResponse | None,
    duration_ms: int,
    retry_reason: str | None = None,
    retry_delay_seconds: int | None = None,
) -> None:
    """Record a failed attempt (and RETRYING when it will be retried), in one write.

    Best effort here: the outcome the caller raises next decides what the state machine does, and a
    storage hiccup must not turn a retryable failure into an extra attempt. An unrecorded result is
    recorded as interrupted before the next attempt counts (or with FAILED).
    """
    details: dict[str, Any] = {"error": error, "durationMs": duration_ms}
    if detail:
        details["detail"] = detail[:SNIPPET_CHARS]
    if response is not None:
        details["statusCode"] = response.status_code
        if response.body_snippet:
            details["responseSnippet"] = response.body_snippet[:SNIPPET_CHARS]
        if response.retry_after_seconds is not None:
            details["retryAfterSeconds"] = response.retry_after_seconds
    if retry_delay_seconds is not None:
        # What the next attempt waits for it (capped), in real seconds also under relay dev's time scale.
        details["retryDelaySeconds"] = retry_delay_seconds
    metrics.add_metric(name=Metric.ATTEMPTS_FAILED, unit=MetricUnit.Count, value=1)
    now = datetime.now(UTC)
    failed = Event(EventType.ATTEMPT_FAILED, now, head.run, head.attempts, details)
    # The reconciler looks at a retrying message once the run's lease is over.
    due_at = head.lease_until or int(now.timestamp()) + deps.settings.redrive_after_seconds
    reason = retry_reason[:SNIPPET_CHARS] if retry_reason else None
    try:
        deps.repository.record_failed_attempt(head.key, head.run, failed, reason, due_at, head.owner)
    except RelayError:
        logger.exception("Could not record the failed attempt")


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


# -- endings ----------------------------------------------------------------------------------------


def failure_reason(event: dict[str, Any]) -> str:
    """A readable reason from a Catch's `{Error, Cause}` (Cause is Lambda's error JSON)."""
    if event.get("reason"):
        return str(event["reason"])
    if event.get("waitSeconds") is not None and not event.get("failure"):
        return f"the target's Retry-After asks to wait {event['waitSeconds']} s"
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
    if error == "DeliveryDeferred":
        return f"the target's Retry-After asks to wait {message} s"
    return f"{error}: {message}"[:SNIPPET_CHARS] if message else error


def fail_message(event: dict[str, Any], deps: DeliveryDependencies) -> dict[str, Any]:
    """Mark a run's message FAILED with its reason and event (one write), and dead-letter it."""
    key = MessageKey(event["senderId"], event["messageId"])
    run = int(event.get("run", 0))
    reason = failure_reason(event)
    head = deps.repository.get_head(key)
    if head is None or head.run != run:
        return {"outcome": "skipped"}
    if not head.is_terminal:
        now = datetime.now(UTC)
        events = [e for e in (_interrupted(head, now),) if e is not None]
        events.append(Event(EventType.FAILED, now, run, head.attempts, {"reason": reason}))
        updated = deps.repository.finish_failed(head, reason, events, run_tokens(event))
        head = updated or deps.repository.get_head(key) or head
    if head.status != Status.FAILED or head.run != run:
        return {"outcome": "skipped"}
    # A retried step finds FAILED already: it keeps the first reason and sends the dead letter again
    # (the failed-messages queue is at-least-once like every queue; consumers dedupe by message id).
    reason = head.last_error or reason
    failed_at = head.finished_at(EventType.FAILED) or head.updated_at
    deps.failed_queue.send_json(
        {**run_input(key, run), "reason": reason, "attempts": head.attempts, "failedAt": iso(failed_at)}
    )
    metrics.add_metric(name=Metric.FAILED, unit=MetricUnit.Count, value=1)
    return {"outcome": "FAILED", "reason": reason}


def move_to_slow_lane(event: dict[str, Any], deps: DeliveryDependencies) -> dict[str, Any]:
    """Hand a message that exhausted the fast lane to the STANDARD slow lane (idempotent by name).

    A deferred attempt (the target's Retry-After is longer than the fast lane would wait: `waitSeconds`,
    or the fast lane's DeliveryDeferred) starts the slow lane with that wait instead of its first one."""
    key = MessageKey(event["senderId"], event["messageId"])
    run = int(event.get("run", 0))
    head = deps.repository.get_head(key)
    if head is None or head.is_terminal or head.run != run:
        return {"outcome": "skipped"}
    # One slow-lane run per fast-lane run: a retried hand-off reads the same attempts count (the same
    # name, so the start is idempotent), while a message re-driven after its slow-lane run died gets a
    # new one.
    name = execution_name(key, run, Lane.SLOW, unique=f"a{head.attempts}")
    now = datetime.now(UTC)
    execution_arn = standard_execution_arn(deps.settings.slow_lane_arn, name)
    moved = Event(
        EventType.MOVED_TO_SLOW_LANE,
        now,
        run,
        head.attempts,
        {"executionArn": execution_arn, "reason": failure_reason(event)},
    )
    # Lease, ownership, due time and event first (a retried step finds them and only starts the run).
    lease_until = int(now.timestamp()) + deps.settings.slow_lane_lease_seconds
    handed = fencing_token(name)
    if deps.repository.hand_to_slow_lane(head, lease_until, name, moved, run_tokens(event), handed) is None:
        current = deps.repository.get_head(key)
        if current is None or current.owner != handed:
            return {"outcome": "skipped"}  # another run (or the reconciler) owns the message now
    payload = run_input(key, run)
    wait_seconds = _deferral_seconds(event)
    if wait_seconds is not None:
        payload["waitSeconds"] = wait_seconds
    try:
        deps.workflows.start(deps.settings.slow_lane_arn, name, payload)
    except Exception:
        # No slow-lane run holds the lease just handed to it: give it back and make the message due
        # now (a retried hand-off finds itself the owner and starts the run again).
        try:
            deps.repository.release_claim(key, run, (handed,), due_at=int(time.time()))
        except RelayError:
            logger.exception("Could not give back the slow lane's lease")
        raise
    return {"outcome": "MOVED_TO_SLOW_LANE", "executionArn": execution_arn}


def _deferral_seconds(event: dict[str, Any]) -> int | None:
    """The wait a deferred hand-off asks for: `waitSeconds`, or the fast lane's caught DeliveryDeferred."""
    if event.get("waitSeconds") is not None:
        return int(event["waitSeconds"])
    failure = event.get("failure") or {}
    if failure.get("Error") != DeliveryDeferred.__name__:
        return None
    try:
        return max(0, int(json.loads(failure.get("Cause") or "{}").get("errorMessage", "")))
    except (ValueError, AttributeError):
        return None
