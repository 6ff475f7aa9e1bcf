"""Reading and acting on messages (status, list, replay, cancel) and the reconciler, as plain logic.

Every call takes the authenticated sender: message keys are built from it, so another sender's
message id simply does not exist (404, exactly like a missing one).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.shared.clock import iso, parse_iso
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
from functions.shared.model import DUE_SHARDS, TERMINAL_STATUSES, EventType, MessageKey, Status, status_index_key
from functions.shared.observability import logger, metrics
from functions.shared.queue import DeliveryQueue
from functions.shared.repository import MessageRepository
from functions.shared.runs import message_runs
from functions.shared.status import status_view

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 25
# A message the reconciler has re-driven this often without progress is failed for good.
MAX_REDRIVES = 5


# A messageId from a URL that no message can carry (schemas/message.schema.json) names no message;
# it is answered without asking DynamoDB, which refuses keys over 2 KB with an error (a 500).
_MESSAGE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CURSOR_KEYS = frozenset({"pk", "sk", "gsi1pk", "gsi1sk"})


def _message_key(sender_id: str, message_id: str) -> MessageKey:
    if not _MESSAGE_ID.fullmatch(message_id):
        raise MessageNotFound(f"No message '{message_id[:200]}'.")
    return MessageKey(sender_id, message_id)


def get_status(repository: MessageRepository, sender_id: str, message_id: str) -> dict[str, Any]:
    stored = repository.get_message(_message_key(sender_id, message_id))
    if stored is None:
        raise MessageNotFound(f"No message '{message_id}'.")
    view = status_view(stored)
    view["executions"] = [run.to_dict() for run in message_runs(stored.events)]
    return view


def _decode_cursor(cursor: str, sender_id: str, status: str) -> dict[str, Any]:
    try:
        start = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        start = None
    # The cursor is opaque to clients but checked here: it must continue this very listing.
    if (
        not isinstance(start, dict)
        or set(start) != _CURSOR_KEYS
        or not all(isinstance(value, str) for value in start.values())
        or start.get("gsi1pk") != status_index_key(sender_id, status)
    ):
        raise MessageInvalid([FieldError("$.cursor", "is not a cursor of this listing")], "The query is invalid.")
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
    start = _decode_cursor(cursor, sender_id, status) if cursor else None
    items, last = repository.list_by_status(sender_id, status, page_size, start)
    fields = ("messageId", "status", "attempts", "acceptedAt", "updatedAt", "targetUrl", "method", "lastError")
    return {
        "items": [{name: item[name] for name in fields if name in item} for item in items],
        "nextCursor": _encode_cursor(last) if last else None,
    }


def replay(
    repository: MessageRepository, queue: DeliveryQueue, settings: Settings, sender_id: str, message_id: str
) -> dict[str, Any]:
    key = _message_key(sender_id, message_id)
    head = repository.get_head(key)
    if head is None:
        raise MessageNotFound(f"No message '{message_id}'.")
    now = datetime.now(UTC)
    if parse_iso(head["expiresAt"]) <= now:
        raise MessageExpired(f"Message '{message_id}' expired at {head['expiresAt']}.")
    updated = repository.start_replay(key, iso(now), int(now.timestamp()) + settings.redrive_after_seconds)
    if updated is None:
        raise MessageNotFinished(
            f"Message '{message_id}' is {head['status']}; only DELIVERED or FAILED can be replayed."
        )
    run = int(updated["run"])
    repository.append_event(
        key,
        EventType.REPLAYED,
        iso(now),
        int(updated["ttl"]),
        run=run,
        slot=int(updated.get("attempts", 0)),
        previousStatus=head["status"],
    )
    try:
        queue.send(key, run=run)
        repository.append_event(
            key, EventType.ENQUEUED, iso(now), int(updated["ttl"]), run=run, slot=int(updated.get("attempts", 0))
        )
    except RelayError:
        # Stored as PENDING with a due time: the reconciler re-drives it.
        logger.exception("Replay could not enqueue; the reconciler will re-drive it")
    metrics.add_metric(name=Metric.REPLAYED, unit=MetricUnit.Count, value=1)
    return {"messageId": message_id, "senderId": sender_id, "status": updated["status"], "run": run}


def cancel(repository: MessageRepository, sender_id: str, message_id: str) -> dict[str, Any]:
    key = _message_key(sender_id, message_id)
    now = datetime.now(UTC)
    updated = repository.cancel(key, iso(now))
    if updated is None:
        head = repository.get_head(key)
        if head is None:
            raise MessageNotFound(f"No message '{message_id}'.")
        raise MessageFinished(f"Message '{message_id}' is {head['status']} and cannot be cancelled.")
    repository.append_event(
        key,
        EventType.CANCELLED,
        iso(now),
        int(updated["ttl"]),
        run=int(updated.get("run", 0)),
        slot=int(updated.get("attempts", 0)),
    )
    metrics.add_metric(name=Metric.CANCELLED, unit=MetricUnit.Count, value=1)
    return {"messageId": message_id, "senderId": sender_id, "status": updated["status"]}


def reconcile(
    repository: MessageRepository,
    queue: DeliveryQueue,
    settings: Settings,
    fail: Any,
    now: datetime | None = None,
) -> dict[str, int]:
    """Re-drive every message that is overdue with no live run; nothing accepted is left behind.

    `fail(event)` ends a message that keeps getting stuck (the delivery fail step, with its
    dead letter). Returns counts for the log.
    """
    now = now or datetime.now(UTC)
    epoch = int(now.timestamp())
    counts = {"due": 0, "redriven": 0, "failed": 0, "finished": 0, "leased": 0}
    due_keys = (key for shard in range(DUE_SHARDS) for key in repository.iter_due(f"DUE#{shard}", epoch))
    for key in due_keys:
        counts["due"] += 1
        head = repository.get_head(key)
        if head is None:
            continue
        if head["status"] in TERMINAL_STATUSES:
            repository.clear_due(key)
            counts["finished"] += 1
            continue
        lease_until = int(head.get("leaseUntil", 0))
        if lease_until > epoch:
            repository.set_due(key, lease_until)  # a run holds it: look again when its lease ends
            counts["leased"] += 1
            continue
        run = int(head.get("run", 0))
        if int(head.get("redrives", 0)) >= MAX_REDRIVES:
            fail({**key.to_dict(), "run": run, "reason": f"re-driven {MAX_REDRIVES} times without progress"})
            counts["failed"] += 1
            continue
        updated = repository.note_redrive(key, run, epoch + settings.redrive_after_seconds, epoch)
        if updated is None:
            continue
        repository.append_event(
            key,
            EventType.REDRIVEN,
            iso(now),
            int(head["ttl"]),
            run=run,
            slot=int(head.get("attempts", 0)),
            suffix=str(int(updated.get("redrives", 1))),
            previousStatus=head["status"],
        )
        try:
            queue.send(key, run=run)
        except RelayError:
            logger.exception("Re-drive could not enqueue; next round tries again")
            continue
        counts["redriven"] += 1
        metrics.add_metric(name=Metric.REDRIVEN, unit=MetricUnit.Count, value=1)
    return counts
