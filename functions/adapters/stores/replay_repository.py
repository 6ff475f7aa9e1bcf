"""The data-access layer of bulk replays: matching messages by status and time, and the job records.

- Matching reads the sparse `byStatus` index (functions/adapters/repository.py): partition
  `SENDER#<s>#STATUS#<status>`, sort key `<epoch ms of the change>#<messageId>`, so one key
  condition selects a time window, oldest first. The index holds keys only; the messages are read
  by key (with their content when the filter names an origin).
- A job is one item, `pk = REPLAY#<senderId>`, `sk = <jobId>`: its filter, state, counters and
  where it stands (`page`, and `cursor`, the window's position after that page). Each page of the
  job adds its counts (`matched` among them) and moves the page and the cursor on in ONE
  conditional update, so a page run twice is not counted twice and a retried run resumes from the
  job item, not from its input.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from functions.adapters.messages.items import message_key, status_partition
from functions.adapters.messages.table import from_item, to_item
from functions.adapters.messages.updates import UpdateBuilder
from functions.adapters.repository import MessageRepository
from functions.contract.indexes import STATUS_INDEX
from functions.contract.key_prefixes import REPLAY_JOB_PREFIX
from functions.domain.model import MessageKey, Status, epoch_ms

# Every character of a messageId sorts before "~", so "<ms>#~" ends the window's last millisecond.
_AFTER_ANY_ID = "~"
# Epoch milliseconds have 13 digits from 2001 to 2286: the sort keys compare as numbers within it.
_EARLIEST_MS = 10**12


class WindowEntry(NamedTuple):
    """A message in a status window, with the index sort key it had (`<epoch ms>#<messageId>`):
    which failure (or cancellation) of the message the window saw."""

    key: MessageKey
    sort: str


def _job_key(sender_id: str, job_id: str) -> dict[str, Any]:
    return to_item({"pk": f"{REPLAY_JOB_PREFIX}{sender_id}", "sk": job_id})


class ReplayRepository(MessageRepository):
    """MessageRepository plus the replay window query and the job records (same table)."""

    # -- matching --------------------------------------------------------------------------------

    def status_window(
        self,
        sender_id: str,
        status: Status,
        since: datetime,
        until: datetime,
        limit: int | None,
        cursor: dict[str, Any] | None,
    ) -> tuple[list[WindowEntry], dict[str, Any] | None]:
        """A sender's messages that reached `status` within [since, until], oldest first (each with
        its sort key), and the cursor of the next page (None at the end). `limit=None`: as many as
        one page holds."""
        low = f"{max(epoch_ms(since), _EARLIEST_MS)}#"
        high = f"{max(epoch_ms(until), _EARLIEST_MS)}#{_AFTER_ANY_ID}"
        kwargs: dict[str, Any] = {
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "gsi1pk = :pk AND gsi1sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": to_item(
                {":pk": status_partition(sender_id, status), ":low": low, ":high": high}
            ),
            "ScanIndexForward": True,
        }
        if limit is not None:
            kwargs["Limit"] = limit
        if cursor:
            kwargs["ExclusiveStartKey"] = to_item(cursor)
        response = self.table.call("query", **kwargs)
        entries = []
        for item in response.get("Items", []):
            stored = from_item(item)
            entries.append(WindowEntry(message_key(stored), str(stored["gsi1sk"])))
        last = response.get("LastEvaluatedKey")
        return entries, (from_item(last) if last else None)

    # -- jobs ------------------------------------------------------------------------------------

    def create_job(
        self, sender_id: str, job_id: str, job_filter: dict[str, Any], matched: int, state: str, now: datetime, ttl: int
    ) -> None:
        item = {
            "filter": job_filter,
            "matched": matched,
            "replayed": 0,
            "skipped": 0,
            "failed": 0,
            "page": 0,
            "state": state,
            "createdAt": epoch_ms(now),
            "updatedAt": epoch_ms(now),
            "ttl": ttl,
        }
        self.table.call(
            "put_item",
            Item={**_job_key(sender_id, job_id), **to_item(item)},
            ConditionExpression="attribute_not_exists(pk)",
        )

    def get_job(self, sender_id: str, job_id: str) -> dict[str, Any] | None:
        item = self.table.call("get_item", Key=_job_key(sender_id, job_id), ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def record_page(
        self,
        sender_id: str,
        job_id: str,
        page: int,
        counts: dict[str, int],
        state: str,
        now: datetime,
        cursor: dict[str, Any] | None = None,
        set_counts: frozenset[str] = frozenset(),
    ) -> bool:
        """Add one page's counts, store the cursor after it (none: removed) and set the job's state;
        False when that page was already counted. Counters named in `set_counts` are set, not added
        (the first page's `matched` replaces the API's first look)."""
        update = UpdateBuilder().assign("state", state).assign("updatedAt", epoch_ms(now))
        update.sets.append(f"{update.name('page')} = {update.value('next', page + 1)}")
        update.when(f"{update.name('page')} = {update.value('page', page)}")
        for name, amount in counts.items():
            if name in set_counts:
                update.assign(name, amount)
            else:
                update.add(name, amount)
        if cursor is not None:
            update.assign("cursor", cursor)
        else:
            update.remove("cursor")
        return self.table.update(_job_key(sender_id, job_id), update) is not None

    def set_job_state(self, sender_id: str, job_id: str, state: str, now: datetime, reason: str | None = None) -> None:
        update = UpdateBuilder().assign("state", state).assign("updatedAt", epoch_ms(now))
        if reason:
            update.assign("reason", reason[:500])
        self.table.update(_job_key(sender_id, job_id), update)
