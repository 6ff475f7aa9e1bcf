"""One delivery attempt, whoever makes it: the dispatcher inline, or a lane's Deliver step.

Every attempt counts itself atomically in the head and appends ATTEMPT_STARTED (and
ATTEMPT_FAILED) under keys derived from its attempt number, so a retried step never writes an
event twice. Its failures are raised: their class names are the lanes' Retry and Catch contract.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from aws_lambda_powertools.metrics import MetricUnit

from functions.adapters.observability import logger, metrics
from functions.contract.metric_names import Metric
from functions.domain.breaker import TargetHealth
from functions.domain.exceptions import (
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
from functions.domain.flow import Permit, Wait
from functions.domain.model import Event, EventType, MessageHead, Status, StoredMessage
from functions.domain.web.origins import origin_of
from functions.domain.web.signing import signature_headers
from functions.services.delivery.dependencies import DeliveryDependencies
from functions.services.delivery.payloads import AttemptOutcome, AttemptResult, Lane, LaneEvent
from functions.services.delivery.rules import (
    SNIPPET_CHARS,
    attempt_lease,
    attempt_started_event,
    budget_exhausted,
    defers,
    interrupted_event,
    is_retryable_status,
    retry_delay,
    webhook_id,
)
from functions.services.reporting.outcomes import report_outcome, report_paused
from functions.services.targeting.target_health import pause

if TYPE_CHECKING:
    from functions.adapters.http_client import DeliveryResponse

SIGNING_SECRET_MISSING = "SigningSecretMissing"
MISSING_SECRET_DETAIL = (
    "the sender's signing secret was not found in Secrets Manager; nothing is sent unsigned. "
    "Restore it (or run `relay senders rotate-secret`) and the next attempt delivers."
)


def attempt(event: LaneEvent, deps: DeliveryDependencies) -> AttemptResult:
    """One delivery attempt of a lane. Raises DeliveryRetryable (the Retry policy runs it again),
    DeliveryDeferred (the lane waits for the target's Retry-After) or DeliveryRejected (the run marks
    the message FAILED); returns when delivered or nothing to do.

    Read eventually consistent first, like the dispatcher: a stale head fails the attempt's
    conditions and is read again, consistently, before anything is decided."""
    key, run = event.key, event.run
    logger.set_correlation_id(key.message_id)
    for consistent in (False, True):
        stored = deps.repository.get_message(key, consistent=consistent)
        if stored is None or stored.head.is_terminal or stored.head.run != run:
            if not consistent:
                continue
            if stored is not None and stored.head.run == run:
                # Finished by this run (a retried step): what it reports is reported again, once.
                report_outcome(deps.reporter, stored)
            return AttemptResult.skipped(stored.head.status if stored else None)
        head = stored.head
        now = datetime.now(UTC)
        if head.is_expired(now):
            # MarkFailed records the result of an interrupted attempt together with FAILED.
            raise DeliveryRejected("expired: the message passed its expiry before it could be delivered")
        if not head.owned_by(*event.tokens):
            if not consistent:
                continue
            # Another run (or the reconciler) took the message: this one stops before it sends.
            return AttemptResult.skipped(head.status)
        result = _attempt_owned(event, deps, stored, now)
        if result is not None:
            return result
    return AttemptResult.skipped()


def _attempt_owned(
    event: LaneEvent, deps: DeliveryDependencies, stored: StoredMessage, now: datetime
) -> AttemptResult | None:
    """The attempt of a run that owns the message: paused, throttled, or counted and sent. None when
    the count was refused (a stale read: the caller reads again, consistently)."""
    head, tokens, epoch = stored.head, event.tokens, int(now.timestamp())
    blocked = blocked_by(deps, stored)
    if blocked is not None:
        paused = pause(deps.repository, head, blocked, deps.breaker.policy, owner=tokens)
        if paused is None:
            return AttemptResult.skipped()
        notify_paused(deps, paused, blocked.origin)
        # The run ends here (its lease is given back); the message keeps its attempts.
        raise DeliveryPaused(f"target {blocked.origin} is {blocked.state.value}")
    # A lane's attempt is a retry: served before fresh messages (the dispatcher's).
    permit = flow_permit(deps, stored, retry=event.lane != Lane.INLINE)
    if isinstance(permit, Wait):
        # Before the attempt is counted: the lane's DeliveryThrottled retrier tries again shortly.
        raise DeliveryThrottled(f"the target is at its limit; room in {permit.seconds:.2f} s")
    try:
        started = attempt_started_event(head, now, event.lane, event.execution_arn)
        lease = attempt_lease(deps.settings, stored, epoch)
        handed, own = tokens[0], tokens[-1]
        begun = deps.repository.begin_attempt(head, started, interrupted_event(head, now), (handed, own), lease)
        if begun is not None:
            return send(deps, StoredMessage(begun, stored.content), event.lane, event.retry_count)
    finally:
        deps.flow.release(permit)
    return None


def notify_paused(deps: DeliveryDependencies, head: MessageHead, origin: str) -> None:
    """`message.paused`, best effort: the pause is written and stands whatever happens here."""
    try:
        report_paused(deps.reporter, head, origin)
    except Exception:
        logger.exception("Could not notify the paused message")


def _target(stored: StoredMessage) -> str | None:
    try:
        return origin_of(stored.content.target_url)
    except ValueError:
        return None


def flow_permit(
    deps: DeliveryDependencies, stored: StoredMessage, retry: bool, waited_turn: bool = False
) -> Permit | Wait:
    """Room at the message's target now (a Permit), or how long to wait (its expected turn); asked
    before an attempt is counted, so waiting never spends one. `retry`: a retrying message, served
    before fresh ones; `waited_turn`: a fresh one back from waiting its turn (not queued again).
    Free for a target without limits (cached config)."""
    origin = _target(stored)
    if origin is None:
        # Not a URL the client would send to: the attempt fails on its own, nothing to limit.
        return Permit(stored.head.key.sender_id, "")
    key = stored.head.key
    permit = deps.flow.acquire(key.sender_id, origin, retry=retry, home=key.message_id, waited_turn=waited_turn)
    if isinstance(permit, Wait):
        metrics.add_metric(name=Metric.THROTTLED, unit=MetricUnit.Count, value=1)
    return permit


def blocked_by(deps: DeliveryDependencies, stored: StoredMessage) -> TargetHealth | None:
    """The OPEN target health that keeps this message from being attempted (cached read)."""
    origin = _target(stored)
    if origin is None:
        return None
    return deps.breaker.blocking(stored.head.key.sender_id, origin, stored.head.key.message_id)


def _target_answered(deps: DeliveryDependencies, stored: StoredMessage, failed: bool) -> None:
    """Tell the breaker: a retryable failure is counted (one ADD); a success closes or resets it
    only when the warm function knows of failures, and closes an open target only if the attempt
    started after it opened (its ATTEMPT_STARTED time, as the head `send` was given records it).
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


def send(deps: DeliveryDependencies, stored: StoredMessage, lane: Lane, retry_count: int = 0) -> AttemptResult:
    """Send the counted attempt `stored.head.attempts` and record its result in the same head.

    `lane` and `retry_count` (the lane's retries of its Deliver step so far) tell what the next
    attempt would wait, to compare with a target's Retry-After."""
    head, content = stored.head, stored.content
    metrics.add_metric(name=Metric.ATTEMPTS, unit=MetricUnit.Count, value=1)
    secret = deps.secrets.get(head.key.sender_id)
    if secret is None:
        _secret_missing(deps, head)
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
        _unreachable(deps, stored, error, _ms(started_clock))

    if 200 <= response.status_code <= 299:
        _record_delivered(deps, stored, response)
        _target_answered(deps, stored, failed=False)
        return AttemptResult(AttemptOutcome.DELIVERED, head.attempts, response.status_code)
    _http_failure(deps, stored, response, lane, retry_count)


def _secret_missing(deps: DeliveryDependencies, head: MessageHead) -> NoReturn:
    """Nothing is sent unsigned. A missing secret is the deployment's fault, not the message's: an
    operator can restore it, so the attempt fails retryably (and alarms) instead of FAILED."""
    metrics.add_metric(name=Metric.SIGNING_SECRET_MISSING, unit=MetricUnit.Count, value=1)
    reason = f"{SIGNING_SECRET_MISSING}: {MISSING_SECRET_DETAIL}"
    _attempt_failed(deps, head, SIGNING_SECRET_MISSING, MISSING_SECRET_DETAIL, None, 0, retry_reason=reason)
    raise DeliveryRetryable(reason)


def _unreachable(
    deps: DeliveryDependencies, stored: StoredMessage, error: TargetTimeout | TargetUnreachable, duration_ms: int
) -> NoReturn:
    """No answer (a timeout, a refused connection): retryable, unless it spent the retry budget."""
    name = type(error).__name__
    summary = f"{name}: {error}"
    exhausted = budget_exhausted(stored, summary)
    retry_reason = None if exhausted else summary
    _attempt_failed(deps, stored.head, name, str(error), None, duration_ms, retry_reason=retry_reason)
    _target_answered(deps, stored, failed=True)
    if exhausted:
        raise DeliveryRejected(exhausted) from None
    raise DeliveryRetryable(summary) from None


def _http_failure(
    deps: DeliveryDependencies, stored: StoredMessage, response: DeliveryResponse, lane: Lane, retry_count: int
) -> NoReturn:
    """A status that is not 2xx: retried (408, 425, 429, 5xx; waiting what Retry-After asks), or
    refused for good (3xx: redirects are not followed; other 4xx)."""
    head = stored.head
    summary = f"HTTP {response.status_code}"
    retryable = is_retryable_status(response.status_code)
    exhausted = budget_exhausted(stored, summary) if retryable else None
    delay = None
    if retryable and not exhausted:
        cap = deps.settings.max_retry_after_seconds
        delay = retry_delay(response.retry_after_seconds, cap, head.expires_at, datetime.now(UTC))
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
        if delay and defers(deps.settings, stored.head, lane, retry_count, delay):
            raise DeliveryDeferred(delay)
        raise DeliveryRetryable(summary, wait_seconds=delay or None)
    kind = "redirects are not followed" if 300 <= response.status_code <= 399 else "not retried"
    raise DeliveryRejected(f"{summary}: {kind}")


def _record_delivered(deps: DeliveryDependencies, stored: StoredMessage, response: DeliveryResponse) -> None:
    """DELIVERED, then the callback it asks for (after the write: functions/services/reporting/outcomes.py)."""
    head = stored.head
    finished_at = datetime.now(UTC)
    details: dict[str, Any] = {"statusCode": response.status_code, "durationMs": response.duration_ms}
    if response.anomaly:
        # The target took the request (2xx status line) but what followed was broken: say so.
        details["anomaly"] = response.anomaly[:SNIPPET_CHARS]
    delivered = Event(EventType.DELIVERED, finished_at, head.run, head.attempts, details)
    written = deps.repository.finish_delivered(head.key, head.run, delivered, head.owner)
    if stored.content.callback_url:
        # A retried step (written is None: the first one recorded it) reports again; the id dedupes.
        written_head = written or deps.repository.get_head(head.key) or head
        if written_head.status is Status.DELIVERED and written_head.run == head.run:
            report_outcome(
                deps.reporter, StoredMessage(written_head, stored.content), response.status_code, response.body_snippet
            )
    if written is None:
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
