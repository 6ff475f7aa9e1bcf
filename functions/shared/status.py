"""The status view of a message: what `GET /messages/{id}` and `relay status` show."""

from __future__ import annotations

from typing import Any

from functions.shared.repository import StoredMessage

_HEAD_FIELDS = (
    "messageId",
    "senderId",
    "status",
    "attempts",
    "acceptedAt",
    "updatedAt",
    "expiresAt",
    "deliveredAt",
    "failedAt",
    "lastError",
    "targetUrl",
    "method",
    "ttl",
    "executions",
)
_EVENT_HIDDEN = frozenset({"pk", "sk", "ttl", "message", "contentHash"})


def status_view(stored: StoredMessage) -> dict[str, Any]:
    view: dict[str, Any] = {name: stored.head[name] for name in _HEAD_FIELDS if name in stored.head}
    content = stored.content
    for optional in ("timestamp", "headers", "body"):
        if optional in content:
            view[optional] = content[optional]
    view["events"] = [
        {name: value for name, value in event.items() if name not in _EVENT_HIDDEN} for event in stored.events
    ]
    return view
