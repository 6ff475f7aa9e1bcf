"""How a message's items are stored: the head, its events, the content, and the keys they sit under.

Attribute names and event codes are short because DynamoDB bills every update by the whole item's
size (1 KB = 1 WRU). Decoding gives the domain's `MessageHead`, `Event` and `MessageContent`.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from functions.adapters.messages.table import from_item
from functions.contract.indexes import ACTIVITY_SHARDS, SENDER_SHARDS
from functions.contract.key_prefixes import ACTIVITY_PREFIX, SENDER_PREFIX, STATUS_INFIX
from functions.domain.clock import iso
from functions.domain.model import (
    Event,
    EventType,
    MessageContent,
    MessageHead,
    MessageKey,
    Status,
    epoch_ms,
    from_epoch_ms,
)

HEAD_SORT_KEY = "H"
CONTENT_SORT_KEY = "C"

# Event codes and detail names as stored (short: they are paid for on every later update).
EVENT_CODES = {
    EventType.RECEIVED: "RC",
    EventType.ENQUEUED: "EQ",
    EventType.ENQUEUE_FAILED: "EF",
    EventType.ATTEMPT_STARTED: "AS",
    EventType.ATTEMPT_FAILED: "AF",
    EventType.DELIVERED: "DL",
    EventType.FAILED: "FL",
    EventType.MOVED_TO_SLOW_LANE: "MS",
    EventType.REPLAYED: "RP",
    EventType.CANCELLED: "CN",
    EventType.REDRIVEN: "RD",
    EventType.PAUSED: "PA",
    EventType.RESUMED: "RS",
}
EVENT_TYPES = {code: kind for kind, code in EVENT_CODES.items()}
DETAIL_CODES = {
    "lane": "l",
    "executionArn": "x",
    "statusCode": "c",
    "durationMs": "ms",
    "queueMessageId": "q",
    "error": "er",
    "detail": "d",
    "responseSnippet": "sn",
    "retryAfterSeconds": "ra",
    "retryDelaySeconds": "rw",
    "reason": "why",
    "previousStatus": "ps",
    "requestId": "rq",
    "anomaly": "an",
    "jobId": "jb",
    "origin": "o",
    "probe": "pb",
    "nextProbeAt": "np",
}
DETAIL_NAMES = {code: name for name, code in DETAIL_CODES.items()}
_EVENT_FIELDS = frozenset({"e", "t", "r", "n"})


def encode_event(event: Event, previous_arn: str | None = None) -> dict[str, Any]:
    stored: dict[str, Any] = {"e": EVENT_CODES[event.type], "t": epoch_ms(event.at)}
    if event.run:
        stored["r"] = event.run
    if event.attempt is not None:
        stored["n"] = event.attempt
    for name, value in event.details.items():
        if value is None or value == "":
            continue
        # A lane's later attempts name the same execution: stored once, read back filled in.
        if name == "executionArn" and event.type == EventType.ATTEMPT_STARTED and value == previous_arn:
            continue
        stored[DETAIL_CODES.get(name, name)] = value
    return stored


def encode_events(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Events as stored, standing alone: an execution ARN is elided only after the same one."""
    encoded, previous_arn, previous_run = [], None, None
    for event in events:
        if event.run != previous_run:
            previous_arn, previous_run = None, event.run
        encoded.append(encode_event(event, previous_arn))
        if event.type == EventType.ATTEMPT_STARTED:
            arn = event.details.get("executionArn")
            previous_arn = str(arn) if arn else None
    return encoded


def decode_events(stored: Sequence[dict[str, Any]]) -> tuple[Event, ...]:
    events: list[Event] = []
    last_arn: dict[tuple[int, str], str] = {}
    for item in stored:
        kind = EVENT_TYPES[str(item["e"])]
        details = {DETAIL_NAMES.get(name, name): value for name, value in item.items() if name not in _EVENT_FIELDS}
        run = int(item.get("r", 0))
        if kind == EventType.ATTEMPT_STARTED:
            lane = str(details.get("lane", ""))
            if "executionArn" in details:
                last_arn[(run, lane)] = str(details["executionArn"])
            elif (run, lane) in last_arn:
                details["executionArn"] = last_arn[(run, lane)]
        attempt = int(item["n"]) if "n" in item else None
        events.append(Event(kind, from_epoch_ms(int(item["t"])), run, attempt, details))
    return tuple(events)


def last_attempt_arn(head: MessageHead) -> str | None:
    started = head.last_event(EventType.ATTEMPT_STARTED)
    return str(started.details.get("executionArn")) if started and started.details.get("executionArn") else None


def message_key(item: dict[str, Any]) -> MessageKey:
    """The message an item (or an index entry) belongs to, from its partition key."""
    _, sender_id, message_id = str(item["pk"]).split("#", 2)
    return MessageKey(sender_id, message_id)


def head_from_item(item: dict[str, Any]) -> MessageHead:
    return MessageHead(
        key=message_key(item),
        status=Status(item["s"]),
        run=int(item.get("r", 0)),
        attempts=int(item.get("a", 0)),
        accepted_at=from_epoch_ms(int(item["acc"])),
        updated_at=from_epoch_ms(int(item.get("u", item["acc"]))),
        ttl=int(item["ttl"]),
        content_hash=str(item.get("h", "")),
        accept_request_id=str(item.get("rq", "")),
        events=decode_events(item.get("ev", [])),
        lease_until=int(item["l"]) if "l" in item else None,
        due_at=int(item["dueAt"]) if "dueAt" in item else None,
        redrives=int(item.get("rd", 0)),
        last_error=str(item["err"]) if item.get("err") else None,
        results=int(item.get("n", 0)),
        enqueued_run=int(item.get("q", -1)),
        owner=str(item["o"]) if item.get("o") else None,
        attempt_lease_until=int(item["al"]) if "al" in item else None,
        run_attempt_base=int(item.get("ab", 0)),
        overflow_chunks=int(item.get("eo", 0)),
        not_before=int(item["nb"]) if "nb" in item else None,
        turn_at=int(item["tw"]) if "tw" in item else None,
    )


def decode_head(item: dict[str, Any]) -> MessageHead:
    """A head from a raw DynamoDB item (for tools that read the table without this layer's calls)."""
    return head_from_item(from_item(item))


def encode_content(message: dict[str, Any]) -> bytes:
    # Compressed: a 1 KB message then fits one write unit with its keys (JSON compresses well).
    return zlib.compress(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), 6)


def decode_content(item: dict[str, Any]) -> MessageContent:
    return MessageContent(json.loads(zlib.decompress(item["z"]).decode("utf-8")))


def activity_minute(at: datetime) -> int:
    """The minute (epoch minutes) an activity item is filed under."""
    return epoch_ms(at) // 60_000


def activity_partition(sender_id: str, minute: int) -> str:
    """A sender's activity item's partition: its minute's shard from a hash of the sender
    (functions/contract/indexes.py sizes ACTIVITY_SHARDS)."""
    return f"{ACTIVITY_PREFIX}{minute}#{zlib.crc32(sender_id.encode()) % ACTIVITY_SHARDS}"


def activity_partitions(minute: int) -> list[str]:
    return [f"{ACTIVITY_PREFIX}{minute}#{shard}" for shard in range(ACTIVITY_SHARDS)]


def sender_partition(sender_id: str) -> str:
    return f"{SENDER_PREFIX}{sender_id}"


def sender_shard(key: MessageKey) -> int:
    """The bySender shard of a message: from a hash of its id, so a sender's messages spread evenly
    (functions/contract/indexes.py sizes SENDER_SHARDS)."""
    return zlib.crc32(key.message_id.encode()) % SENDER_SHARDS


def sender_shard_partition(sender_id: str, shard: int) -> str:
    """One shard of a sender's bySender entries (`spk`): `SENDER#<sender>#<n>`."""
    return f"{sender_partition(sender_id)}#{shard}"


def sender_shard_partitions(sender_id: str) -> list[str]:
    """Every shard of a sender's bySender entries, in shard order (a listing reads them all)."""
    return [sender_shard_partition(sender_id, shard) for shard in range(SENDER_SHARDS)]


def status_partition(sender_id: str, status: Status) -> str:
    return f"{sender_partition(sender_id)}{STATUS_INFIX}{status.value}"


def paused_sort(origin: str, at: datetime, key: MessageKey) -> str:
    # An origin holds no '#' (no fragment), so "<origin>#" is exactly its range.
    return f"{origin}#{epoch_ms(at)}#{key.message_id}"


def index_sort(head_key: MessageKey, accepted_at: datetime) -> str:
    return f"{iso(accepted_at)}#{head_key.message_id}"
