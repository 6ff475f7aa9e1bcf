"""Finding messages: the index queries (keys only) and the senders' activity per minute.

The activity items are how the reconciler's sweep finds messages that were stored but never
queued (their ingest died in between) without reading every sender: at most two small writes per
sender, minute and store container name the messages (or mark the sender busy), so the sweep's
reads follow the messages accepted, not the number of senders.

Indexes hold keys only, so every query here gives message keys; the message store reads the heads
(and content) they name. Index entries are written by the head's own writes (functions/adapters/
repository.py); the activity items are the one thing written here.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from functions.adapters.messages.items import (
    activity_minute,
    activity_partition,
    activity_partitions,
    message_key,
    sender_shard_partitions,
    status_partition,
)
from functions.adapters.messages.merge import Listing, NewestFirst
from functions.adapters.messages.table import Table, from_item, is_condition_failure, to_item
from functions.contract.indexes import DUE_INDEX, SENDER_INDEX, STATUS_INDEX
from functions.domain.clock import iso
from functions.domain.model import MessageKey, SenderActivity, Status

# The most message ids one activity item names (a store container names its first message of a
# sender and minute): past it, the sender is marked busy and the sweep reads its acceptance index.
# 8 ids of up to ~100 bytes keep the item within one write unit.
ACTIVITY_NAMED_IDS = 8

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
        for page in self._query_entries(index, condition, values, page_size):
            yield [message_key(entry) for entry in page]

    def _query_entries(
        self, index: str, condition: str, values: dict[str, Any], page_size: int | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """The index entries (table and index keys) a query matches, a page at a time."""
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
            yield [from_item(item) for item in response.get("Items", [])]
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    def due_pages(self, shard: str, due_before: int, page_size: int = 100) -> Iterator[list[MessageKey]]:
        """The due heads of a shard, earliest due first, a page at a time."""
        condition = "dueShard = :shard AND dueAt <= :now"
        yield from self.query_keys(DUE_INDEX, condition, {":shard": shard, ":now": due_before}, page_size)

    def note_activity(self, sender_id: str, message_id: str, at: datetime, ttl: int) -> None:
        """Name `message_id` in the sender's activity item of `at`'s minute: a store container's first
        message of that sender and minute. Past ACTIVITY_NAMED_IDS names the sender is marked busy
        instead. Idempotent (the ids are a set)."""
        try:
            self.table.call(
                "update_item",
                Key=to_item({"pk": activity_partition(sender_id, activity_minute(at)), "sk": sender_id}),
                UpdateExpression="SET #ttl = :ttl ADD #ids :id",
                ConditionExpression="attribute_not_exists(#ids) OR size(#ids) < :cap",
                ExpressionAttributeNames={"#ttl": "ttl", "#ids": "ids"},
                ExpressionAttributeValues=to_item({":ttl": ttl, ":id": {message_id}, ":cap": ACTIVITY_NAMED_IDS}),
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            self.note_busy_sender(sender_id, at, ttl)

    def note_busy_sender(self, sender_id: str, at: datetime, ttl: int) -> None:
        """Mark the sender busy in `at`'s minute: a store container took more of its messages than it
        names, so the sweep reads the sender's acceptance index for that minute. Idempotent."""
        self.table.call(
            "update_item",
            Key=to_item({"pk": activity_partition(sender_id, activity_minute(at)), "sk": sender_id}),
            UpdateExpression="SET #ttl = :ttl, #busy = :busy",
            ExpressionAttributeNames={"#ttl": "ttl", "#busy": "busy"},
            ExpressionAttributeValues=to_item({":ttl": ttl, ":busy": True}),
        )

    def note_due_later(self, key: MessageKey, due: datetime, ttl: int) -> None:
        """Name a message due later (a short delay: the queue holds it) in the activity of its due
        minute, in an item of its own (`<sender>#<id>`; identifiers have no `#`), so the sweep reads
        its head once it should have been claimed. One small write, whatever the sender's traffic
        that minute: no cap to overflow. Idempotent."""
        self.table.call(
            "update_item",
            Key=to_item({"pk": activity_partition(key.sender_id, activity_minute(due)), "sk": _due_later_sort(key)}),
            UpdateExpression="SET #ttl = :ttl",
            ExpressionAttributeNames={"#ttl": "ttl"},
            ExpressionAttributeValues=to_item({":ttl": ttl}),
        )

    def activity(self, minute: int) -> Iterator[SenderActivity]:
        """The senders that accepted messages in `minute` (epoch minutes), shard after shard."""
        for partition in activity_partitions(minute):
            start: dict[str, Any] | None = None
            while True:
                kwargs: dict[str, Any] = {
                    "KeyConditionExpression": "pk = :pk",
                    "ExpressionAttributeValues": to_item({":pk": partition}),
                    "ProjectionExpression": "sk, #ids, #busy",
                    "ExpressionAttributeNames": {"#ids": "ids", "#busy": "busy"},
                }
                if start:
                    kwargs["ExclusiveStartKey"] = start
                response = self.table.call("query", **kwargs)
                for item in map(from_item, response.get("Items", [])):
                    sender_id, _, due_later = str(item["sk"]).partition(DUE_LATER_SEPARATOR)
                    named = frozenset(str(message_id) for message_id in item.get("ids", ()))
                    yield SenderActivity(sender_id, named | {due_later} if due_later else named, bool(item.get("busy")))
                start = response.get("LastEvaluatedKey")
                if not start:
                    break

    def accepted(self, sender_id: str, since: datetime, until: datetime) -> Iterator[MessageKey]:
        """A sender's messages accepted in [since, until] (the bySender index, keys only), oldest
        first: its shards merged as they are read, a page of each at a time, so a reader that stops
        early has read only what it used."""
        shards = [self._accepted_in_shard(partition, since, until) for partition in sender_shard_partitions(sender_id)]
        for _, key in heapq.merge(*shards, key=lambda entry: entry[0]):
            yield key

    def _accepted_in_shard(self, partition: str, since: datetime, until: datetime) -> Iterator[tuple[str, MessageKey]]:
        condition = "spk = :pk AND ssk BETWEEN :since AND :until"
        values = {":pk": partition, ":since": iso(since), ":until": f"{iso(until)}~"}
        for page in self._query_entries(SENDER_INDEX, condition, values):
            for entry in page:
                yield str(entry["ssk"]), message_key(entry)

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


# Between the sender and the message id in a due-later activity item's sort key (identifiers are
# [A-Za-z0-9._:-], so a sender's own item, keyed by the sender alone, never has it).
DUE_LATER_SEPARATOR = "#"


def _due_later_sort(key: MessageKey) -> str:
    return f"{key.sender_id}{DUE_LATER_SEPARATOR}{key.message_id}"
