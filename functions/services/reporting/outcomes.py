"""What a finished message (and a target's circuit) tells the sender: outcome callbacks and
operational notifications, each sent as a Relay message of its own (functions/services/reporting/emit.py).

When, relative to the write it reports: AFTER it, from the step that wrote it, and again from
every path that finds the outcome already written by the same run: a retried Deliver or MarkFailed
step, the queue's redelivery to the dispatcher, and a lane's MoveToSlowLane or GiveBack reached
because a step failed after the write (lane_endings.report_if_finished). The emit's id is derived from the message, its
run and the outcome (a notification's from the event), so however often those paths run, one
callback and one notification is stored, and a failed emit raises so that the step runs again.
Nothing is sent before the outcome is recorded (no callback for an outcome that did not happen),
and nothing is lost once it is (the step that recorded it keeps being retried until it emits).

The success path pays nothing: a delivered message without `callbackUrl` makes no call here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from functions.adapters.event_bus import EventBus
from functions.adapters.queue import DeliveryQueue
from functions.adapters.repository import MessageRepository
from functions.adapters.stores.notification_store import NotificationStore
from functions.domain.callbacks import (
    NotificationType,
    Outcome,
    OutcomeReport,
    callback_id,
    notification_body,
    notification_id,
)
from functions.domain.config import Settings
from functions.domain.model import EventType, MessageHead, Status, StoredMessage
from functions.services.reporting.emit import Emission, emit


@dataclass
class Reporter:
    """The clients reporting needs; built by the delivery dependencies (and the API's)."""

    settings: Settings
    repository: MessageRepository
    queue: DeliveryQueue

    def notifications(self) -> NotificationStore:
        return NotificationStore(self.settings.table_name)

    def emit(self, emission: Emission) -> None:
        emit(emission, self.repository, self.queue, self.settings)


def _report(stored: StoredMessage, status_code: int | None, snippet: str | None) -> OutcomeReport | None:
    head = stored.head
    if head.status is Status.DELIVERED:
        delivered = head.last_event(EventType.DELIVERED)
        code = (
            status_code if status_code is not None else _int(delivered.details.get("statusCode") if delivered else None)
        )
        finished = delivered.at if delivered else head.updated_at
        return OutcomeReport(
            head.key.message_id, Outcome.DELIVERED, head.attempts, head.accepted_at, finished, code, snippet
        )
    if head.status is Status.FAILED:
        last = head.last_event(EventType.ATTEMPT_FAILED)
        details = last.details if last else {}
        finished = head.finished_at(EventType.FAILED) or head.updated_at
        return OutcomeReport(
            head.key.message_id,
            Outcome.FAILED,
            head.attempts,
            head.accepted_at,
            finished,
            _int(details.get("statusCode")),
            str(details["responseSnippet"]) if details.get("responseSnippet") else None,
            head.last_error,
        )
    return None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def report_outcome(
    reporter: Reporter, stored: StoredMessage, status_code: int | None = None, snippet: str | None = None
) -> None:
    """The callback a finished message asks for, and the sender's `message.failed` notification.

    `stored.head` is the head as written (DELIVERED or FAILED); the live answer's code and snippet
    when the caller has them (the head keeps the failed attempts' snippets, not the delivered one's).
    Raises when an emit fails: the caller's step is retried and reports again (the ids dedupe)."""
    report = _report(stored, status_code, snippet)
    if report is None or stored.content.emitted:
        return
    head = stored.head
    url = stored.content.callback_url if report.status is Outcome.DELIVERED else stored.content.failure_callback_url
    if url:
        message_id = callback_id(head.key.message_id, head.run, report.status)
        reporter.emit(Emission(head.key.sender_id, message_id, url, report.to_body()))
    if report.status is Outcome.FAILED:
        data = {"messageId": head.key.message_id, **report.to_body(), "targetUrl": stored.content.target_url}
        notify(
            reporter,
            head.key.sender_id,
            NotificationType.MESSAGE_FAILED,
            (head.key.message_id, str(head.run)),
            data,
            report.finished_at,
        )


def report_paused(reporter: Reporter, head: MessageHead, origin: str) -> None:
    """`message.paused`: a message waits for its target's circuit to close."""
    data = {"messageId": head.key.message_id, "target": origin, "attempts": head.attempts}
    notify(
        reporter,
        head.key.sender_id,
        NotificationType.MESSAGE_PAUSED,
        (head.key.message_id, str(head.run), str(head.attempts)),
        data,
    )


def report_target(reporter: Reporter, sender_id: str, origin: str, opened: bool, since: int | None) -> None:
    """`target.opened` / `target.closed`: once per transition (the opening time names it)."""
    kind = NotificationType.TARGET_OPENED if opened else NotificationType.TARGET_CLOSED
    notify(reporter, sender_id, kind, (origin, str(since or 0)), {"target": origin})


def notify(
    reporter: Reporter,
    sender_id: str,
    kind: NotificationType,
    occurrence: tuple[str, ...],
    data: dict[str, Any],
    occurred_at: datetime | None = None,
) -> None:
    """One event to the sender's notification URL (when it subscribed) and to the event bus."""
    occurred_at = occurred_at or datetime.now(UTC)
    body = notification_body(kind, occurred_at, data)
    subscription = reporter.notifications().get(sender_id)
    if subscription is not None and subscription.wants(kind):
        reporter.emit(Emission(sender_id, notification_id(kind, *occurrence), subscription.url, body))
    if reporter.settings.event_bus_name:
        EventBus(reporter.settings.event_bus_name).put(kind.value, {"senderId": sender_id, **body})
