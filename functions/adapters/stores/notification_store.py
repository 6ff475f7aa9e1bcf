"""The data-access layer of a sender's operational notifications: one item per sender.

Layout: `pk = NOTIFY#<senderId>`, `sk = CONFIG`; attributes `url` and `events` (the event type
names). Read on the failure and pause paths only (a delivered message never reads it).
"""

from __future__ import annotations

from functions.adapters.messages.table import Table, from_item, to_item
from functions.contract.key_prefixes import NOTIFICATION_PREFIX
from functions.domain.callbacks import NotificationSettings, NotificationType
from functions.domain.clock import iso, parse_iso

CONFIG_SORT_KEY = "CONFIG"


def _key(sender_id: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"{NOTIFICATION_PREFIX}{sender_id}"}, "sk": {"S": CONFIG_SORT_KEY}}


class NotificationStore:
    def __init__(self, table_name: str) -> None:
        self.table = Table(table_name)

    def get(self, sender_id: str) -> NotificationSettings | None:
        found = self.table.call("get_item", Key=_key(sender_id), ConsistentRead=False).get("Item")
        if not found:
            return None
        item = from_item(found)
        return NotificationSettings(
            sender_id=sender_id,
            url=str(item["url"]),
            events=tuple(NotificationType(name) for name in item.get("events", [])),
            updated_at=parse_iso(str(item["updatedAt"])),
        )

    def put(self, settings: NotificationSettings) -> None:
        values = {
            "url": settings.url,
            "events": [kind.value for kind in settings.events],
            "updatedAt": iso(settings.updated_at),
        }
        self.table.call("put_item", Item={**_key(settings.sender_id), **to_item(values)})

    def delete(self, sender_id: str) -> bool:
        """True when there was a setting to delete."""
        answer = self.table.call("delete_item", Key=_key(sender_id), ReturnValues="ALL_OLD")
        return bool(answer.get("Attributes"))
