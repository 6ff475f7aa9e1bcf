"""Reading and acting on messages (status, list, replay, cancel), as plain logic (the reconciler is
functions/services/reconciler.py).

Every call takes the authenticated sender: message keys are built from it, so another sender's
message id simply does not exist (404, exactly like a missing one).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Any, TypedDict

from aws_lambda_powertools.metrics import MetricUnit

from functions.adapters.messages.store import REPLAYABLE_STATUSES
from functions.adapters.observability import logger, metrics
from functions.adapters.queue import DeliveryQueue
from functions.adapters.repository import MessageRepository
from functions.contract.metric_names import Metric
from functions.domain.clock import iso
from functions.domain.config import Settings
from functions.domain.exceptions import (
    FieldError,
    MessageExpired,
    MessageFinished,
    MessageInvalid,
    MessageNotFinished,
    MessageNotFound,
    RelayError,
)
from functions.domain.model import Event, EventType, MessageKey, Status
from functions.services.http_api.status import ListedMessage, listed_message, status_view
from functions.services.runs import message_runs

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 25


# A messageId from a URL that no message can carry (schemas/message.schema.json) names no message;
# it is answered without asking DynamoDB, which refuses keys over 2 KB with an error (a 500).
_MESSAGE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class MessagePage(TypedDict):
    """GET /messages: a page of the sender's messages, and where the next one starts."""

    items: list[ListedMessage]
    nextCursor: str | None


class ReplayStarted(TypedDict):
    """POST /messages/{id}/replay: the new run, started."""

    messageId: str
    senderId: str
    status: str
    run: int


class Cancelled(TypedDict):
    """POST /messages/{id}/cancel."""

    messageId: str
    senderId: str
    status: str


def _message_key(sender_id: str, message_id: str) -> MessageKey:
    if not _MESSAGE_ID.fullmatch(message_id):
        raise MessageNotFound(f"No message '{message_id[:200]}'.")
    return MessageKey(sender_id, message_id)


def get_status(
    repository: MessageRepository, sender_id: str, message_id: str, events_cursor: str | None = None
) -> dict[str, Any]:
    """The message's status and a page of its history, oldest first: the newest page (ending with the
    latest event) unless `events_cursor` asks for the one before an earlier page."""
    before = _decode_events_cursor(events_cursor) if events_cursor is not None else None
    stored = repository.get_message(_message_key(sender_id, message_id))
    if stored is None:
        raise MessageNotFound(f"No message '{message_id}'.")
    events, earlier = stored.head.events, None
    if stored.head.overflow_chunks or before is not None:
        events, earlier = repository.get_history(stored.head, before)
    view = status_view(stored, events)
    view["executions"] = [run.to_dict() for run in message_runs(events)]
    if earlier is not None:
        view["eventsCursor"] = str(earlier)
    return view


def _decode_events_cursor(cursor: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", cursor):
        raise MessageInvalid(
            [FieldError("$.eventsCursor", "is not a cursor of this message's history")], "The query is invalid."
        )
    return int(cursor)


def _invalid_cursor() -> MessageInvalid:
    return MessageInvalid([FieldError("$.cursor", "is not a cursor of this listing")], "The query is invalid.")


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        start = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise _invalid_cursor() from None
    if not isinstance(start, dict):
        raise _invalid_cursor()
    return start


def _encode_cursor(start: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(start, separators=(",", ":")).encode()).decode().rstrip("=")


def list_messages(
    repository: MessageRepository, sender_id: str, status: str | None, limit: str | None, cursor: str | None
) -> MessagePage:
    """A page of the sender's messages, newest first: in `status`, or in every status without one."""
    errors: list[FieldError] = []
    if status is not None and status not in {s.value for s in Status}:
        errors.append(FieldError("$.status", f"must be one of {', '.join(s.value for s in Status)}"))
    page_size = DEFAULT_PAGE_SIZE
    if limit is not None:
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
        if not re.fullmatch(r"[0-9]{1,6}", limit) or not 1 <= int(limit) <= MAX_PAGE_SIZE:
            errors.append(FieldError("$.limit", f"must be a whole number from 1 to {MAX_PAGE_SIZE}"))
        else:
            page_size = int(limit)
    if errors:
        raise MessageInvalid(errors, "The query is invalid.")
    # The cursor is opaque to clients but checked: it must continue this very listing.
    start = _decode_cursor(cursor) if cursor else None
    try:
        messages, last = repository.list_by_status(sender_id, Status(status) if status else None, page_size, start)
    except ValueError:
        raise _invalid_cursor() from None
    items = [listed_message(message) for message in messages]
    return {"items": items, "nextCursor": _encode_cursor(last) if last else None}


def replay(
    repository: MessageRepository,
    queue: DeliveryQueue,
    settings: Settings,
    sender_id: str,
    message_id: str,
    statuses: frozenset[Status] = REPLAYABLE_STATUSES,
    job_id: str | None = None,
    expected_sort: str | None = None,
) -> ReplayStarted:
    """Start a new run of a finished message in one of `statuses` (a bulk replay: its job's status,
    and `expected_sort`, the status index sort key of the failure the job matched)."""
    key = _message_key(sender_id, message_id)
    head = repository.get_head(key)
    if head is None:
        raise MessageNotFound(f"No message '{message_id}'.")
    now = datetime.now(UTC)
    if head.is_expired(now):
        raise MessageExpired(f"Message '{message_id}' expired at {iso(head.expires_at)}.")
    details = {"previousStatus": head.status.value, **({"jobId": job_id} if job_id else {})}
    replayed = Event(EventType.REPLAYED, now, head.run + 1, head.attempts, details)
    due_at = int(now.timestamp()) + settings.redrive_after_seconds
    updated = repository.start_replay(head, replayed, due_at, statuses, expected_sort)
    if updated is None and expected_sort is not None and head.status in statuses:
        raise MessageNotFinished(f"Message '{message_id}' is no longer in the {head.status.value} the job matched.")
    if updated is None:
        allowed = " or ".join(status.value for status in sorted(statuses))
        raise MessageNotFinished(f"Message '{message_id}' is {head.status.value}; only {allowed} can be replayed.")
    try:
        # ENQUEUED is recorded by the dispatcher's claim; until then the due time stands guard.
        queue.send(key, run=updated.run)
    except RelayError:
        logger.exception("Replay could not enqueue; the reconciler will re-drive it")
    metrics.add_metric(name=Metric.REPLAYED, unit=MetricUnit.Count, value=1)
    return {"messageId": message_id, "senderId": sender_id, "status": updated.status.value, "run": updated.run}


def cancel(repository: MessageRepository, sender_id: str, message_id: str) -> Cancelled:
    key = _message_key(sender_id, message_id)
    head = repository.get_head(key)
    if head is None:
        raise MessageNotFound(f"No message '{message_id}'.")
    updated = None
    while updated is None and not head.is_terminal:
        cancelled = Event(EventType.CANCELLED, datetime.now(UTC), head.run, head.attempts)
        updated = repository.cancel(head, cancelled)
        if updated is None:  # it moved on meanwhile (an attempt, a result): read it again
            head = repository.get_head(key) or head
    if updated is None:
        raise MessageFinished(f"Message '{message_id}' is {head.status.value} and cannot be cancelled.")
    metrics.add_metric(name=Metric.CANCELLED, unit=MetricUnit.Count, value=1)
    return {"messageId": message_id, "senderId": sender_id, "status": updated.status.value}
