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
    "run",
    "cancelledAt",
    "redrives",
)
_EVENT_HIDDEN = frozenset({"pk", "sk", "ttl", "message", "contentHash"})


def status_view(stored: StoredMessage) -> dict[str, Any]:
    view: dict[str, Any] = {name: stored.head[name] for name in _HEAD_FIELDS if name in stored.head}
    content = stored.content
    for optional in ("timestamp", "headers", "body"):
        if optional in content:
            view[optional] = content[optional]
    # Time order reads naturally; the sort key breaks ties within a millisecond.
    ordered = sorted(stored.events, key=lambda event: (str(event.get("at", "")), str(event["sk"])))
    view["events"] = [{name: value for name, value in event.items() if name not in _EVENT_HIDDEN} for event in ordered]
    return view
