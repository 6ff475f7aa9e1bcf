"""How a lane run ends when it does not deliver: the message FAILED (MarkFailed), handed to the slow
lane (MoveToSlowLane), or given back to the reconciler (GiveBack)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from aws_lambda_powertools.metrics import MetricUnit

from functions.adapters.observability import logger, metrics
from functions.adapters.workflows import execution_name, standard_execution_arn
from functions.contract.metric_names import Metric
from functions.domain.clock import iso
from functions.domain.exceptions import DeliveryDeferred, RelayError
from functions.domain.model import Event, EventType, MessageKey, Status, StoredMessage, fencing_token
from functions.services.delivery.dependencies import DeliveryDependencies
from functions.services.delivery.payloads import (
    NO_FAILURE,
    SKIPPED,
    EndingOutcome,
    EndingResult,
    FailedLetter,
    LaneEvent,
    RunInput,
)
from functions.services.delivery.rules import SNIPPET_CHARS, interrupted_event
from functions.services.reporting.outcomes import report_outcome


def failure_reason(event: LaneEvent) -> str:
    """A readable reason from a Catch's `{Error, Cause}` (Cause is Lambda's error JSON)."""
    if event.reason:
        return event.reason
    if event.wait_seconds is not None and event.failure is None:
        return f"the target's Retry-After asks to wait {event.wait_seconds} s"
    failure = event.failure or NO_FAILURE
    error, message = failure.error, failure.message
    if error == "DeliveryRetryable":
        return f"retries exhausted; last error: {message}"[:SNIPPET_CHARS]
    if error == "DeliveryRejected":
        return message[:SNIPPET_CHARS]
    if error == "DeliveryDeferred":
        return f"the target's Retry-After asks to wait {message} s"
    return f"{error}: {message}"[:SNIPPET_CHARS] if message else error


def finish_run(event: LaneEvent, deps: DeliveryDependencies) -> EndingResult:
    """A lane's ending step: MarkFailed (the message FAILED) or GiveBack (`giveUp`: the run gave up)."""
    return give_up_run(event, deps) if event.give_up else fail_message(event, deps)


def give_up_run(event: LaneEvent, deps: DeliveryDependencies) -> EndingResult:
    """A lane run that gives up (an internal error outlasted its retries, a hand-off that failed)
    releases its lease and makes the message due now: the reconciler re-drives it within one round
    instead of when the run's long lease would have ended. Only the run that owns it can."""
    if report_if_finished(deps, event.key, event.run):
        return SKIPPED
    deps.repository.release_claim(event.key, event.run, event.tokens, due_at=int(time.time()))
    return EndingResult(EndingOutcome.RELEASED)


def report_if_finished(deps: DeliveryDependencies, key: MessageKey, run: int) -> bool:
    """A run whose message this run finished, ending here because a step failed after the outcome was
    written (its callback's emit, say), reports the outcome again (the ids dedupe; outcomes.py).
    True when the message had finished in this run."""
    stored = deps.repository.get_message(key)
    if stored is None or not stored.head.is_terminal or stored.head.run != run:
        return False
    report_outcome(deps.reporter, stored)
    return True


def fail_message(event: LaneEvent, deps: DeliveryDependencies) -> EndingResult:
    """Mark a run's message FAILED with its reason and event (one write), and dead-letter it."""
    key, run = event.key, event.run
    reason = failure_reason(event)
    head = deps.repository.get_head(key)
    if head is None or head.run != run:
        return SKIPPED
    if not head.is_terminal:
        now = datetime.now(UTC)
        events = [e for e in (interrupted_event(head, now),) if e is not None]
        events.append(Event(EventType.FAILED, now, run, head.attempts, {"reason": reason}))
        updated = deps.repository.finish_failed(head, reason, events, event.tokens)
        head = updated or deps.repository.get_head(key) or head
    if head.status != Status.FAILED or head.run != run:
        return SKIPPED
    content = deps.repository.get_contents([key]).get(key)
    if content is not None:
        # After FAILED is written, by every try of this step (functions/services/reporting/outcomes.py).
        report_outcome(deps.reporter, StoredMessage(head, content))
    # A retried step finds FAILED already: it keeps the first reason and sends the dead letter again
    # (the failed-messages queue is at-least-once like every queue; consumers dedupe by message id).
    reason = head.last_error or reason
    failed_at = head.finished_at(EventType.FAILED) or head.updated_at
    deps.failed_queue.send_json(FailedLetter(key, run, reason, head.attempts, iso(failed_at)).to_dict())
    metrics.add_metric(name=Metric.FAILED, unit=MetricUnit.Count, value=1)
    return EndingResult(EndingOutcome.FAILED, reason=reason)


def move_to_slow_lane(event: LaneEvent, deps: DeliveryDependencies) -> EndingResult:
    """Hand a message that exhausted the fast lane to the STANDARD slow lane (idempotent by name).

    A deferred attempt (the target's Retry-After is longer than the fast lane would wait: `waitSeconds`,
    or the fast lane's DeliveryDeferred) starts the slow lane with that wait instead of its first one."""
    key, run = event.key, event.run
    head = deps.repository.get_head(key)
    if head is None or head.is_terminal or head.run != run:
        if head is not None and head.is_terminal and head.run == run:
            report_if_finished(deps, key, run)
        return SKIPPED
    # One slow-lane run per fast-lane run: a retried hand-off reads the same attempts count (the same
    # name, so the start is idempotent), while a message re-driven after its slow-lane run died gets a
    # new one.
    name = execution_name(key, run, "slow", unique=f"a{head.attempts}")
    now = datetime.now(UTC)
    execution_arn = standard_execution_arn(deps.settings.slow_lane_arn, name)
    details = {"executionArn": execution_arn, "reason": failure_reason(event)}
    moved = Event(EventType.MOVED_TO_SLOW_LANE, now, run, head.attempts, details)
    # Lease, ownership, due time and event first (a retried step finds them and only starts the run).
    lease_until = int(now.timestamp()) + deps.settings.slow_lane_lease_seconds
    handed = fencing_token(name)
    if deps.repository.hand_to_slow_lane(head, lease_until, name, moved, event.tokens, handed) is None:
        current = deps.repository.get_head(key)
        if current is None or current.owner != handed:
            return SKIPPED  # another run (or the reconciler) owns the message now
    payload = RunInput(key, run, deferral_seconds(event))
    try:
        deps.workflows.start(deps.settings.slow_lane_arn, name, payload.to_dict())
    except Exception:
        # No slow-lane run holds the lease just handed to it: give it back and make the message due
        # now (a retried hand-off finds itself the owner and starts the run again).
        try:
            deps.repository.release_claim(key, run, (handed,), due_at=int(time.time()))
        except RelayError:
            logger.exception("Could not give back the slow lane's lease")
        raise
    return EndingResult(EndingOutcome.MOVED_TO_SLOW_LANE, execution_arn=execution_arn)


def deferral_seconds(event: LaneEvent) -> int | None:
    """The wait a deferred hand-off asks for: `waitSeconds`, or the fast lane's caught DeliveryDeferred."""
    if event.wait_seconds is not None:
        return event.wait_seconds
    if event.failure is None or event.failure.error != DeliveryDeferred.__name__:
        return None
    try:
        return max(0, int(event.failure.message))
    except ValueError:
        return None
