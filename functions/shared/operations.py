"""Reading and acting on messages (status, list, replay, cancel) and the reconciler, as plain logic.

Every call takes the authenticated sender: message keys are built from it, so another sender's
message id simply does not exist (404, exactly like a missing one).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.shared.clock import iso
from functions.shared.config import Settings
from functions.shared.exceptions import (
    FieldError,
    MessageExpired,
    MessageFinished,
    MessageInvalid,
    MessageNotFinished,
    MessageNotFound,
    RelayError,
)
from functions.shared.metric_names import Metric
from functions.shared.model import DUE_SHARDS, Event, EventType, MessageHead, MessageKey, Status
from functions.shared.observability import logger, metrics
from functions.shared.queue import DeliveryQueue, MessageQueue
from functions.shared.repository import REPLAYABLE_STATUSES, MessageRepository
from functions.shared.runs import message_runs
from functions.shared.status import status_view

if TYPE_CHECKING:
    from functions.shared.target_health import TargetHealth

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 25
# A message the reconciler has re-driven this often without progress is failed for good.
MAX_REDRIVES = 5


# A messageId from a URL that no message can carry (schemas/message.schema.json) names no message;
# it is answered without asking DynamoDB, which refuses keys over 2 KB with an error (a 500).
_MESSAGE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SUMMARY_FIELDS = ("messageId", "status", "attempts", "acceptedAt", "updatedAt", "targetUrl", "method", "lastError")


def _message_key(sender_id: str, message_id: str) -> MessageKey:
    if not _MESSAGE_ID.fullmatch(message_id):
        raise MessageNotFound(f"No message '{message_id[:200]}'.")
    return MessageKey(sender_id, message_id)


def get_status(repository: MessageRepository, sender_id: str, message_id: str) -> dict[str, Any]:
    stored = repository.get_message(_message_key(sender_id, message_id))
    if stored is None:
        raise MessageNotFound(f"No message '{message_id}'.")
    view = status_view(stored)
    view["executions"] = [run.to_dict() for run in message_runs(stored.head.events)]
    return view


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
) -> dict[str, Any]:
    errors: list[FieldError] = []
    if status not in {s.value for s in Status}:
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
    assert status is not None
    # The cursor is opaque to clients but checked: it must continue this very listing.
    start = _decode_cursor(cursor) if cursor else None
    try:
        messages, last = repository.list_by_status(sender_id, Status(status), page_size, start)
    except ValueError:
        raise _invalid_cursor() from None
    items = []
    for message in messages:
        view = status_view(message)
        items.append({name: view[name] for name in _SUMMARY_FIELDS if name in view})
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
) -> dict[str, Any]:
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


def cancel(repository: MessageRepository, sender_id: str, message_id: str) -> dict[str, Any]:
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


def reconcile(
    repository: MessageRepository,
    queue: DeliveryQueue,
    settings: Settings,
    fail: Any,
    now: datetime | None = None,
    dead_letters: MessageQueue | None = None,
    sender_ids: Callable[[], Iterable[str]] | None = None,
) -> dict[str, int]:
    """Re-drive every message that is overdue with no live run; nothing accepted is left behind.

    `fail(event)` ends a message that keeps getting stuck (the delivery fail step, with its
    dead letter). Returns counts for the log.
    """
    now = now or datetime.now(UTC)
    epoch = int(now.timestamp())
    counts = {"due": 0, "redriven": 0, "failed": 0, "finished": 0, "leased": 0}
    if dead_letters is not None:
        counts["rescued"] = rescue_dead_letters(repository, dead_letters, now)
    if sender_ids is not None:
        counts["unclaimed"] = sweep_unclaimed(repository, sender_ids(), settings, now)
    # Targets that closed since the last round: their paused messages go again. (Imported here: the
    # API function, which shares this module, does not load the circuit breaker at cold start.)
    from functions.shared.target_health import count_open_targets, reconcile_paused, resume_closed_targets
    from functions.shared.target_health_store import TargetHealthRepository

    targets = TargetHealthRepository.from_settings(settings)
    counts["resumed"] = resume_closed_targets(repository, targets, queue, settings)
    counts["openTargets"] = count_open_targets(targets)
    seen: dict[tuple[str, str], TargetHealth] = {}
    due_keys = (key for shard in range(DUE_SHARDS) for key in repository.iter_due(f"DUE#{shard}", epoch))
    for key in due_keys:
        counts["due"] += 1
        head = repository.get_head(key)
        if head is None:
            continue
        if head.status == Status.PAUSED:
            outcome = reconcile_paused(repository, targets, queue, settings, fail, head, now, seen)
        else:
            outcome = _reconcile_one(repository, queue, settings, fail, head, now)
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == "redriven":
            metrics.add_metric(name=Metric.REDRIVEN, unit=MetricUnit.Count, value=1)
    return counts


# How far back each round looks for messages never claimed (several rounds, so a missed round or
# two loses nothing; each message's head is read about this many seconds / round interval times).
SWEEP_WINDOW_SECONDS = 180


def sweep_unclaimed(repository: MessageRepository, sender_ids: Iterable[str], settings: Settings, now: datetime) -> int:
    """Mark due every message accepted a while ago that no dispatcher ever claimed.

    A message on the success path has no due time (its queue message guards it). If its ingest run
    died between the store and the enqueue (a crash, a restart), nothing was queued: this sweep of
    the sender/time index finds it once it is `redrive_after_seconds` old, and the due walk below
    (this round or the next) re-drives it. Reads only (keys, then heads eventually consistent).
    """
    until = now - timedelta(seconds=settings.redrive_after_seconds)
    since = until - timedelta(seconds=max(SWEEP_WINDOW_SECONDS, settings.redrive_after_seconds))
    marked = 0
    for sender_id in sender_ids:
        keys = list(repository.iter_accepted(sender_id, since, until))
        for start in range(0, len(keys), 100):
            for head in repository.get_heads(keys[start : start + 100]):
                never_claimed = head.status == Status.PENDING and head.enqueued_run < head.run
                if never_claimed and head.due_at is None and not head.leased(int(now.timestamp())):
                    repository.set_due(head.key, int(now.timestamp()))
                    marked += 1
    return marked


# At most this many dead letters are taken back per round (the rest wait for the next minute).
MAX_RESCUES_PER_ROUND = 100


def rescue_dead_letters(repository: MessageRepository, dead_letters: MessageQueue, now: datetime) -> int:
    """Take back queue messages the dispatcher failed on too often: mark each message due now, so
    this round's (or the next) re-drive counts it and ends it FAILED if it never gets through.

    A message delivered at its first attempt has no due time (its queue message guards it until the
    claim): without this, a message whose dispatches all failed would wait in the dead-letter queue.
    """
    rescued = 0
    while rescued < MAX_RESCUES_PER_ROUND:
        received = dead_letters.receive_json()
        if not received:
            break
        for receipt, payload in received:
            if isinstance(payload.get("senderId"), str) and isinstance(payload.get("messageId"), str):
                key = MessageKey(payload["senderId"], payload["messageId"])
                head = repository.get_head(key)
                if head is not None and not head.is_terminal:
                    repository.set_due(key, int(now.timestamp()))
            dead_letters.delete(receipt)
            rescued += 1
    return rescued


def _reconcile_one(
    repository: MessageRepository, queue: DeliveryQueue, settings: Settings, fail: Any, head: MessageHead, now: datetime
) -> str:
    epoch = int(now.timestamp())
    if head.is_terminal:
        repository.clear_due(head.key)
        return "finished"
    if head.leased(epoch):
        assert head.lease_until is not None
        repository.set_due(head.key, head.lease_until)  # a run holds it: look again when its lease ends
        return "leased"
    if head.redrives >= MAX_REDRIVES:
        fail({**head.key.to_dict(), "run": head.run, "reason": f"re-driven {MAX_REDRIVES} times without progress"})
        return "failed"
    redriven = Event(EventType.REDRIVEN, now, head.run, head.attempts, {"previousStatus": head.status.value})
    if repository.note_redrive(head, redriven, epoch + settings.redrive_after_seconds, epoch) is None:
        return "moved-on"
    try:
        queue.send(head.key, run=head.run)
    except RelayError:
        logger.exception("Re-drive could not enqueue; next round tries again")
        return "enqueue-failed"
    return "redriven"
