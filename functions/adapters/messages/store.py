"""The message store's reads: a message's head, content and history, the due index, a sender's
activity and listings (functions/adapters/repository.py adds every conditional write on top).

Split from the repository so each module reads as one idea: what Relay can look up about a
message here, how it changes a message there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from functions.adapters.messages.history import HISTORY_PAGE_EVENTS, MessageHistory
from functions.adapters.messages.items import (
    CONTENT_SORT_KEY,
    HEAD_SORT_KEY,
    decode_content,
    head_from_item,
)
from functions.adapters.messages.listing import MessageIndexes
from functions.adapters.messages.table import Table, from_item, to_item
from functions.adapters.messages.updates import UpdateBuilder
from functions.domain.model import (
    Event,
    MessageContent,
    MessageHead,
    MessageKey,
    SenderActivity,
    Status,
    StoredMessage,
)

# Heads one listing page may read (in batches of at most LISTING_READ_BATCH) before it answers
# with what it found: a page of a rare status among many messages stops there, with a cursor.
LISTING_READ_BUDGET = 500
LISTING_READ_BATCH = 100
# What a replay may start again: every finished message (a bulk replay narrows it to one status).
REPLAYABLE_STATUSES = frozenset({Status.DELIVERED, Status.FAILED, Status.CANCELLED})


class MessageStore:
    """Every read of a message's items, and the one conditional update all writes go through."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name
        self.table = Table(table_name)
        self.history = MessageHistory(self.table)
        self.indexes = MessageIndexes(self.table)

    @staticmethod
    def _key(key: MessageKey, sort_key: str = HEAD_SORT_KEY) -> dict[str, Any]:
        return to_item({"pk": key.partition_key, "sk": sort_key})

    def _apply(self, key: MessageKey, update: UpdateBuilder) -> MessageHead | None:
        """Run one conditional update of the head; the new head, or None when a condition fails."""
        item = self.table.update(self._key(key), update)
        if item is None:
            return None
        self.history.keep_head_small(key, item)
        return head_from_item(item)

    # -- reads ---------------------------------------------------------------------------------

    def get_head(self, key: MessageKey, consistent: bool = True) -> MessageHead | None:
        response = self.table.call("get_item", Key=self._key(key), ConsistentRead=consistent)
        item = response.get("Item")
        return head_from_item(from_item(item)) if item else None

    def get_message(self, key: MessageKey, consistent: bool = True) -> StoredMessage | None:
        """The head and the content, in one batch read."""
        found = self.table.batch_get([self._key(key), self._key(key, CONTENT_SORT_KEY)], consistent=consistent)
        head = next((item for item in found if item["sk"] == HEAD_SORT_KEY), None)
        content = next((item for item in found if item["sk"] == CONTENT_SORT_KEY), None)
        if head is None or content is None:
            return None
        return StoredMessage(head_from_item(head), decode_content(content))

    def get_heads(self, keys: Sequence[MessageKey]) -> list[MessageHead]:
        """Heads by key, in the order of `keys` (missing ones left out)."""
        found = {item["pk"]: item for item in self.table.batch_get([self._key(key) for key in keys], consistent=False)}
        return [head_from_item(found[key.partition_key]) for key in keys if key.partition_key in found]

    def get_messages(self, keys: Sequence[MessageKey]) -> list[StoredMessage]:
        """Heads with their content, in the order of `keys` (missing ones left out)."""
        wanted = [self._key(key, sort) for key in keys for sort in (HEAD_SORT_KEY, CONTENT_SORT_KEY)]
        found = {(item["pk"], item["sk"]): item for item in self.table.batch_get(wanted, consistent=False)}
        messages = []
        for key in keys:
            head = found.get((key.partition_key, HEAD_SORT_KEY))
            content = found.get((key.partition_key, CONTENT_SORT_KEY))
            if head is not None and content is not None:
                messages.append(StoredMessage(head_from_item(head), decode_content(content)))
        return messages

    def get_contents(self, keys: Sequence[MessageKey]) -> dict[MessageKey, MessageContent]:
        """The content of each message in `keys` (missing ones left out)."""
        found = self.table.batch_get([self._key(key, CONTENT_SORT_KEY) for key in keys], consistent=False)
        items = {item["pk"]: item for item in found}
        return {key: decode_content(items[key.partition_key]) for key in keys if key.partition_key in items}

    def get_history(
        self, head: MessageHead, before_chunk: int | None = None, page_events: int = HISTORY_PAGE_EVENTS
    ) -> tuple[tuple[Event, ...], int | None]:
        """A page of a message's history (functions/adapters/messages/history.MessageHistory.page)."""
        return self.history.page(head, before_chunk, page_events)

    def iter_due(self, shard: str, due_before: int, page_size: int = 100) -> Iterator[MessageKey]:
        """Every due head of a shard, page by page (the reconciler walks them all each round)."""
        for page in self.indexes.due_pages(shard, due_before, page_size):
            yield from page

    def iter_due_pages(self, shard: str, due_before: int, page_size: int = 100) -> Iterator[list[MessageKey]]:
        """The due heads of a shard, earliest due first, a page at a time."""
        return self.indexes.due_pages(shard, due_before, page_size)

    # -- sender activity (the reconciler's sweep) ----------------------------------------------

    def note_activity(self, sender_id: str, message_id: str, at: datetime, ttl: int) -> None:
        """Name a store container's first message of a sender in `at`'s minute (the sweep reads it)."""
        self.indexes.note_activity(sender_id, message_id, at, ttl)

    def note_due_later(self, key: MessageKey, due: datetime, ttl: int) -> None:
        """See MessageIndexes.note_due_later."""
        self.indexes.note_due_later(key, due, ttl)

    def note_busy_sender(self, sender_id: str, at: datetime, ttl: int) -> None:
        """Mark that a store container took more than one message of the sender in `at`'s minute."""
        self.indexes.note_busy_sender(sender_id, at, ttl)

    def activity(self, minute: int) -> Iterator[SenderActivity]:
        """The senders that accepted messages in `minute` (epoch minutes), with the messages named."""
        return self.indexes.activity(minute)

    def iter_accepted(self, sender_id: str, since: datetime, until: datetime) -> Iterator[MessageKey]:
        """A sender's messages accepted in [since, until], oldest first (the bySender index, keys only)."""
        return self.indexes.accepted(sender_id, since, until)

    def list_by_status(
        self, sender_id: str, status: Status | None, limit: int, cursor: dict[str, Any] | None
    ) -> tuple[list[StoredMessage], dict[str, Any] | None]:
        """A sender's messages in one status (or, with None, in every status), newest first, and the
        cursor of the next page (None at the end).

        "Newest" is when a FAILED, CANCELLED or PAUSED message entered its status (the sparse index's
        sort key, which bulk replay's window also reads) and the acceptance time for the others.

        A page holds `limit` messages whenever that many are left: it reads on (the index's shards
        merged, heads checked against the status) until it has them or the listing ends, within
        LISTING_READ_BUDGET heads; then the cursor goes on exactly where it stopped, so a page
        short of `limit` with a cursor means the budget ran out, not the messages.
        Raises ValueError for a cursor that does not continue this very listing.
        """
        walk = self.indexes.newest_first(sender_id, status, cursor)
        heads: list[MessageHead] = []
        budget, batch = LISTING_READ_BUDGET, 0
        while len(heads) < limit and budget > 0:
            batch = min(budget, LISTING_READ_BATCH, max(limit - len(heads), 2 * batch))
            entries = walk.take(batch)
            if not entries:
                break
            budget -= len(entries)
            found = {head.key: head for head in self.get_heads([entry.key for entry in entries])}
            for index, entry in enumerate(entries):
                walk.consume(entry)
                head = found.get(entry.key)
                if head is not None and (status is None or head.status == status):
                    heads.append(head)
                    if len(heads) == limit:
                        walk.give_back(entries[index + 1 :])
                        break
        contents = self.get_contents([head.key for head in heads])
        return [StoredMessage(head, contents[head.key]) for head in heads if head.key in contents], walk.cursor()
