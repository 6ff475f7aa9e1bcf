"""Finding messages: the index queries (keys only) and the senders' activity per minute.

Indexes hold keys only, so every query here gives message keys; the message store reads the heads
(and content) they name. Index entries are written by the head's own writes (functions/adapters/
repository.py); the activity items are the one thing written here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from functions.adapters.messages.items import (
    activity_partition,
    message_key,
    sender_shard_partitions,
    status_partition,
)
from functions.adapters.messages.merge import Listing, NewestFirst
from functions.adapters.messages.table import Table, from_item, to_item
from functions.contract.indexes import DUE_INDEX, SENDER_INDEX, STATUS_INDEX
from functions.contract.key_prefixes import ACTIVITY_PREFIX
from functions.domain.clock import iso
from functions.domain.model import MessageKey, Status, epoch_ms

# Statuses that have an entry in the sparse byStatus index; the others are listed from bySender.
SPARSE_STATUSES = frozenset({Status.FAILED, Status.CANCELLED, Status.PAUSED})


class MessageIndexes:
    """The relay table's indexes over messages (bySender, byStatus, due) and the activity items."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def query_keys(
        self, index: str, condition: str, values: dict[str, Any], page_size: int | None = None
    ) -> Iterator[list[MessageKey]]:
        """The message keys an index query matches, a page at a time (index entries hold keys only)."""
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "IndexName": index,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": to_item(values),
            }
            if page_size is not None:
                kwargs["Limit"] = page_size
            if start:
                kwargs["ExclusiveStartKey"] = start
            response = self.table.call("query", **kwargs)
            yield [message_key(from_item(item)) for item in response.get("Items", [])]
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    def due_pages(self, shard: str, due_before: int, page_size: int = 100) -> Iterator[list[MessageKey]]:
        """The due heads of a shard, earliest due first, a page at a time."""
        condition = "dueShard = :shard AND dueAt <= :now"
        yield from self.query_keys(DUE_INDEX, condition, {":shard": shard, ":now": due_before}, page_size)

    def note_sender_active(self, sender_id: str, at: datetime, ttl: int) -> None:
        """Record that `sender_id` accepted a message in `at`'s minute (a plain put: idempotent)."""
        item = {"pk": activity_partition(at), "sk": sender_id, "ttl": ttl}
        self.table.call("put_item", Item=to_item(item))

    def active_senders(self, since: datetime, until: datetime) -> Iterator[str]:
        """The senders that accepted messages in [since, until] (each once), minute by minute."""
        seen: set[str] = set()
        minute = epoch_ms(since) // 60_000
        while minute <= epoch_ms(until) // 60_000:
            start: dict[str, Any] | None = None
            while True:
                kwargs: dict[str, Any] = {
                    "KeyConditionExpression": "pk = :pk",
                    "ExpressionAttributeValues": to_item({":pk": f"{ACTIVITY_PREFIX}{minute}"}),
                    "ProjectionExpression": "sk",
                }
                if start:
                    kwargs["ExclusiveStartKey"] = start
                response = self.table.call("query", **kwargs)
                for item in map(from_item, response.get("Items", [])):
                    if item["sk"] not in seen:
                        seen.add(item["sk"])
                        yield str(item["sk"])
                start = response.get("LastEvaluatedKey")
                if not start:
                    break
            minute += 1

    def accepted(self, sender_id: str, since: datetime, until: datetime) -> Iterator[MessageKey]:
        """A sender's messages accepted in [since, until] (the bySender index, keys only): each shard
        oldest first, one shard after another."""
        condition = "spk = :pk AND ssk BETWEEN :since AND :until"
        for partition in sender_shard_partitions(sender_id):
            values = {":pk": partition, ":since": iso(since), ":until": f"{iso(until)}~"}
            for page in self.query_keys(SENDER_INDEX, condition, values):
                yield from page

    def newest_first(self, sender_id: str, status: Status | None, cursor: dict[str, Any] | None) -> NewestFirst:
        """A walk over a sender's messages newest first, from `cursor` (None: the newest): those in a
        sparse status from their byStatus partition, every other listing (one status to be filtered,
        or every status) from the sender's bySender shards, merged.
        Raises ValueError for a cursor that does not continue this very listing."""
        if status is not None and status in SPARSE_STATUSES:
            listing = Listing(STATUS_INDEX, "gsi1pk", "gsi1sk", (status_partition(sender_id, status),))
        else:
            shards = tuple(sender_shard_partitions(sender_id))
            listing = Listing(SENDER_INDEX, "spk", "ssk", shards, variant=status.value if status else "")
        return NewestFirst(self.table, listing, cursor)

    def paused_pages(self, sender_id: str, origin: str, page_size: int = 100) -> Iterator[list[MessageKey]]:
        """The keys of a target's PAUSED messages, a page at a time (oldest pause first)."""
        condition = "gsi1pk = :pk AND begins_with(gsi1sk, :origin)"
        values = {":pk": status_partition(sender_id, Status.PAUSED), ":origin": f"{origin}#"}
        yield from self.query_keys(STATUS_INDEX, condition, values, page_size)
