"""A message's history beyond its head: overflow items, and reading the history a page at a time.

Older events move out of the head into overflow items (`E#<seq>`, oldest first), so the head, which
every transition rewrites and pays for, stays small whatever the history's length.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from functions.adapters.messages.items import HEAD_SORT_KEY, decode_events, encode_events
from functions.adapters.messages.table import Table, from_item, to_item
from functions.adapters.messages.updates import UpdateBuilder
from functions.adapters.observability import logger
from functions.contract.key_prefixes import OVERFLOW_SORT_PREFIX
from functions.domain.model import Event, MessageHead, MessageKey

# When the head's events pass this many bytes, the older ones move to an overflow item (one extra
# transactional write per many events): a transition then bills at most 2 WRU.
HEAD_EVENTS_MAX_BYTES = 1200
# What the head keeps after a move: the recent events, up to these bytes and this many.
HEAD_EVENTS_KEEP_BYTES = 500
HEAD_EVENTS_KEEP = 8
# Events shown by one page of a message's history.
HISTORY_PAGE_EVENTS = 500


def events_bytes(stored: Sequence[dict[str, Any]]) -> int:
    return len(json.dumps(stored, separators=(",", ":"), default=str))


def kept_count(stored: Sequence[dict[str, Any]]) -> int:
    """How many of the newest events the head keeps when older ones move out (at least one)."""
    kept, size = 0, 0
    for event in reversed(stored):
        size += events_bytes([event])
        if kept >= 1 and (kept >= HEAD_EVENTS_KEEP or size > HEAD_EVENTS_KEEP_BYTES):
            break
        kept += 1
    return kept


def overflow_sort_key(seq: int) -> str:
    return f"{OVERFLOW_SORT_PREFIX}{seq:08d}"


class MessageHistory:
    """The overflow items of the messages in one table."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def keep_head_small(self, key: MessageKey, item: dict[str, Any]) -> None:
        """After a write of the head `item`: move its older events out when they have grown too big."""
        if events_bytes(item.get("ev", [])) > HEAD_EVENTS_MAX_BYTES:
            self.move_old_events(key, item)

    def move_old_events(self, key: MessageKey, item: dict[str, Any]) -> None:
        """Move the head's older events to the next overflow item, in one transaction with the head
        (conditional on the head's events being exactly those read, so no appended event is lost and
        no two writers move the same ones). Best effort: when it fails, a later write moves them."""
        stored = item["ev"]
        kept = kept_count(stored)
        if kept >= len(stored):
            return
        events = decode_events(stored)  # every execution ARN filled in
        moved, retained = encode_events(events[:-kept]), encode_events(events[-kept:])
        seq = int(item.get("eo", 0))
        overflow = {"pk": key.partition_key, "sk": overflow_sort_key(seq), "ev": moved, "ttl": item["ttl"]}
        update = UpdateBuilder().assign("ev", retained).assign("eo", seq + 1)
        update.when(f"size({update.name('ev')}) = {update.value('count', len(stored))}")
        chunks = update.name("eo")
        if seq:
            update.when(f"{chunks} = {update.value('seq', seq)}")
        else:
            update.when(f"attribute_not_exists({chunks})")
        head_update = {
            "TableName": self.table.table_name,
            "Key": to_item({"pk": key.partition_key, "sk": HEAD_SORT_KEY}),
            "UpdateExpression": update.expression(),
            "ConditionExpression": update.condition(),
            "ExpressionAttributeNames": update.names,
            "ExpressionAttributeValues": to_item(update.values),
        }
        put = {
            "TableName": self.table.table_name,
            "Item": to_item(overflow),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        try:
            self.table.client.transact_write_items(TransactItems=[{"Put": put}, {"Update": head_update}])
        except (ClientError, BotoCoreError) as error:
            logger.warning(
                "Could not move a head's older events out; a later write does",
                extra={**key.to_dict(), "error": type(error).__name__, "reason": str(error)[:300]},
            )

    def page(
        self, head: MessageHead, before_chunk: int | None = None, page_events: int = HISTORY_PAGE_EVENTS
    ) -> tuple[tuple[Event, ...], int | None]:
        """A page of a message's history, oldest first: the newest page (ending with the head's latest
        event) or, with `before_chunk`, the page before that overflow item; and the cursor of the page
        before it (None when this page starts with the first event)."""
        stored: list[dict[str, Any]] = [] if before_chunk is not None else encode_events(head.events)
        chunk = (head.overflow_chunks if before_chunk is None else min(before_chunk, head.overflow_chunks)) - 1
        while chunk >= 0 and len(stored) < page_events:
            response = self.table.call(
                "query",
                KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
                ExpressionAttributeValues=to_item(
                    {":pk": head.key.partition_key, ":first": overflow_sort_key(0), ":last": overflow_sort_key(chunk)}
                ),
                ScanIndexForward=False,
                Limit=min(25, chunk + 1),
            )
            items = [from_item(found) for found in response.get("Items", [])]
            if not items:
                chunk = -1
                break
            for found in items:
                if len(stored) >= page_events:
                    break
                stored = list(found.get("ev", [])) + stored
                chunk = int(str(found["sk"])[len(OVERFLOW_SORT_PREFIX) :]) - 1
        return decode_events(stored), (chunk + 1 if chunk >= 0 else None)
