"""The status view of a message: what `GET /messages/{id}`, listings and `relay status` show."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NotRequired, Required, TypedDict

from functions.domain.callbacks import CALLBACK_FIELDS
from functions.domain.clock import iso, iso_seconds
from functions.domain.model import EMITTED_FIELD, Event, EventType, MessageHead, StoredMessage


class MessageSummary(TypedDict):
    """Where a message stands: the fields every answer about it starts with (a duplicate POST too)."""

    messageId: str
    senderId: str
    status: str
    attempts: int
    acceptedAt: str
    updatedAt: str
    expiresAt: str
    notBefore: NotRequired[str]  # a delayed message's due time: no attempt before it


class ListedMessage(TypedDict, total=False):
    """One message of a listing (GET /messages), its fields in the order the API has always given
    them: a TypedDict literal holds the keys it requires first, so the keys from the first optional
    one on are written one by one and declared optional (only notBefore and lastError ever are)."""

    messageId: Required[str]
    status: Required[str]
    attempts: Required[int]
    acceptedAt: Required[str]
    updatedAt: Required[str]
    notBefore: str
    targetUrl: str
    method: str
    lastError: str


def _not_before(head: MessageHead) -> str | None:
    return iso_seconds(datetime.fromtimestamp(head.not_before, UTC)) if head.not_before is not None else None


def head_summary(head: MessageHead) -> MessageSummary:
    summary: MessageSummary = {
        "messageId": head.key.message_id,
        "senderId": head.key.sender_id,
        "status": head.status.value,
        "attempts": head.attempts,
        "acceptedAt": iso(head.accepted_at),
        "updatedAt": iso(head.updated_at),
        "expiresAt": iso(head.expires_at),
    }
    if (not_before := _not_before(head)) is not None:
        summary["notBefore"] = not_before
    return summary


def listed_message(stored: StoredMessage) -> ListedMessage:
    """What a listing shows of a message: its status view's summary fields."""
    head, content = stored.head, stored.content
    listed: ListedMessage = {
        "messageId": head.key.message_id,
        "status": head.status.value,
        "attempts": head.attempts,
        "acceptedAt": iso(head.accepted_at),
        "updatedAt": iso(head.updated_at),
    }
    if (not_before := _not_before(head)) is not None:
        listed["notBefore"] = not_before
    listed["targetUrl"] = content.target_url
    listed["method"] = content.method
    if head.last_error:
        listed["lastError"] = head.last_error
    return listed


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
