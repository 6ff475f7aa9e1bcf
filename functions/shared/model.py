"""Relay's vocabulary: message keys, statuses, event types and how items are keyed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from zlib import crc32

HEAD_SORT_KEY = "MSG"
EVENT_PREFIX = "EVT#"
DUE_SHARDS = 8


class Status(StrEnum):
    PENDING = "PENDING"
    DELIVERING = "DELIVERING"
    RETRYING = "RETRYING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_STATUSES = frozenset({Status.DELIVERED, Status.FAILED, Status.CANCELLED})


class EventType(StrEnum):
    RECEIVED = "RECEIVED"
    ENQUEUED = "ENQUEUED"
    ENQUEUE_FAILED = "ENQUEUE_FAILED"
    ATTEMPT_STARTED = "ATTEMPT_STARTED"
    ATTEMPT_FAILED = "ATTEMPT_FAILED"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    MOVED_TO_SLOW_LANE = "MOVED_TO_SLOW_LANE"
    REPLAYED = "REPLAYED"
    CANCELLED = "CANCELLED"
    REDRIVEN = "REDRIVEN"


# Where an event sorts among the events of one delivery slot (the attempts count when it happened).
_PHASE = {
    EventType.RECEIVED: 0,
    EventType.REPLAYED: 0,
    EventType.ENQUEUED: 1,
    EventType.ENQUEUE_FAILED: 1,
    EventType.REDRIVEN: 1,
    EventType.ATTEMPT_STARTED: 2,
    EventType.ATTEMPT_FAILED: 3,
    EventType.DELIVERED: 4,
    EventType.FAILED: 4,
    EventType.CANCELLED: 4,
    EventType.MOVED_TO_SLOW_LANE: 5,
}


@dataclass(frozen=True)
class MessageKey:
    sender_id: str
    message_id: str

    @property
    def partition_key(self) -> str:
        # '#' is outside the id alphabet, so the key cannot be forged by a crafted id.
        return f"MSG#{self.sender_id}#{self.message_id}"

    @property
    def due_shard(self) -> str:
        return f"DUE#{crc32(self.partition_key.encode()) % DUE_SHARDS}"

    def to_dict(self) -> dict[str, str]:
        return {"senderId": self.sender_id, "messageId": self.message_id}


def event_sort_key(event_type: EventType, run: int, slot: int, suffix: str = "") -> str:
    """A deterministic, ordered key: a retried step writes the same key, so never a second event.

    `run` counts replays, `slot` is the attempts count when the event happened; within a slot the
    phase orders the lifecycle (started < failed < terminal). `suffix` separates events that may
    legitimately repeat in one slot (a reconciler re-drive).
    """
    key = f"{EVENT_PREFIX}{run:03d}#{slot:05d}#{_PHASE[event_type]}{event_type.value}"
    return f"{key}#{suffix}" if suffix else key


def event_run(sort_key: str) -> int:
    """The message run (0, then one more per replay) an event belongs to, read from its sort key."""
    return int(sort_key.removeprefix(EVENT_PREFIX).split("#", 1)[0])


# Messages in flight share one index partition, so moving between PENDING, DELIVERING and
# RETRYING never rewrites the index (each re-key costs two index writes); listings of those
# statuses filter on the head's status.
ACTIVE_STATUSES = frozenset({Status.PENDING, Status.DELIVERING, Status.RETRYING})


def status_index_key(sender_id: str, status: str) -> str:
    group = "ACTIVE" if status in ACTIVE_STATUSES else status
    return f"SENDER#{sender_id}#STATUS#{group}"
