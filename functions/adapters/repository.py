"""The data-access layer over the single DynamoDB table. Nothing above this module calls boto3.

Layout (one partition per message, everything expires together through `ttl`):
- `sk = C`: the content (target, method, headers, body) as compressed JSON, written once and never
  rewritten, so no later write pays for its size.
- `sk = H`: the head: status, run, attempts, lease and the message's events as a compact list.
  Each change of status is ONE conditional `UpdateItem` that sets the status and appends its event
  together: the history cannot have gaps, and the conditions (run, attempts, results) make a
  retried step find its own earlier write instead of writing twice. Attribute names and event
  codes are short because DynamoDB bills every update by the whole item's size (1 KB = 1 WRU).

Indexes (keys only: an index entry is written only when its keys change):
- `bySender` (`spk`/`ssk`): every message once, by sender and acceptance time, written with the
  head and never re-keyed. Listings of PENDING, DELIVERING, RETRYING and DELIVERED walk it
  (in-flight messages are recent, so they are near the top).
- `byStatus` (`gsi1pk`/`gsi1sk`), sparse: only FAILED, CANCELLED and PAUSED messages (the failure
  path, where a listing must find old ones quickly); also the senders' own items. A PAUSED entry's
  sort key starts with the message's target origin, so a target's paused messages are one key range.
- `due` (`dueShard`/`dueAt`), sparse: messages the reconciler must look at (a retry in flight, a
  failed enqueue, a replay). A message delivered at its first attempt never has an entry: until its
  claim the queue holds it, and the dispatcher redelivers a claim that died (delivery.py).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from functions.adapters import aws
from functions.adapters.observability import logger
from functions.contract.key_prefixes import ACTIVITY_PREFIX
from functions.domain.clock import iso
from functions.domain.exceptions import StorageError, StorageUnavailable
from functions.domain.model import (
    IN_FLIGHT_STATUSES,
    UNFINISHED_STATUSES,
    Event,
    EventType,
    MessageContent,
    MessageHead,
    MessageKey,
    Status,
    StoredMessage,
    epoch_ms,
    from_epoch_ms,
)

HEAD_SORT_KEY = "H"
CONTENT_SORT_KEY = "C"
# Overflow items: older events moved out of the head (`E#<seq>`, oldest first), so the head, which
# every transition rewrites and pays for, stays small whatever the history's length.
OVERFLOW_SORT_PREFIX = "E#"
# When the head's events pass this many bytes, the older ones move to an overflow item (one extra
# transactional write per many events): a transition then bills at most 2 WRU.
HEAD_EVENTS_MAX_BYTES = 1200
# What the head keeps after a move: the recent events, up to these bytes and this many.
HEAD_EVENTS_KEEP_BYTES = 500
HEAD_EVENTS_KEEP = 8
# Events shown by one page of a message's history.
HISTORY_PAGE_EVENTS = 500
SENDER_INDEX = "bySender"
STATUS_INDEX = "byStatus"
DUE_INDEX = "due"
# The longest key value a listing cursor may carry (keys are built from ids of at most 128
# characters); anything longer did not come from a listing.
MAX_CURSOR_VALUE = 1024
# Statuses that have an entry in the sparse byStatus index; the others are listed from bySender.
SPARSE_STATUSES = frozenset({Status.FAILED, Status.CANCELLED, Status.PAUSED})
# What a replay may start again: every finished message (a bulk replay narrows it to one status).
REPLAYABLE_STATUSES = frozenset({Status.DELIVERED, Status.FAILED, Status.CANCELLED})

_TRANSIENT_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionInProgressException",
    }
)
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

# Event codes and detail names as stored (short: they are paid for on every later update).
_EVENT_CODES = {
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
_EVENT_TYPES = {code: kind for kind, code in _EVENT_CODES.items()}
_DETAIL_CODES = {
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
_DETAIL_NAMES = {code: name for name, code in _DETAIL_CODES.items()}
_EVENT_FIELDS = frozenset({"e", "t", "r", "n"})


def _storable(value: Any) -> Any:
    # DynamoDB numbers are decimals; boto3 refuses floats rather than round them silently.
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {key: _storable(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(inner) for inner in value]
    return value


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(_storable(value)) for name, value in values.items() if value is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Binary):
        return bytes(value)  # type: ignore[call-overload]  # Binary defines __bytes__
    if isinstance(value, dict):
        return {key: _plain(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_plain(inner) for inner in value]
    return value


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _plain(_deserializer.deserialize(value)) for name, value in item.items()}


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _storage_failure(error: Exception) -> Exception:
    """Translate an AWS failure into a domain error; AWS text never reaches a caller."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in _TRANSIENT_CODES:
            return StorageUnavailable(f"DynamoDB is unavailable ({code})")
        return StorageError(f"DynamoDB refused the request ({code})")
    return StorageUnavailable(f"DynamoDB could not be reached ({type(error).__name__})")


# -- encoding ----------------------------------------------------------------------------------------


def _encode_event(event: Event, previous_arn: str | None = None) -> dict[str, Any]:
    stored: dict[str, Any] = {"e": _EVENT_CODES[event.type], "t": epoch_ms(event.at)}
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
        stored[_DETAIL_CODES.get(name, name)] = value
    return stored


def _encode_events(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Events as stored, standing alone: an execution ARN is elided only after the same one."""
    encoded, previous_arn, previous_run = [], None, None
    for event in events:
        if event.run != previous_run:
            previous_arn, previous_run = None, event.run
        encoded.append(_encode_event(event, previous_arn))
        if event.type == EventType.ATTEMPT_STARTED:
            arn = event.details.get("executionArn")
            previous_arn = str(arn) if arn else None
    return encoded


def _events_bytes(stored: Sequence[dict[str, Any]]) -> int:
    return len(json.dumps(stored, separators=(",", ":"), default=str))


def _kept_count(stored: Sequence[dict[str, Any]]) -> int:
    """How many of the newest events the head keeps when older ones move out (at least one)."""
    kept, size = 0, 0
    for event in reversed(stored):
        size += _events_bytes([event])
        if kept >= 1 and (kept >= HEAD_EVENTS_KEEP or size > HEAD_EVENTS_KEEP_BYTES):
            break
        kept += 1
    return kept


def _decode_events(stored: Sequence[dict[str, Any]]) -> tuple[Event, ...]:
    events: list[Event] = []
    last_arn: dict[tuple[int, str], str] = {}
    for item in stored:
        kind = _EVENT_TYPES[str(item["e"])]
        details = {_DETAIL_NAMES.get(name, name): value for name, value in item.items() if name not in _EVENT_FIELDS}
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


def _last_attempt_arn(head: MessageHead) -> str | None:
    started = head.last_event(EventType.ATTEMPT_STARTED)
    return str(started.details.get("executionArn")) if started and started.details.get("executionArn") else None


def _message_key(item: dict[str, Any]) -> MessageKey:
    """The message an item (or an index entry) belongs to, from its partition key."""
    _, sender_id, message_id = str(item["pk"]).split("#", 2)
    return MessageKey(sender_id, message_id)


def _decode_head(item: dict[str, Any]) -> MessageHead:
    return MessageHead(
        key=_message_key(item),
        status=Status(item["s"]),
        run=int(item.get("r", 0)),
        attempts=int(item.get("a", 0)),
        accepted_at=from_epoch_ms(int(item["acc"])),
        updated_at=from_epoch_ms(int(item.get("u", item["acc"]))),
        ttl=int(item["ttl"]),
        content_hash=str(item.get("h", "")),
        accept_request_id=str(item.get("rq", "")),
        events=_decode_events(item.get("ev", [])),
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
    )


def decode_head(item: dict[str, Any]) -> MessageHead:
    """A head from a raw DynamoDB item (for tools that read the table without this layer's calls)."""
    return _decode_head(from_item(item))


def _encode_content(message: dict[str, Any]) -> bytes:
    # Compressed: a 1 KB message then fits one write unit with its keys (JSON compresses well).
    return zlib.compress(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), 6)


def _decode_content(item: dict[str, Any]) -> MessageContent:
    return MessageContent(json.loads(zlib.decompress(item["z"]).decode("utf-8")))


def _activity_partition(at: datetime) -> str:
    return f"{ACTIVITY_PREFIX}{epoch_ms(at) // 60_000}"


def _sender_partition(sender_id: str) -> str:
    return f"SENDER#{sender_id}"


def _status_partition(sender_id: str, status: Status) -> str:
    return f"SENDER#{sender_id}#STATUS#{status.value}"


def _paused_sort(origin: str, at: datetime, key: MessageKey) -> str:
    # An origin holds no '#' (no fragment), so "<origin>#" is exactly its range.
    return f"{origin}#{epoch_ms(at)}#{key.message_id}"


def _index_sort(head_key: MessageKey, accepted_at: datetime) -> str:
    return f"{iso(accepted_at)}#{head_key.message_id}"


class _Update:
    """One UpdateItem expression, built from named parts (every name goes through `#`)."""

    def __init__(self) -> None:
        self.sets: list[str] = []
        self.removes: list[str] = []
        self.adds: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.conditions: list[str] = []

    def name(self, attribute: str) -> str:
        placeholder = f"#{attribute}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, label: str, value: Any) -> str:
        placeholder = f":{label}"
        self.values[placeholder] = value
        return placeholder

    def assign(self, attribute: str, value: Any) -> _Update:
        self.sets.append(f"{self.name(attribute)} = {self.value(attribute, value)}")
        return self

    def set_once(self, attribute: str, value: Any) -> _Update:
        name = self.name(attribute)
        self.sets.append(f"{name} = if_not_exists({name}, {self.value(attribute, value)})")
        return self

    def remove(self, *attributes: str) -> _Update:
        self.removes.extend(self.name(attribute) for attribute in attributes)
        return self

    def add(self, attribute: str, amount: int) -> _Update:
        self.adds.append(f"{self.name(attribute)} {self.value(attribute, amount)}")
        return self

    def append_events(self, events: Sequence[Event], previous_arn: str | None = None) -> _Update:
        encoded = []
        for event in events:
            encoded.append(_encode_event(event, previous_arn))
            if event.type == EventType.ATTEMPT_STARTED and event.details.get("executionArn"):
                previous_arn = str(event.details["executionArn"])
        name = self.name("ev")
        self.sets.append(f"{name} = list_append({name}, {self.value('ev', encoded)})")
        return self

    def when(self, condition: str) -> _Update:
        self.conditions.append(condition)
        return self

    def when_run(self, run: int) -> _Update:
        return self.when(f"{self.name('r')} = {self.value('run', run)}")

    def when_status_in(self, statuses: frozenset[Status] | set[Status]) -> _Update:
        labels = ", ".join(self.value(f"st{index}", status.value) for index, status in enumerate(sorted(statuses)))
        return self.when(f"{self.name('s')} IN ({labels})")

    def when_lease_free(self, now: int) -> _Update:
        lease = self.name("l")
        return self.when(f"(attribute_not_exists({lease}) OR {lease} < {self.value('now', now)})")

    def when_no_attempt_in_flight(self, now: int) -> _Update:
        lease = self.name("al")
        return self.when(f"(attribute_not_exists({lease}) OR {lease} < {self.value('attemptNow', now)})")

    def when_owner(self, *tokens: str) -> _Update:
        labels = ", ".join(self.value(f"own{index}", token) for index, token in enumerate(dict.fromkeys(tokens)))
        return self.when(f"{self.name('o')} IN ({labels})")

    def when_attempts(self, attempts: int) -> _Update:
        return self.when(f"{self.name('a')} = {self.value('expectedAttempts', attempts)}")

    def expression(self) -> str:
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.adds:
            parts.append("ADD " + ", ".join(self.adds))
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        return " ".join(parts)


class MessageRepository:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _client(self) -> Any:
        return aws.client("dynamodb")

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, operation)(TableName=self.table_name, **kwargs)
        except ClientError as error:
            if _is_condition_failure(error):
                raise
            raise _storage_failure(error) from error
        except BotoCoreError as error:
            raise _storage_failure(error) from error

    def _key(self, key: MessageKey, sort_key: str = HEAD_SORT_KEY) -> dict[str, Any]:
        return to_item({"pk": key.partition_key, "sk": sort_key})

    def _apply(self, key: MessageKey, update: _Update) -> MessageHead | None:
        """Run one conditional update of the head; the new head, or None when a condition fails."""
        kwargs: dict[str, Any] = {
            "Key": self._key(key),
            "UpdateExpression": update.expression(),
            "ConditionExpression": " AND ".join(["attribute_exists(pk)", *update.conditions]),
            "ExpressionAttributeNames": update.names,
            "ReturnValues": "ALL_NEW",
        }
        if update.values:
            kwargs["ExpressionAttributeValues"] = to_item(update.values)
        try:
            response = self._call("update_item", **kwargs)
        except ClientError as error:
            if _is_condition_failure(error):
                return None
            raise
        item = from_item(response["Attributes"])
        if _events_bytes(item.get("ev", [])) > HEAD_EVENTS_MAX_BYTES:
            self._move_old_events(key, item)
        return _decode_head(item)

    def _move_old_events(self, key: MessageKey, item: dict[str, Any]) -> None:
        """Move the head's older events to the next overflow item, in one transaction with the head
        (conditional on the head's events being exactly those read, so no appended event is lost and
        no two writers move the same ones). Best effort: when it fails, a later write moves them."""
        stored = item["ev"]
        kept = _kept_count(stored)
        if kept >= len(stored):
            return
        events = _decode_events(stored)  # every execution ARN filled in
        moved, retained = _encode_events(events[:-kept]), _encode_events(events[-kept:])
        seq = int(item.get("eo", 0))
        overflow = {"pk": key.partition_key, "sk": f"{OVERFLOW_SORT_PREFIX}{seq:08d}", "ev": moved, "ttl": item["ttl"]}
        update = _Update().assign("ev", retained).assign("eo", seq + 1)
        update.when(f"size({update.name('ev')}) = {update.value('count', len(stored))}")
        chunks = update.name("eo")
        if seq:
            update.when(f"{chunks} = {update.value('seq', seq)}")
        else:
            update.when(f"attribute_not_exists({chunks})")
        head_update = {
            "TableName": self.table_name,
            "Key": self._key(key),
            "UpdateExpression": update.expression(),
            "ConditionExpression": " AND ".join(["attribute_exists(pk)", *update.conditions]),
            "ExpressionAttributeNames": update.names,
            "ExpressionAttributeValues": to_item(update.values),
        }
        put = {
            "TableName": self.table_name,
            "Item": to_item(overflow),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        try:
            self._client.transact_write_items(TransactItems=[{"Put": put}, {"Update": head_update}])
        except (ClientError, BotoCoreError) as error:
            logger.warning(
                "Could not move a head's older events out; a later write does",
                extra={**key.to_dict(), "error": type(error).__name__, "reason": str(error)[:300]},
            )

    def get_history(
        self, head: MessageHead, before_chunk: int | None = None, page_events: int = HISTORY_PAGE_EVENTS
    ) -> tuple[tuple[Event, ...], int | None]:
        """A page of a message's history, oldest first: the newest page (ending with the head's latest
        event) or, with `before_chunk`, the page before that overflow item; and the cursor of the page
        before it (None when this page starts with the first event)."""
        stored: list[dict[str, Any]] = [] if before_chunk is not None else _encode_events(head.events)
        chunk = (head.overflow_chunks if before_chunk is None else min(before_chunk, head.overflow_chunks)) - 1
        while chunk >= 0 and len(stored) < page_events:
            response = self._call(
                "query",
                KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
                ExpressionAttributeValues=to_item(
                    {
                        ":pk": head.key.partition_key,
                        ":first": f"{OVERFLOW_SORT_PREFIX}{0:08d}",
                        ":last": f"{OVERFLOW_SORT_PREFIX}{chunk:08d}",
                    }
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
        return _decode_events(stored), (chunk + 1 if chunk >= 0 else None)

    # -- reads ---------------------------------------------------------------------------------

    def get_head(self, key: MessageKey, consistent: bool = True) -> MessageHead | None:
        response = self._call("get_item", Key=self._key(key), ConsistentRead=consistent)
        item = response.get("Item")
        return _decode_head(from_item(item)) if item else None

    def get_message(self, key: MessageKey, consistent: bool = True) -> StoredMessage | None:
        """The head and the content, in one batch read."""
        found = self._batch_get([self._key(key), self._key(key, CONTENT_SORT_KEY)], consistent=consistent)
        head = next((item for item in found if item["sk"] == HEAD_SORT_KEY), None)
        content = next((item for item in found if item["sk"] == CONTENT_SORT_KEY), None)
        if head is None or content is None:
            return None
        return StoredMessage(_decode_head(head), _decode_content(content))

    def get_heads(self, keys: Sequence[MessageKey]) -> list[MessageHead]:
        """Heads by key, in the order of `keys` (missing ones left out)."""
        found = {item["pk"]: item for item in self._batch_get([self._key(key) for key in keys], consistent=False)}
        return [_decode_head(found[key.partition_key]) for key in keys if key.partition_key in found]

    def get_messages(self, keys: Sequence[MessageKey]) -> list[StoredMessage]:
        """Heads with their content, in the order of `keys` (missing ones left out)."""
        wanted = [self._key(key, sort) for key in keys for sort in (HEAD_SORT_KEY, CONTENT_SORT_KEY)]
        found = {(item["pk"], item["sk"]): item for item in self._batch_get(wanted, consistent=False)}
        messages = []
        for key in keys:
            head = found.get((key.partition_key, HEAD_SORT_KEY))
            content = found.get((key.partition_key, CONTENT_SORT_KEY))
            if head is not None and content is not None:
                messages.append(StoredMessage(_decode_head(head), _decode_content(content)))
        return messages

    def _batch_get(self, keys: list[dict[str, Any]], consistent: bool) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {
                self.table_name: {"Keys": keys[start : start + 100], "ConsistentRead": consistent}
            }
            while pending:
                try:
                    response = self._client.batch_get_item(RequestItems=pending)
                except (ClientError, BotoCoreError) as error:
                    raise _storage_failure(error) from error
                found.extend(from_item(item) for item in response.get("Responses", {}).get(self.table_name, []))
                pending = response.get("UnprocessedKeys") or {}
        return found

    def _query_keys(
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
            response = self._call("query", **kwargs)
            yield [_message_key(from_item(item)) for item in response.get("Items", [])]
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    def iter_due(self, shard: str, due_before: int, page_size: int = 100) -> Iterator[MessageKey]:
        """Every due head of a shard, page by page (the reconciler walks them all each round)."""
        for page in self.iter_due_pages(shard, due_before, page_size):
            yield from page

    def iter_due_pages(self, shard: str, due_before: int, page_size: int = 100) -> Iterator[list[MessageKey]]:
        """The due heads of a shard, earliest due first, a page at a time."""
        condition = "dueShard = :shard AND dueAt <= :now"
        yield from self._query_keys(DUE_INDEX, condition, {":shard": shard, ":now": due_before}, page_size)

    # -- sender activity (the reconciler's sweep) ----------------------------------------------

    def note_sender_active(self, sender_id: str, at: datetime, ttl: int) -> None:
        """Record that `sender_id` accepted a message in `at`'s minute (a plain put: idempotent)."""
        item = {"pk": _activity_partition(at), "sk": sender_id, "ttl": ttl}
        self._call("put_item", Item=to_item(item))

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
                response = self._call("query", **kwargs)
                for item in map(from_item, response.get("Items", [])):
                    if item["sk"] not in seen:
                        seen.add(item["sk"])
                        yield str(item["sk"])
                start = response.get("LastEvaluatedKey")
                if not start:
                    break
            minute += 1

    def iter_accepted(self, sender_id: str, since: datetime, until: datetime) -> Iterator[MessageKey]:
        """A sender's messages accepted in [since, until], oldest first (the bySender index, keys only)."""
        values = {":pk": _sender_partition(sender_id), ":since": iso(since), ":until": f"{iso(until)}~"}
        for page in self._query_keys(SENDER_INDEX, "spk = :pk AND ssk BETWEEN :since AND :until", values):
            yield from page

    def list_by_status(
        self, sender_id: str, status: Status, limit: int, cursor: dict[str, Any] | None
    ) -> tuple[list[StoredMessage], dict[str, Any] | None]:
        """A sender's messages in one status, newest first, and the cursor of the next page.

        "Newest" is when a FAILED, CANCELLED or PAUSED message entered its status (the sparse index's
        sort key, which bulk replay's window also reads) and the acceptance time for the others.

        FAILED and CANCELLED come from their sparse index partition; the others from
        the sender's index of every message, filtered, so a page may hold fewer than `limit`.
        Raises ValueError for a cursor that does not continue this very listing.
        """
        if status in SPARSE_STATUSES:
            index, keys, partition = STATUS_INDEX, ("gsi1pk", "gsi1sk"), _status_partition(sender_id, status)
        else:
            index, keys, partition = SENDER_INDEX, ("spk", "ssk"), _sender_partition(sender_id)
        if cursor is not None and (
            set(cursor) != {"pk", "sk", *keys}
            or not all(isinstance(value, str) and 0 < len(value) <= MAX_CURSOR_VALUE for value in cursor.values())
            or cursor[keys[0]] != partition
        ):
            raise ValueError("not a cursor of this listing")
        kwargs: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": f"{keys[0]} = :pk",
            "ExpressionAttributeValues": to_item({":pk": partition}),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            kwargs["ExclusiveStartKey"] = to_item(cursor)
        response = self._call("query", **kwargs)
        message_keys = [_message_key(from_item(item)) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        messages = [message for message in self.get_messages(message_keys) if message.head.status == status]
        return messages, (from_item(last) if last else None)

    def query_index(
        self, partition: str, start_key: dict[str, Any] | None = None, prefix: str | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Items of one `byStatus` partition (the senders' own items use it too), read from the table;
        with `prefix`, only those whose sort key starts with it."""
        condition, values = "gsi1pk = :pk", {":pk": partition}
        if prefix is not None:
            condition, values = f"{condition} AND begins_with(gsi1sk, :prefix)", {**values, ":prefix": prefix}
        kwargs: dict[str, Any] = {
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": to_item(values),
        }
        if start_key:
            kwargs["ExclusiveStartKey"] = to_item(start_key)
        response = self._call("query", **kwargs)
        keys = [to_item({"pk": item["pk"], "sk": item["sk"]}) for item in map(from_item, response.get("Items", []))]
        found = {(item["pk"], item["sk"]): item for item in self._batch_get(keys, consistent=False)}
        ordered = [found[(k["pk"]["S"], k["sk"]["S"])] for k in keys if (k["pk"]["S"], k["sk"]["S"]) in found]
        last = response.get("LastEvaluatedKey")
        return ordered, (from_item(last) if last else None)

    # -- ingest ----------------------------------------------------------------------------------

    def put_content(self, key: MessageKey, message: dict[str, Any], content_hash: str, ttl: int) -> bool:
        """Write the content once; False when it exists with other content (a different message).

        Written before the head, so a head never exists without its content. Never rewritten: a
        twin or a retried step with identical content finds it and goes on.
        """
        item = {"pk": key.partition_key, "sk": CONTENT_SORT_KEY, "ttl": ttl, "h": content_hash}
        try:
            self._call(
                "put_item",
                Item={**to_item(item), "z": {"B": _encode_content(message)}},
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            existing: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            if existing is None:  # older emulators do not return the item
                existing = self._call("get_item", Key=self._key(key, CONTENT_SORT_KEY)).get("Item", {})
            return bool(from_item(existing or {}).get("h") == content_hash)
        return True

    def create_head(
        self, key: MessageKey, content_hash: str, request_id: str, accepted_at: datetime, ttl: int, received: Event
    ) -> bool:
        """The dedup point: a conditional put, so of concurrent twins exactly one wins."""
        item = {
            "pk": key.partition_key,
            "sk": HEAD_SORT_KEY,
            "s": Status.PENDING.value,
            "r": 0,
            "a": 0,
            "acc": epoch_ms(accepted_at),
            "u": epoch_ms(accepted_at),
            "ttl": ttl,
            "h": content_hash,
            "rq": request_id,
            "ev": [_encode_event(received)],
            # The one index entry of the success path, written here and never re-keyed.
            "spk": _sender_partition(key.sender_id),
            "ssk": _index_sort(key, accepted_at),
        }
        try:
            self._call("put_item", Item=to_item(item), ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    def record_enqueue_failed(self, key: MessageKey, event: Event, request_id: str, due_at: int) -> None:
        """ENQUEUE_FAILED and a due time (the reconciler re-drives it); once per request."""
        update = _Update().append_events([event]).assign("ef", request_id)
        update.assign("dueAt", due_at).assign("dueShard", key.due_shard)
        ef = update.name("ef")
        update.when(f"(attribute_not_exists({ef}) OR {ef} <> {update.value('ef', request_id)})")
        self._apply(key, update)

    def set_due(self, key: MessageKey, due_at: int) -> None:
        """Move the time after which the reconciler looks at the message."""
        self._apply(key, _Update().assign("dueAt", due_at).assign("dueShard", key.due_shard))

    # -- delivery --------------------------------------------------------------------------------

    def claim(
        self,
        head: MessageHead,
        lease_until: int,
        now: int,
        enqueued: Event | None,
        started: Event | None,
        interrupted: Event | None = None,
        due_at: int | None = None,
        owner: str | None = None,
        attempt_lease_until: int | None = None,
    ) -> MessageHead | None:
        """Take the single delivery lease of the head's run; None when another run holds it or it is over.

        The same write records ENQUEUED (the run's first claim), hands the message to `owner` (the
        fencing token every later write of this delivery must show) and, for an inline first
        attempt, counts the attempt and records ATTEMPT_STARTED (after the result of an interrupted
        one). Refused while an earlier attempt may still be sending. A claim is progress: the
        reconciler's re-drive count starts again.
        """
        update = _Update().assign("l", lease_until)
        update.when_run(head.run).when_status_in(IN_FLIGHT_STATUSES).when_lease_free(now).when_no_attempt_in_flight(now)
        update.when_attempts(head.attempts).remove("rd")
        if owner is not None:
            update.assign("o", owner)
        events = [event for event in (enqueued, interrupted, started) if event is not None]
        if enqueued is not None:
            update.assign("q", head.run)
        if due_at is not None:
            update.assign("dueAt", due_at).assign("dueShard", head.key.due_shard)
        if started is not None:
            self._count_attempt(update, head, started, interrupted, attempt_lease_until)
        if events:
            update.append_events(events, _last_attempt_arn(head))
        return self._apply(head.key, update)

    @staticmethod
    def _count_attempt(
        update: _Update, head: MessageHead, started: Event, interrupted: Event | None, attempt_lease_until: int | None
    ) -> None:
        update.add("a", 1).assign("s", Status.DELIVERING.value).assign("u", epoch_ms(started.at))
        if attempt_lease_until is not None:
            update.assign("al", attempt_lease_until)
        if interrupted is not None:
            update.assign("n", head.attempts)

    def begin_attempt(
        self,
        head: MessageHead,
        started: Event,
        interrupted: Event | None,
        owner: tuple[str, str],
        attempt_lease_until: int,
    ) -> MessageHead | None:
        """Count an attempt and record ATTEMPT_STARTED; None when the run is stale, it was counted or
        another run owns the message.

        `owner` is (the token the run was handed, the run's own token): the first attempt of a run
        takes the message over under its own token, so a second run started under the same name
        (an at-least-once start) is fenced out before it sends.
        """
        update = _Update().when_run(head.run).when_status_in(IN_FLIGHT_STATUSES).when_attempts(head.attempts)
        # An unresolved attempt under this owner is this run's own earlier one (its result write
        # failed): the run went on, so it is recorded as interrupted. Other owners wait for `al`.
        update.when_owner(*owner).assign("o", owner[1]).remove("rd")
        self._count_attempt(update, head, started, interrupted, attempt_lease_until)
        update.append_events([e for e in (interrupted, started) if e is not None], _last_attempt_arn(head))
        return self._apply(head.key, update)

    def _when_attempt_open(self, update: _Update, run: int, attempt: int, owner: str | None) -> _Update:
        """The attempt's result is not recorded yet. A cancel that landed while it was in flight does
        not hide it: the result is still recorded (after the CANCELLED event)."""
        results = update.name("n")
        update.when_run(run).when_attempts(attempt)
        if owner is not None:
            update.when_owner(owner)
        update.when_status_in({Status.DELIVERING, Status.CANCELLED})
        return update.when(f"(attribute_not_exists({results}) OR {results} < {update.value('attempt', attempt)})")

    def record_failed_attempt(
        self, key: MessageKey, run: int, failed: Event, retry_reason: str | None, due_at: int, owner: str | None = None
    ) -> MessageHead | None:
        """Record attempt `failed.attempt`'s failure; with `retry_reason`, the message is RETRYING.

        RETRYING gives the message a due time (the lease's end), so the reconciler watches every
        retry. None when the result was already recorded (a retried step) or another run owns it.
        A message cancelled meanwhile stays CANCELLED (its history shows the result).
        """
        assert failed.attempt is not None
        update = self._when_attempt_open(_Update(), run, failed.attempt, owner)
        update.assign("n", failed.attempt).assign("u", epoch_ms(failed.at)).append_events([failed]).remove("al")
        if retry_reason is not None:
            # RETRYING only from DELIVERING: a message cancelled meanwhile stays CANCELLED.
            update.when(f"{update.name('s')} = {update.value('delivering', Status.DELIVERING.value)}")
            update.assign("s", Status.RETRYING.value).assign("err", retry_reason)
            update.set_once("dueAt", due_at).set_once("dueShard", key.due_shard)
        result = self._apply(key, update)
        if result is None and retry_reason is not None:
            # Cancelled while the attempt was in flight: record the result, keep CANCELLED.
            return self.record_failed_attempt(key, run, failed, None, due_at, owner)
        return result

    def finish_delivered(
        self, key: MessageKey, run: int, delivered: Event, owner: str | None = None
    ) -> MessageHead | None:
        """DELIVERED with its event; None when the attempt's result is already recorded or another
        run owns the message. The target took it, so a cancel that landed meanwhile is overtaken:
        the history shows CANCELLED, then DELIVERED, and the status says what the target did."""
        assert delivered.attempt is not None
        update = self._when_attempt_open(_Update(), run, delivered.attempt, owner)
        update.assign("s", Status.DELIVERED.value).assign("n", delivered.attempt).assign("u", epoch_ms(delivered.at))
        update.append_events([delivered]).remove("l", "al", "dueAt", "dueShard", "gsi1pk", "gsi1sk", "err")
        return self._apply(key, update)

    def finish_failed(
        self, head: MessageHead, reason: str, events: Sequence[Event], owner: tuple[str, ...] = ()
    ) -> MessageHead | None:
        """FAILED with its events (an interrupted attempt's result first); None when already over, or
        when `owner` is given and another run owns the message."""
        at = events[-1].at
        update = _Update().when_run(head.run).when_status_in(UNFINISHED_STATUSES)
        if owner:
            update.when_owner(*owner)
        update.assign("s", Status.FAILED.value).assign("err", reason).assign("u", epoch_ms(at)).assign(
            "n", head.attempts
        )
        update.when_attempts(head.attempts)
        update.assign("gsi1pk", _status_partition(head.key.sender_id, Status.FAILED))
        update.assign("gsi1sk", f"{epoch_ms(at)}#{head.key.message_id}")
        update.append_events(events).remove("l", "al", "dueAt", "dueShard")
        return self._apply(head.key, update)

    def hand_to_slow_lane(
        self,
        head: MessageHead,
        lease_until: int,
        name: str,
        moved: Event,
        owner: tuple[str, ...] = (),
        new_owner: str | None = None,
    ) -> MessageHead | None:
        """Give the lease, the ownership (`new_owner`: the slow-lane run's token) and the reconciler's
        due time to the slow-lane run `name`; once per run name, and only from the run that owns it."""
        update = _Update().when_run(head.run).when_status_in(IN_FLIGHT_STATUSES)
        if owner:
            update.when_owner(*owner)
        slow = update.name("sl")
        update.when(f"(attribute_not_exists({slow}) OR {slow} <> {update.value('sl', name)})")
        update.assign("sl", name).assign("o", new_owner or name).assign("l", lease_until).assign(
            "dueAt", lease_until
        ).assign("dueShard", head.key.due_shard)
        update.append_events([moved])
        return self._apply(head.key, update)

    def release_claim(self, key: MessageKey, run: int, owner: tuple[str, ...] = (), due_at: int | None = None) -> None:
        """Give the lease back (a run that gives up, a crashed inline attempt): only its owner may, and
        with `due_at` the reconciler looks at the message then (a run's end leaves nothing idle)."""
        # Its attempt (if any) has ended too: whoever gives the lease back is no longer sending.
        update = _Update().remove("l", "al").when_run(run).when_status_in(IN_FLIGHT_STATUSES)
        if owner:
            update.when_owner(*owner)
        if due_at is not None:
            update.assign("dueAt", due_at).assign("dueShard", key.due_shard)
        self._apply(key, update)

    def hold_while_waiting(self, head: MessageHead, due_at: int) -> MessageHead | None:
        """A message waiting for its target's limit (nothing sent): the reconciler leaves it alone until
        `due_at`, since the queue holds it. Waiting is not trouble: it never counts as a re-drive."""
        update = _Update().when_run(head.run).when_status_in(IN_FLIGHT_STATUSES)
        return self._apply(head.key, update.assign("dueAt", due_at).assign("dueShard", head.key.due_shard))

    # -- operations ------------------------------------------------------------------------------

    def start_replay(
        self,
        head: MessageHead,
        replayed: Event,
        due_at: int,
        statuses: frozenset[Status] = REPLAYABLE_STATUSES,
        expected_sort: str | None = None,
    ) -> MessageHead | None:
        """Begin a new run of a finished message (one of `statuses`); None when it is in another status.

        The run starts with a budget of its own (`ab`: the attempts so far), no owner and no re-drives.
        `expected_sort`: only while its status index sort key is still this one, i.e. it is still
        in the very failure (or cancellation) a bulk replay job matched, not in a later one.
        """
        update = _Update().when_run(head.run).when_status_in(statuses)
        if expected_sort is not None:
            update.when(f"{update.name('gsi1sk')} = {update.value('seenSort', expected_sort)}")
        update.assign("s", Status.PENDING.value).add("r", 1).assign("u", epoch_ms(replayed.at)).assign(
            "n", head.attempts
        )
        update.assign("ab", head.attempts).assign("dueAt", due_at).assign("dueShard", head.key.due_shard)
        update.append_events([replayed]).remove("l", "al", "o", "rd", "err", "gsi1pk", "gsi1sk", "sl")
        return self._apply(head.key, update)

    def cancel(self, head: MessageHead, cancelled: Event) -> MessageHead | None:
        """Stop a message that has not finished; None when it has (or moved on meanwhile).

        An attempt in flight keeps its owner and attempt lease: its result is still recorded."""
        update = _Update().when_run(head.run).when_status_in(UNFINISHED_STATUSES)
        update.assign("s", Status.CANCELLED.value).assign("u", epoch_ms(cancelled.at))
        update.assign("gsi1pk", _status_partition(head.key.sender_id, Status.CANCELLED))
        update.assign("gsi1sk", f"{epoch_ms(cancelled.at)}#{head.key.message_id}")
        update.append_events([cancelled]).remove("l", "dueAt", "dueShard")
        return self._apply(head.key, update)

    def note_redrive(self, head: MessageHead, redriven: Event, due_at: int, now: int) -> MessageHead | None:
        """Count a reconciler re-drive, push the due time out and record REDRIVEN; None if it moved on.

        The lease is checked again here, not only on the head the reconciler read: a run claimed
        in between keeps its lease (removing it would let a queued duplicate start a second run).
        The owner is cleared: a run that outlived its lease is fenced out of every later write.
        """
        update = _Update().when_run(head.run).when_status_in(IN_FLIGHT_STATUSES).when_lease_free(now + 1)
        update.when_no_attempt_in_flight(now)
        redrives = update.name("rd")
        if head.redrives:
            update.when(f"{redrives} = {update.value('redrives', head.redrives)}")
        else:
            update.when(f"attribute_not_exists({redrives})")
        update.assign("dueAt", due_at).assign("dueShard", head.key.due_shard).add("rd", 1).remove("l", "o")
        update.append_events([redriven])
        return self._apply(head.key, update)

    # -- circuit breaker (functions/services/target_health.py) ------------------------------------

    def pause(
        self,
        head: MessageHead,
        paused: Event,
        origin: str,
        due_at: int,
        lease_free_at: int | None = None,
        owner: tuple[str, ...] = (),
    ) -> MessageHead | None:
        """PAUSED (its target's circuit is open): attempts kept, lease and ownership given back, listed
        under the target's paused range, due at `due_at` (its expiry or the next probe). None when it
        moved on.

        `lease_free_at`: only when no run holds the lease then (the dispatcher); `owner`: a lane
        pauses only a message it owns.
        """
        update = _Update().when_run(head.run).when_status_in(IN_FLIGHT_STATUSES).when_attempts(head.attempts)
        if lease_free_at is not None:
            update.when_lease_free(lease_free_at).when_no_attempt_in_flight(lease_free_at)
        if owner:
            update.when_owner(*owner)
        update.assign("s", Status.PAUSED.value).assign("u", epoch_ms(paused.at))
        update.assign("gsi1pk", _status_partition(head.key.sender_id, Status.PAUSED))
        update.assign("gsi1sk", _paused_sort(origin, paused.at, head.key))
        update.assign("dueAt", due_at).assign("dueShard", head.key.due_shard)
        update.append_events([paused]).remove("l", "o")
        return self._apply(head.key, update)

    def resume(self, head: MessageHead, resumed: Event, due_at: int) -> MessageHead | None:
        """PAUSED -> PENDING with RESUMED, watched by the reconciler until the queue's dispatch claims
        it (like a replay); None when it is not PAUSED any more."""
        update = _Update().when_run(head.run).when_status_in({Status.PAUSED})
        update.assign("s", Status.PENDING.value).assign("u", epoch_ms(resumed.at))
        update.assign("dueAt", due_at).assign("dueShard", head.key.due_shard)
        update.append_events([resumed]).remove("gsi1pk", "gsi1sk", "l", "o", "rd")
        return self._apply(head.key, update)

    def iter_paused(self, sender_id: str, origin: str, page_size: int = 100) -> Iterator[list[MessageHead]]:
        """A target's PAUSED messages, a page of heads at a time (oldest pause first)."""
        condition = "gsi1pk = :pk AND begins_with(gsi1sk, :origin)"
        values = {":pk": _status_partition(sender_id, Status.PAUSED), ":origin": f"{origin}#"}
        for keys in self._query_keys(STATUS_INDEX, condition, values, page_size):
            heads = [head for head in self.get_heads(keys) if head.status == Status.PAUSED]
            if heads:
                yield heads

    def clear_due(self, key: MessageKey) -> None:
        """Take a finished message off the reconciler's index (a leftover due time)."""
        self._apply(key, _Update().remove("dueAt", "dueShard"))
