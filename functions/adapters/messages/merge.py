"""Reading a listing newest first when its entries are spread over several index partitions (shards).

Writes to a sender's index entries are spread over shards (functions/contract/indexes.py), so a
sender's newest messages are no longer the top of one partition: they are the tops of all its
shards. `NewestFirst` reads each shard newest first, a page at a time, and hands out the newest
entry of all of them in turn (a k-way merge by sort key, which is unique within a listing: it ends
with the message id). A listing of one partition (a sparse status) is the same walk with one shard.

Where a walk stopped is a position per shard: the sort key of the last entry the caller used from
that shard (a later walk reads strictly below it) or "done". `cursor()` writes those positions into
a plain dict that the API encodes opaquely; `NewestFirst(..., cursor)` checks that a cursor belongs
to this very listing (its index, partitions and filter) before it follows one.
"""

from __future__ import annotations

from base64 import urlsafe_b64encode
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from functions.adapters.messages.items import message_key
from functions.adapters.messages.table import Table, from_item, to_item
from functions.domain.model import MessageKey

# The longest sort key a listing cursor may carry (keys are built from ids of at most 128
# characters); anything longer did not come from a listing.
MAX_CURSOR_VALUE = 1024
# Entries one query of a shard asks for at most (each later query of the same shard asks for
# twice the one before, from what the walk still needs, up to this).
MAX_QUERY_ENTRIES = 200
_CURSOR_FIELDS = frozenset({"l", "p", "d"})


@dataclass(frozen=True)
class Listing:
    """Where a listing's entries are: an index, its key attributes and the partitions it merges."""

    index: str
    partition_attribute: str
    sort_attribute: str
    partitions: tuple[str, ...]
    # What else makes it this listing (its status filter): a cursor of another one is refused.
    variant: str = ""

    @property
    def listing_id(self) -> str:
        described = "|".join((self.index, self.variant, *self.partitions))
        return urlsafe_b64encode(blake2b(described.encode(), digest_size=9).digest()).decode()


@dataclass(frozen=True)
class IndexEntry:
    shard: int
    sort_key: str
    key: MessageKey


class NewestFirst:
    """A newest-first walk over the shards of one listing, merged by sort key (see the module).

    `take` hands out entries; the caller `consume`s each one it has looked at and may `give_back`
    the ones it did not; `cursor()` is where the consumed entries end (None: nothing is left)."""

    def __init__(self, table: Table, listing: Listing, cursor: dict[str, Any] | None = None) -> None:
        self.table = table
        self.listing = listing
        shards = len(listing.partitions)
        # Per shard: the last consumed sort key (read strictly below it next), and whether it is done.
        self.positions: list[str | None] = [None] * shards
        done: set[int] = set()
        if cursor is not None:
            self.positions, done = _positions(listing, cursor)
        self._read_to = list(self.positions)
        self._buffers: list[deque[IndexEntry]] = [deque() for _ in range(shards)]
        self._more = [shard not in done for shard in range(shards)]
        self._queries = [0] * shards

    def take(self, count: int) -> list[IndexEntry]:
        """The next `count` entries, newest first across every shard (fewer only at the end)."""
        taken: list[IndexEntry] = []
        while len(taken) < count:
            for shard, buffer in enumerate(self._buffers):
                if not buffer and self._more[shard]:
                    self._read(shard, count - len(taken))
            ready = [buffer for buffer in self._buffers if buffer]
            if not ready:
                break
            newest = max(ready, key=lambda buffer: buffer[0].sort_key)
            taken.append(newest.popleft())
        return taken

    def consume(self, entry: IndexEntry) -> None:
        self.positions[entry.shard] = entry.sort_key

    def give_back(self, entries: Sequence[IndexEntry]) -> None:
        """Entries taken but not looked at: the next `take` hands them out again."""
        for entry in reversed(entries):
            self._buffers[entry.shard].appendleft(entry)

    def cursor(self) -> dict[str, Any] | None:
        """Where this walk stopped (every shard's position), or None when every shard is done."""
        done = [shard for shard, more in enumerate(self._more) if not more and not self._buffers[shard]]
        if len(done) == len(self._more):
            return None
        return {"l": self.listing.listing_id, "p": list(self.positions), "d": done}

    def _read(self, shard: int, wanted: int) -> None:
        """One page of a shard, newest first, strictly below what was read of it so far."""
        listing = self.listing
        size = min(MAX_QUERY_ENTRIES, max(1, wanted) << self._queries[shard])
        self._queries[shard] += 1
        condition, values = f"{listing.partition_attribute} = :pk", {":pk": listing.partitions[shard]}
        below = self._read_to[shard]
        if below is not None:
            condition, values = f"{condition} AND {listing.sort_attribute} < :below", {**values, ":below": below}
        response = self.table.call(
            "query",
            IndexName=listing.index,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=to_item(values),
            ScanIndexForward=False,
            Limit=size,
        )
        items = [from_item(item) for item in response.get("Items", [])]
        for item in items:
            sort_key = str(item[listing.sort_attribute])
            self._buffers[shard].append(IndexEntry(shard, sort_key, message_key(item)))
            self._read_to[shard] = sort_key
        # A page that ends at its Limit may have more below it; an empty page never does.
        self._more[shard] = bool(items) and bool(response.get("LastEvaluatedKey"))


def _positions(listing: Listing, cursor: dict[str, Any]) -> tuple[list[str | None], set[int]]:
    """The shard positions a cursor holds; ValueError when it is not a cursor of this listing."""
    shards = len(listing.partitions)
    positions, done = cursor.get("p"), cursor.get("d")
    if (
        set(cursor) != _CURSOR_FIELDS
        or cursor["l"] != listing.listing_id
        or not isinstance(positions, list)
        or len(positions) != shards
        or not all(p is None or (isinstance(p, str) and 0 < len(p) <= MAX_CURSOR_VALUE) for p in positions)
        or not isinstance(done, list)
        or not all(type(shard) is int and 0 <= shard < shards for shard in done)
        or len(set(done)) != len(done)
        or len(done) == shards
    ):
        raise ValueError("not a cursor of this listing")
    return list(positions), set(done)
