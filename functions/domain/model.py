"""Relay's vocabulary: message keys, statuses, event types, and the typed message head and content.

The head and its events are what every layer passes around; how they are laid out in DynamoDB
(attribute names, event codes, index keys) is the data-access layer's business alone
(functions/adapters/repository.py).
"""

from __future__ import annotations

from base64 import urlsafe_b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from hashlib import blake2b
from typing import Any
from zlib import crc32

from functions.contract.indexes import DUE_SHARDS, SCHEDULER_SHARDS
from functions.contract.key_prefixes import DUE_SHARD_PREFIX, MESSAGE_PREFIX, SCHEDULER_SHARD_PREFIX
from functions.domain.clock import iso


def due_partition(number: int) -> str:
    """The `due` index partition of shard `number` (0 to DUE_SHARDS - 1)."""
    return f"{DUE_SHARD_PREFIX}{number}"


def scheduler_partition(number: int) -> str:
    """The `due` index partition of scheduler shard `number` (0 to SCHEDULER_SHARDS - 1): a family of
    its own, so the reconciler's walk over `DUE#<n>` never meets a message waiting for its time."""
    return f"{SCHEDULER_SHARD_PREFIX}{number}"


class Status(StrEnum):
    # Accepted with a due time (`notBefore`) still ahead: not sent before it, cancellable.
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    DELIVERING = "DELIVERING"
    RETRYING = "RETRYING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    # Its target's circuit is OPEN: not sent, attempts kept, re-driven when the target recovers.
    PAUSED = "PAUSED"


TERMINAL_STATUSES = frozenset({Status.DELIVERED, Status.FAILED, Status.CANCELLED})
# SCHEDULED counts as in flight: the dispatcher's claim takes it (never before its due time).
IN_FLIGHT_STATUSES = frozenset({Status.SCHEDULED, Status.PENDING, Status.DELIVERING, Status.RETRYING})
# Not finished: in flight, or PAUSED (which can still be cancelled, or FAILED at its expiry).
UNFINISHED_STATUSES = IN_FLIGHT_STATUSES | {Status.PAUSED}


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
    PAUSED = "PAUSED"
    RESUMED = "RESUMED"


@dataclass(frozen=True)
class MessageKey:
    sender_id: str
    message_id: str

    @property
    def partition_key(self) -> str:
        # '#' is outside the id alphabet, so the key cannot be forged by a crafted id.
        return f"{MESSAGE_PREFIX}{self.sender_id}#{self.message_id}"

    @property
    def due_shard(self) -> str:
        return due_partition(crc32(self.partition_key.encode()) % DUE_SHARDS)

    @property
    def scheduler_shard(self) -> str:
        return scheduler_partition(crc32(self.partition_key.encode()) % SCHEDULER_SHARDS)

    def to_dict(self) -> dict[str, str]:
        return {"senderId": self.sender_id, "messageId": self.message_id}


def fencing_token(holder: str) -> str:
    """The token a holder of a message (a run's name or execution ARN) is known by in the head: a
    short digest, since every later write of the head pays for its bytes (an ARN is ~110 B)."""
    return urlsafe_b64encode(blake2b(holder.encode(), digest_size=9).digest()).decode()


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_epoch_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


@dataclass(frozen=True)
class Event:
    """One immutable event of a message's life, as `GET /messages/{id}` shows it.

    `run` is the message run it belongs to (0, then one more per replay); `attempt` the attempt it
    concerns (ATTEMPT_STARTED/ATTEMPT_FAILED/DELIVERED) or the attempts count when it happened.
    """

    type: EventType
    at: datetime
    run: int = 0
    attempt: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        view: dict[str, Any] = {"type": self.type.value, "at": iso(self.at)}
        if self.attempt is not None and self.type in _ATTEMPT_EVENTS:
            view["attempt"] = self.attempt
        view.update(self.details)
        return view


_ATTEMPT_EVENTS = frozenset({EventType.ATTEMPT_STARTED, EventType.ATTEMPT_FAILED, EventType.DELIVERED})


@dataclass(frozen=True)
class MessageHead:
    """The mutable part of a message: status, attempts, lease and the event history.

    Every change of status is one conditional write of this head that appends its event, so the
    history and the status can never disagree.
    """

    key: MessageKey
    status: Status
    run: int
    attempts: int
    accepted_at: datetime
    updated_at: datetime
    ttl: int
    content_hash: str
    accept_request_id: str
    events: tuple[Event, ...] = ()
    lease_until: int | None = None
    due_at: int | None = None
    redrives: int = 0
    last_error: str | None = None
    # The highest attempt number whose result (ATTEMPT_FAILED or DELIVERED) is recorded.
    results: int = 0
    # The last run whose ENQUEUED is recorded (-1: none yet).
    enqueued_run: int = -1
    # The fencing token of the run (or dispatcher) that holds the message: its claim and every
    # hand-off write it, and every attempt, result, pause and release write is conditional on it.
    owner: str | None = None
    # Until when the counted attempt without a result may still be sending (nobody else may
    # attempt before, nor call it interrupted).
    attempt_lease_until: int | None = None
    # The attempts count when the head's run began (a replay starts a run with none of its own).
    run_attempt_base: int = 0
    # How many overflow items hold events older than `events` (the head keeps the recent ones).
    overflow_chunks: int = 0
    # The due time of a delayed message (epoch seconds): no attempt before it. None: send at once.
    not_before: int | None = None
    # The turn its target's queue counted this PENDING run in for (epoch seconds; flow.Wait.counted):
    # a second queue copy of the run waits for it instead of being counted again. Cleared by a claim.
    turn_at: int | None = None

    def seconds_until_due(self, now_epoch: float) -> int:
        """Whole seconds until the due time (0 when it has come or there is none)."""
        if self.not_before is None or self.not_before <= now_epoch:
            return 0
        return max(1, int(-(-(self.not_before - now_epoch) // 1)))

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.ttl, UTC)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at <= now

    def leased(self, now_epoch: int) -> bool:
        # The writes' conditions call a lease free only once it is past (`l < now`): the same edge.
        return self.lease_until is not None and self.lease_until >= now_epoch

    @property
    def run_attempts(self) -> int:
        """The attempts the head's current run has counted (its own retry budget is spent on these)."""
        return self.attempts - self.run_attempt_base

    def attempt_in_flight(self, now_epoch: int) -> bool:
        """A counted attempt whose sender may still be waiting for the target's answer."""
        return (
            self.unresolved_attempt is not None
            and self.attempt_lease_until is not None
            and self.attempt_lease_until >= now_epoch
        )

    def owned_by(self, *tokens: str) -> bool:
        return self.owner is not None and self.owner in tokens

    @property
    def unresolved_attempt(self) -> int | None:
        """The attempt that was counted but has no result (its step failed after counting it)."""
        return self.attempts if self.attempts > self.results else None

    def last_event(self, *types: EventType) -> Event | None:
        for event in reversed(self.events):
            if event.type in types and event.run == self.run:
                return event
        return None

    def finished_at(self, event_type: EventType) -> datetime | None:
        event = self.last_event(event_type)
        return event.at if event else None


# Marks the stored content of a message Relay sends itself (never a field a sender may send).
EMITTED_FIELD = "emittedBy"


@dataclass(frozen=True)
class MessageContent:
    """What the sender asked to deliver, stored once and never rewritten."""

    message: Mapping[str, Any]

    @property
    def target_url(self) -> str:
        return str(self.message["targetUrl"])

    @property
    def method(self) -> str:
        return str(self.message.get("method", "POST"))

    @property
    def headers(self) -> dict[str, str]:
        return dict(self.message.get("headers", {}))

    @property
    def body(self) -> bytes | None:
        body = self.message.get("body")
        return body.encode("utf-8") if isinstance(body, str) else None

    @property
    def max_attempts(self) -> int | None:
        """The message's own retry budget (`retry.maxAttempts`), if it set one."""
        retry = self.message.get("retry") or {}
        return int(retry["maxAttempts"]) if "maxAttempts" in retry else None

    @property
    def timeout_seconds(self) -> int | None:
        """The message's own per-attempt timeout (`timeoutSeconds`), if it set one."""
        timeout = self.message.get("timeoutSeconds")
        return int(timeout) if timeout is not None else None

    @property
    def emitted(self) -> bool:
        """Sent by Relay itself (a callback or a notification): its own outcome reports nothing."""
        return bool(self.message.get(EMITTED_FIELD))

    @property
    def callback_url(self) -> str | None:
        """Called after DELIVERED (`callbackUrl`), if the sender named one."""
        return str(self.message["callbackUrl"]) if self.message.get("callbackUrl") else None

    @property
    def failure_callback_url(self) -> str | None:
        """Called after FAILED (`failureCallbackUrl`), if the sender named one."""
        return str(self.message["failureCallbackUrl"]) if self.message.get("failureCallbackUrl") else None


@dataclass(frozen=True)
class DueEntry:
    """A delayed message's due time (epoch s, `not_before`) and where its new head sits in the `due`
    index (`shard`, due at `due_at`): the scheduler's shards for a long wait. None for a short one
    (the queue's delay): the activity item of its due minute watches it instead (no index writes)."""

    not_before: int
    shard: str | None = None
    due_at: int | None = None


@dataclass(frozen=True)
class SenderActivity:
    """A sender's messages accepted in one minute, as the reconciler's sweep finds them: the ids of
    the first ones each store container took (`named`), and whether any container took more than
    one (`busy`: then the sender's acceptance index is read for that minute)."""

    sender_id: str
    named: frozenset[str]
    busy: bool

    def named_keys(self) -> list[MessageKey]:
        return [MessageKey(self.sender_id, message_id) for message_id in sorted(self.named)]


@dataclass(frozen=True)
class StoredMessage:
    head: MessageHead
    content: MessageContent
