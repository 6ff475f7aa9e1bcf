"""The dispatcher: claims each queued message and makes its first attempt itself.

With `delivery.firstAttempt: inline` (the default) a message its target takes at once costs no
state machine run. Only a retryable failure starts a fast-lane run, which continues with the next
attempt; the retrying itself is the lanes' Retry policies, not a loop here.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

from functions.adapters.observability import logger
from functions.adapters.workflows import execution_name
from functions.domain.config import MAX_PARALLEL_DISPATCH, FirstAttempt
from functions.domain.exceptions import (
    ClaimHeld,
    DeliveryDeferred,
    DeliveryRejected,
    DeliveryRetryable,
    RelayError,
)
from functions.domain.flow import Permit, Wait
from functions.domain.model import Event, EventType, MessageHead, MessageKey, StoredMessage, fencing_token
from functions.services.delivery.attempt import blocked_by, flow_permit, notify_paused, send
from functions.services.delivery.dependencies import DeliveryDependencies
from functions.services.delivery.lane_endings import fail_message, move_to_slow_lane
from functions.services.delivery.payloads import DispatchOutcome, Lane, LaneEvent, QueuedRecord, RunInput
from functions.services.delivery.rules import SNIPPET_CHARS, attempt_lease, attempt_started_event, interrupted_event
from functions.services.reporting.outcomes import report_outcome
from functions.services.targeting.target_health import pause


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


def _dispatch_record(record: QueuedRecord, deps: DeliveryDependencies) -> DispatchOutcome:
    return dispatch(record.message, deps, queue_message_id=record.record_id, sent_at=record.sent_at)


def dispatch(
    queued: RunInput,
    deps: DeliveryDependencies,
    queue_message_id: str = "",
    sent_at: datetime | None = None,
) -> DispatchOutcome:
    """Claim one queued message and deliver it: the first attempt inline (or a fast-lane run).

    Unless it is done, stale or already claimed: the claim is the lease in the head, so a
    redelivered queue message never attempts (or starts a run) beside a live one. The claim also
    records ENQUEUED (at SQS's sent time) and, inline, counts the attempt: one write.
    The first read is eventually consistent (half the price): the claim's conditions refuse a stale
    head, and only then is the message read again, consistently.
    """
    logger.set_correlation_id(queued.key.message_id)
    for consistent in (False, True):
        stored = deps.repository.get_message(queued.key, consistent=consistent)
        if stored is None:
            if consistent:
                logger.warning("Queued message has no stored head; dropping it")
                return DispatchOutcome.MISSING
            continue
        outcome = _claim_and_deliver(deps, queued, stored, queue_message_id, sent_at, last_try=consistent)
        if outcome is not None:
            return outcome
    return DispatchOutcome.ALREADY_RUNNING  # pragma: no cover - the consistent pass always decides


def _claim_and_deliver(
    deps: DeliveryDependencies,
    queued: RunInput,
    stored: StoredMessage,
    queue_message_id: str,
    sent_at: datetime | None,
    last_try: bool,
) -> DispatchOutcome | None:
    """None when the claim was refused on a possibly stale read (the caller reads again)."""
    head, key, run = stored.head, stored.head.key, queued.run
    if head.is_terminal:
        if head.run == run:
            # The queue's redelivery after a dispatcher that finished it crashed: report it (once).
            report_outcome(deps.reporter, stored)
        return DispatchOutcome.TERMINAL
    if head.run != run:
        return DispatchOutcome.STALE_RUN if head.run > run or last_try else None
    now = datetime.now(UTC)
    early = head.seconds_until_due(now.timestamp())
    if early:
        # A delayed message's queue copy that came before its time: back, for the seconds that remain.
        deps.delivery_queue.send_json(queued.to_dict(), delay_seconds=early)
        return DispatchOutcome.DEFERRED
    if head.is_expired(now):
        fail_message(LaneEvent(key, run, reason="expired before delivery"), deps)
        return DispatchOutcome.EXPIRED
    epoch = int(now.timestamp())
    blocked = blocked_by(deps, stored)
    if blocked is not None:
        # Its target is OPEN: PAUSED instead of attempted (unless a live run holds the lease).
        paused = pause(deps.repository, head, blocked, deps.breaker.policy, lease_free_at=epoch)
        if paused is not None:
            notify_paused(deps, paused, blocked.origin)
            return DispatchOutcome.PAUSED
        return _claim_refused(deps, key, run, epoch) if last_try else None
    if _turn_counted_for_another_copy(deps, queued, head, now):
        return DispatchOutcome.DEFERRED
    inline = deps.settings.first_attempt == FirstAttempt.INLINE
    # A run counted in already (this copy, or another) is not counted in again: its turn has come.
    waited_turn = queued.waited_turn or head.turn_at is not None
    permit: Permit | Wait | None = flow_permit(deps, stored, retry=False, waited_turn=waited_turn) if inline else None
    if isinstance(permit, Wait):
        return _defer(deps, queued, head, permit)
    # The fast-lane run this delivery may start: its name is the claim's fencing token.
    name = execution_name(key, run, "fast", unique=uuid.uuid4().hex[:8])
    claimed = _claim(deps, stored, run, now, name, queue_message_id, sent_at, inline)
    if claimed is None:
        deps.flow.release(permit)
        return _claim_refused(deps, key, run, epoch) if last_try else None
    if not inline:
        return _start_fast_lane(deps, key, run, name)
    try:
        return _attempt_inline(deps, StoredMessage(claimed, stored.content), name)
    finally:
        deps.flow.release(permit)


def _claim(
    deps: DeliveryDependencies,
    stored: StoredMessage,
    run: int,
    now: datetime,
    name: str,
    queue_message_id: str,
    sent_at: datetime | None,
    inline: bool,
) -> MessageHead | None:
    """The claim, in one write: the lease under `name`, ENQUEUED, and (inline) the attempt counted."""
    head, epoch = stored.head, int(now.timestamp())
    enqueued = None
    if head.enqueued_run < run:
        details = {"queueMessageId": queue_message_id} if queue_message_id else {}
        enqueued = Event(EventType.ENQUEUED, min(sent_at or now, now), run, None, details)
    return deps.repository.claim(
        head,
        epoch + deps.settings.fast_lane_lease_seconds,
        epoch,
        enqueued,
        started=attempt_started_event(head, now, Lane.INLINE) if inline else None,
        interrupted=interrupted_event(head, now) if inline else None,
        # Every delivery as a run: the reconciler watches the run from its start.
        due_at=None if inline else epoch + deps.settings.fast_lane_lease_seconds,
        owner=fencing_token(name),
        attempt_lease_until=attempt_lease(deps.settings, stored, epoch) if inline else None,
    )


def _turn_counted_for_another_copy(
    deps: DeliveryDependencies, queued: RunInput, head: MessageHead, now: datetime
) -> bool:
    """A second queue copy of a run whose target counted it in for a turn still ahead (a re-drive's
    copy, sent while the first one waits): back until that turn, as a copy that waited for it. One
    turn per run: a turn counted twice is a token's time that nobody takes. True when sent back."""
    if queued.waited_turn or head.turn_at is None or head.turn_at <= now.timestamp():
        return False
    wait = Wait(head.turn_at - now.timestamp())
    deps.delivery_queue.send_json(replace(queued, waited_turn=True).to_dict(), delay_seconds=wait.whole_seconds)
    return True


def _defer(deps: DeliveryDependencies, queued: RunInput, head: MessageHead, wait: Wait) -> DispatchOutcome:
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
    turn_at = epoch + wait.whole_seconds if wait.counted else None
    if turn_at is not None or head.due_at is None or head.due_at < epoch + wait.whole_seconds + window:
        # Counted in: the turn is kept with the head (the same write), for any other copy of the run.
        deps.repository.hold_while_waiting(head, epoch + wait.whole_seconds + 2 * window, turn_at)
    # Counted in its target's queue now: when it comes back it is not counted in again.
    deps.delivery_queue.send_json(replace(queued, waited_turn=True).to_dict(), delay_seconds=wait.whole_seconds)
    return DispatchOutcome.DEFERRED


def _claim_refused(deps: DeliveryDependencies, key: MessageKey, run: int, now: int) -> DispatchOutcome:
    """Another claim holds the message. When nothing else watches it (an inline attempt has no due
    time), keep the queue message: SQS delivers it again after its visibility timeout, by when a
    claim whose dispatcher died has run out, so the message is never left behind."""
    head = deps.repository.get_head(key)
    if head is None or head.is_terminal or head.run != run or head.due_at is not None:
        return DispatchOutcome.ALREADY_RUNNING
    if head.leased(now) or head.attempt_in_flight(now):
        raise ClaimHeld(f"claimed until {head.lease_until or head.attempt_lease_until}")
    return DispatchOutcome.ALREADY_RUNNING


def _attempt_inline(deps: DeliveryDependencies, stored: StoredMessage, name: str) -> DispatchOutcome:
    """The first attempt in the dispatcher, with the outcome rules of the fast lane's Deliver step:
    2xx is DELIVERED (no run at all), DeliveryRejected is FAILED (as MarkFailed), DeliveryRetryable
    starts the fast-lane run, which continues with the next attempt."""
    key, run = stored.head.key, stored.head.run
    try:
        try:
            send(deps, stored, Lane.INLINE)
        except DeliveryRejected as rejected:
            fail_message(LaneEvent(key, run, reason=str(rejected)[:SNIPPET_CHARS], owner=name), deps)
            return DispatchOutcome.FAILED
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
    return DispatchOutcome.DELIVERED


def _start_fast_lane(
    deps: DeliveryDependencies, key: MessageKey, run: int, name: str, wait_seconds: int | None = None
) -> DispatchOutcome:
    # The inline attempt's Retry-After: waited before the next one.
    payload = RunInput(key, run, wait_seconds or None)
    try:
        deps.workflows.start(deps.settings.fast_lane_arn, name, payload.to_dict())
    except Exception:
        # Give the lease back so the queue's redelivery (or the reconciler) can start it again.
        _release(deps, key, run, name)
        raise
    return DispatchOutcome.STARTED


def _defer_to_slow_lane(
    deps: DeliveryDependencies, key: MessageKey, run: int, wait_seconds: int, owner: str
) -> DispatchOutcome:
    try:
        move_to_slow_lane(LaneEvent(key, run, wait_seconds=wait_seconds, owner=owner), deps)
    except Exception:
        _release(deps, key, run, owner)
        raise
    return DispatchOutcome.DEFERRED


def _release(deps: DeliveryDependencies, key: MessageKey, run: int, owner: str) -> None:
    """Best effort: when the release fails too, the lease simply runs out and the queue redelivers."""
    try:
        deps.repository.release_claim(key, run, (fencing_token(owner),))
    except RelayError:
        logger.exception("Could not release the delivery lease")
