"""The rules of an attempt's outcome, and the events it records: plain functions, no I/O."""

from __future__ import annotations

from datetime import datetime

from functions.domain.config import Settings
from functions.domain.flow import LEASE_MARGIN_SECONDS
from functions.domain.model import Event, EventType, MessageHead, MessageKey, StoredMessage
from functions.services.delivery.payloads import Lane

RETRYABLE_STATUS_CODES = frozenset({408, 425, 429})
# Details kept in the head on failures (each later write of the head pays for its size).
SNIPPET_CHARS = 256
# The error of an attempt whose result was never recorded (its step died, or its lease ran out).
INTERRUPTED_ERROR = "AttemptInterrupted"
INTERRUPTED_DETAIL = "the attempt's result was not recorded (its step failed); the request may have reached the target"


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


def next_retry_wait(settings: Settings, lane: Lane, retry_count: int) -> int | None:
    """What the lane's next attempt would wait on its own (functions/domain/config.LaneWaits.next_wait)."""
    return settings.lane_waits.next_wait(lane, retry_count)


def run_attempts(head: MessageHead) -> int:
    """The attempts the head's current run has counted (a replay starts a run with none)."""
    return head.run_attempts


def budget_exhausted(stored: StoredMessage, summary: str) -> str | None:
    """The FAILED reason when this retryable failure spent the message's own retry budget."""
    budget = stored.content.max_attempts
    if budget is None or run_attempts(stored.head) < budget:
        return None
    return f"retry budget of {budget} attempts exhausted; last error: {summary}"[:SNIPPET_CHARS]


def defers(settings: Settings, head: MessageHead, lane: Lane, retry_count: int, delay: int) -> bool:
    """Whether a Retry-After of `delay` seconds needs a Wait state: the lane's next attempt would come
    sooner. The slow lane's own retries restart after each such wait, so it defers only while the
    run is within the deployment's attempts (then its own retries, and their end, take over)."""
    next_wait = next_retry_wait(settings, lane, retry_count)
    if next_wait is None or delay <= next_wait:
        return False
    return lane != Lane.SLOW or not settings.max_attempts or run_attempts(head) < settings.max_attempts


def attempt_lease(settings: Settings, stored: StoredMessage, now: int) -> int:
    """Until when an attempt begun now may still be sending: its timeout plus a margin."""
    timeout = stored.content.timeout_seconds or settings.total_timeout_seconds
    return now + int(timeout) + LEASE_MARGIN_SECONDS


def webhook_id(key: MessageKey) -> str:
    """The same id on every delivery of a message, so receivers can dedupe."""
    return f"{key.sender_id}:{key.message_id}"


def interrupted_event(head: MessageHead, at: datetime) -> Event | None:
    """The result of the head's counted attempt that has none (its step failed after counting it)."""
    number = head.unresolved_attempt
    if number is None:
        return None
    details = {"error": INTERRUPTED_ERROR, "detail": INTERRUPTED_DETAIL}
    return Event(EventType.ATTEMPT_FAILED, at, head.run, number, details)


def attempt_started_event(head: MessageHead, at: datetime, lane: Lane, execution_arn: str = "") -> Event:
    details = {"lane": lane.value, "executionArn": execution_arn} if execution_arn else {"lane": lane.value}
    return Event(EventType.ATTEMPT_STARTED, at, head.run, head.attempts + 1, details)
