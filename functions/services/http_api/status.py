"""The status view of a message: what `GET /messages/{id}`, listings and `relay status` show."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from functions.domain.callbacks import CALLBACK_FIELDS
from functions.domain.clock import iso, iso_seconds
from functions.domain.model import EMITTED_FIELD, Event, EventType, MessageHead, StoredMessage


def head_summary(head: MessageHead) -> dict[str, Any]:
    """Where a message stands: the fields every answer about it starts with (a duplicate POST too)."""
    return {
        "messageId": head.key.message_id,
        "senderId": head.key.sender_id,
        "status": head.status.value,
        "attempts": head.attempts,
        "acceptedAt": iso(head.accepted_at),
        "updatedAt": iso(head.updated_at),
        "expiresAt": iso(head.expires_at),
        # A delayed message's due time: no attempt before it.
        **(
            {"notBefore": iso_seconds(datetime.fromtimestamp(head.not_before, UTC))}
            if head.not_before is not None
            else {}
        ),
    }


def status_view(stored: StoredMessage, events: Sequence[Event] | None = None) -> dict[str, Any]:
    """The whole view; `events` is the page of the history to show (the head's recent ones if None)."""
    head, content = stored.head, stored.content
    view: dict[str, Any] = {
        **head_summary(head),
        "targetUrl": content.target_url,
        "method": content.method,
        "ttl": head.ttl,
        "run": head.run,
    }
    for name, event_type in (
        ("deliveredAt", EventType.DELIVERED),
        ("failedAt", EventType.FAILED),
        ("cancelledAt", EventType.CANCELLED),
    ):
        if head.status.value == event_type.value and (at := head.finished_at(event_type)) is not None:
            view[name] = iso(at)
    if head.last_error:
        view["lastError"] = head.last_error
    if head.redrives:
        view["redrives"] = head.redrives
    for optional in ("timestamp", "headers", "body", *CALLBACK_FIELDS, EMITTED_FIELD):
        if optional in content.message:
            view[optional] = content.message[optional]
    view["events"] = [event.to_dict() for event in (head.events if events is None else events)]
    return view
