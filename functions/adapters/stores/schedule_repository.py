"""The data-access layer of cron schedules and of the scheduler's shards of the `due` index.

- A schedule is one item, `pk = SCHEDULE#<senderId>`, `sk = <name>`: its cron expression and zone,
  the message each firing delivers, `paused`, and its next firing (`nx`, epoch seconds). While not
  paused it sits in the scheduler's shards of the `due` index (`dueShard = SCHED#<n>`), due
  SCHEDULE_LEAD_SECONDS before its next firing; advancing it is conditional on the firing read, so
  two sweeps never both advance it.
- The scheduler's shards also hold delayed messages whose time is further than the queue's delay
  (functions/services/ingest.py puts them there): `scheduler_due` tells the two kinds apart by key.
- Each shard's cursor is one small item, `pk = CURSOR#<n>`: the time up to which a sweep handed every
  message due there to the queue. It only moves forward (a conditional write), so an older sweep
  finishing late never moves it back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple
from zlib import crc32

from functions.adapters.messages.items import message_key
from functions.adapters.messages.table import from_item, to_item
from functions.adapters.messages.updates import UpdateBuilder
from functions.adapters.repository import MessageRepository
from functions.contract.indexes import DUE_INDEX, SCHEDULER_SHARDS
from functions.contract.key_prefixes import MESSAGE_PREFIX, SCHEDULE_PREFIX, SCHEDULER_CURSOR_PREFIX
from functions.domain.model import MessageKey, scheduler_partition
from functions.domain.scheduling import SCHEDULE_LEAD_SECONDS, Cron, Schedule, ScheduleMessage

# A sender's schedules one listing reads at most.
MAX_SCHEDULES_LISTED = 1_000
# The sort key of a shard's cursor item (one item per partition).
CURSOR_SORT_KEY = "C"


class ScheduleKey(NamedTuple):
    sender_id: str
    name: str


class DueMessage(NamedTuple):
    """A delayed message's entry in the scheduler's shard: its key and due time (epoch s)."""

    key: MessageKey
    due_at: int


class DueWork(NamedTuple):
    """A page of the scheduler's shard: delayed messages and schedules whose time has come."""

    messages: list[DueMessage]
    schedules: list[ScheduleKey]


def _key(sender_id: str, name: str) -> dict[str, Any]:
    return to_item({"pk": f"{SCHEDULE_PREFIX}{sender_id}", "sk": name})


def _shard(sender_id: str, name: str) -> str:
    return scheduler_partition(crc32(f"{SCHEDULE_PREFIX}{sender_id}#{name}".encode()) % SCHEDULER_SHARDS)


def _cursor_key(shard: int) -> dict[str, Any]:
    return to_item({"pk": f"{SCHEDULER_CURSOR_PREFIX}{shard}", "sk": CURSOR_SORT_KEY})


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _schedule(item: dict[str, Any]) -> Schedule:
    return Schedule(
        sender_id=str(item["pk"])[len(SCHEDULE_PREFIX) :],
        name=str(item["sk"]),
        cron=Cron(str(item["c"]), str(item.get("tz", "UTC"))),
        message=ScheduleMessage.from_dict(json.loads(str(item["m"]))),
        next_run_at=datetime.fromtimestamp(int(item["nx"]), UTC),
        paused=bool(item.get("p", False)),
        created_at=datetime.fromtimestamp(int(item["ca"]), UTC) if "ca" in item else None,
        updated_at=datetime.fromtimestamp(int(item["ua"]), UTC) if "ua" in item else None,
    )


class ScheduleRepository(MessageRepository):
    """MessageRepository plus the schedules and the scheduler's due query (same table)."""

    def put_schedule(self, schedule: Schedule) -> None:
        """Create or replace a schedule (a PUT); due for its next firing unless paused."""
        item: dict[str, Any] = {
            "pk": f"{SCHEDULE_PREFIX}{schedule.sender_id}",
            "sk": schedule.name,
            "c": schedule.cron.expression,
            "tz": schedule.cron.timezone,
            "m": json.dumps(schedule.message.to_dict(), separators=(",", ":")),
            "nx": _epoch(schedule.next_run_at),
            "p": schedule.paused,
            "ca": _epoch(schedule.created_at or schedule.next_run_at),
            "ua": _epoch(schedule.updated_at or schedule.next_run_at),
        }
        if not schedule.paused:
            item["dueShard"] = _shard(schedule.sender_id, schedule.name)
            item["dueAt"] = _epoch(schedule.next_run_at) - SCHEDULE_LEAD_SECONDS
        self.table.call("put_item", Item=to_item(item))

    def get_schedule(self, sender_id: str, name: str) -> Schedule | None:
        item = self.table.call("get_item", Key=_key(sender_id, name), ConsistentRead=True).get("Item")
        return _schedule(from_item(item)) if item else None

    def list_schedules(self, sender_id: str) -> list[Schedule]:
        """A sender's schedules by name."""
        response = self.table.call(
            "query",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=to_item({":pk": f"{SCHEDULE_PREFIX}{sender_id}"}),
            Limit=MAX_SCHEDULES_LISTED,
        )
        return [_schedule(from_item(item)) for item in response.get("Items", [])]

    def delete_schedule(self, sender_id: str, name: str) -> Schedule | None:
        """Delete a schedule; the schedule it was, or None when there was none."""
        response = self.table.call("delete_item", Key=_key(sender_id, name), ReturnValues="ALL_OLD")
        item = response.get("Attributes")
        return _schedule(from_item(item)) if item else None

    def set_paused(self, schedule: Schedule, paused: bool, next_run_at: datetime, now: datetime) -> Schedule | None:
        """Pause (off the due index) or resume (due for `next_run_at`); None when it is gone."""
        update = UpdateBuilder().assign("p", paused).assign("nx", _epoch(next_run_at)).assign("ua", _epoch(now))
        if paused:
            update.remove("dueAt", "dueShard")
        else:
            update.assign("dueAt", _epoch(next_run_at) - SCHEDULE_LEAD_SECONDS)
            update.assign("dueShard", _shard(schedule.sender_id, schedule.name))
        item = self.table.update(_key(schedule.sender_id, schedule.name), update)
        return _schedule(item) if item else None

    def advance(self, schedule: Schedule, next_run_at: datetime) -> bool:
        """Move the next firing on, conditional on the one read (and not paused meanwhile)."""
        update = UpdateBuilder().assign("nx", _epoch(next_run_at))
        update.assign("dueAt", _epoch(next_run_at) - SCHEDULE_LEAD_SECONDS)
        update.when(f"{update.name('nx')} = {update.value('read', _epoch(schedule.next_run_at))}")
        update.when(f"{update.name('p')} = {update.value('notPaused', False)}")
        return self.table.update(_key(schedule.sender_id, schedule.name), update) is not None

    def scheduler_due(self, shard: int, due_before: int, page_size: int = 100) -> Iterator[DueWork]:
        """The scheduler's shard `shard`, earliest due first, a page at a time."""
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "IndexName": DUE_INDEX,
                "KeyConditionExpression": "dueShard = :shard AND dueAt <= :now",
                "ExpressionAttributeValues": to_item({":shard": scheduler_partition(shard), ":now": due_before}),
                "Limit": page_size,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            response = self.table.call("query", **kwargs)
            work = DueWork([], [])
            for raw in response.get("Items", []):
                item = from_item(raw)
                pk = str(item["pk"])
                if pk.startswith(MESSAGE_PREFIX):
                    work.messages.append(DueMessage(message_key(item), int(item["dueAt"])))
                elif pk.startswith(SCHEDULE_PREFIX):
                    work.schedules.append(ScheduleKey(pk[len(SCHEDULE_PREFIX) :], str(item["sk"])))
            yield work
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    def scheduler_cursor(self, shard: int) -> int:
        """The time (epoch s) up to which shard `shard`'s messages were handed to the queue; 0 for none."""
        item = self.table.call("get_item", Key=_cursor_key(shard), ConsistentRead=True).get("Item")
        return int(from_item(item)["at"]) if item else 0

    def advance_scheduler_cursor(self, shard: int, handed_until: int) -> bool:
        """Move shard `shard`'s cursor forward to `handed_until`; False when it was there or beyond."""
        update = UpdateBuilder().assign("at", handed_until)
        at = update.name("at")
        update.when(f"(attribute_not_exists({at}) OR {at} < {update.value('until', handed_until)})")
        return self.table.update(_cursor_key(shard), update, must_exist=False) is not None
