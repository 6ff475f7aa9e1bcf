"""The data-access layer over the single DynamoDB table. Nothing above this module calls boto3.

Layout (one partition per message, everything expires together through `ttl`):
- `pk = MSG#<senderId>#<messageId>, sk = MSG`: the head (status, attempts, timestamps, hash).
  Kept small on purpose: DynamoDB charges every update by the item's size.
- `sk = EVT#<run>#<slot>#<phase><TYPE>`: immutable events in lifecycle order. The RECEIVED event
  carries the message content, so the payload is written once and never rewritten.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from functions.shared import aws
from functions.shared.exceptions import StorageError, StorageUnavailable
from functions.shared.model import (
    EVENT_PREFIX,
    HEAD_SORT_KEY,
    EventType,
    MessageKey,
    event_sort_key,
    status_index_key,
)

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


def _storable(value: Any) -> Any:
    # DynamoDB numbers are decimals; boto3 refuses floats rather than round them silently.
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {key: _storable(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_storable(inner) for inner in value]
    return value


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(_storable(value)) for name, value in values.items() if value is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
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


@dataclass
class StoredMessage:
    head: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def content(self) -> dict[str, Any]:
        """The message as received (from the RECEIVED event)."""
        for event in self.events:
            if event.get("type") == EventType.RECEIVED:
                return dict(event.get("message", {}))
        return {}


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

    def _conditional_put(self, item: dict[str, Any], condition: str, **kwargs: Any) -> bool:
        """Put an item if `condition` holds; False when it does not (the item is someone else's)."""
        try:
            self._call("put_item", Item=to_item(item), ConditionExpression=condition, **kwargs)
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    # -- reads ---------------------------------------------------------------------------------

    def get_head(self, key: MessageKey, consistent: bool = True) -> dict[str, Any] | None:
        response = self._call(
            "get_item",
            Key=to_item({"pk": key.partition_key, "sk": HEAD_SORT_KEY}),
            ConsistentRead=consistent,
        )
        item = response.get("Item")
        return from_item(item) if item else None

    def get_message(self, key: MessageKey) -> StoredMessage | None:
        """The head and every event of a message, in lifecycle order (one query)."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": to_item({":pk": key.partition_key}),
            "ConsistentRead": True,
        }
        while True:
            response = self._call("query", **kwargs)
            items.extend(from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        head = next((item for item in items if item["sk"] == HEAD_SORT_KEY), None)
        if head is None:
            return None
        events = [item for item in items if item["sk"].startswith(EVENT_PREFIX)]
        return StoredMessage(head=head, events=events)

    def iter_due(self, shard: str, due_before: int, page_size: int = 100) -> Iterator[MessageKey]:
        """Every due head of a shard, page by page (the reconciler walks them all each round)."""
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "IndexName": "due",
                "KeyConditionExpression": "dueShard = :shard AND dueAt <= :now",
                "ExpressionAttributeValues": to_item({":shard": shard, ":now": due_before}),
                "Limit": page_size,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            response = self._call("query", **kwargs)
            for item in response.get("Items", []):
                _, sender_id, message_id = from_item(item)["pk"].split("#", 2)
                yield MessageKey(sender_id, message_id)
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    # -- writes --------------------------------------------------------------------------------

    def record_received(
        self,
        key: MessageKey,
        message: dict[str, Any],
        content_hash: str,
        request_id: str,
        at: str,
        ttl: int,
    ) -> bool:
        """Write the RECEIVED event with the message content; False when it exists with other content.

        Written before the head, so a head never exists without its content. The event is never
        rewritten: a twin or a retried step with identical content finds it and goes on.
        """
        item = {
            "pk": key.partition_key,
            "sk": event_sort_key(EventType.RECEIVED, run=0, slot=0),
            "type": EventType.RECEIVED.value,
            "at": at,
            "ttl": ttl,
            "contentHash": content_hash,
            "requestId": request_id,
            "message": message,
        }
        try:
            self._call(
                "put_item",
                Item=to_item(item),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            existing: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            if existing is None:  # older emulators do not return the item
                response = self._call("get_item", Key=to_item({"pk": item["pk"], "sk": item["sk"]}))
                existing = response.get("Item", {})
            return bool(from_item(existing).get("contentHash") == content_hash)
        return True

    def create_head(self, head: dict[str, Any]) -> bool:
        """The dedup point: a conditional put, so of concurrent twins exactly one wins."""
        item = dict(head)
        item["sk"] = HEAD_SORT_KEY
        item["gsi1pk"] = status_index_key(head["senderId"], head["status"])
        item["gsi1sk"] = f"{head['acceptedAt']}#{head['messageId']}"
        return self._conditional_put(item, "attribute_not_exists(pk)")

    def append_event(
        self,
        key: MessageKey,
        event_type: EventType,
        at: str,
        ttl: int,
        run: int = 0,
        slot: int = 0,
        suffix: str = "",
        **details: Any,
    ) -> bool:
        """Append an immutable event; False when this very event was already recorded."""
        item = {
            "pk": key.partition_key,
            "sk": event_sort_key(event_type, run=run, slot=slot, suffix=suffix),
            "type": event_type.value,
            "at": at,
            "ttl": ttl,
            **details,
        }
        return self._conditional_put(item, "attribute_not_exists(sk)")

    def set_due(self, key: MessageKey, due_at: int) -> None:
        """Move the time after which the reconciler considers the message stuck."""
        self._call(
            "update_item",
            Key=to_item({"pk": key.partition_key, "sk": HEAD_SORT_KEY}),
            UpdateExpression="SET dueAt = :due, dueShard = :shard",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=to_item({":due": due_at, ":shard": key.due_shard}),
        )

    # -- delivery --------------------------------------------------------------------------------

    def _update_head(
        self,
        key: MessageKey,
        update: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """A conditional update of the head; None when the condition does not hold."""
        kwargs: dict[str, Any] = {
            "Key": to_item({"pk": key.partition_key, "sk": HEAD_SORT_KEY}),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": to_item(values),
            "ReturnValues": "ALL_NEW",
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        try:
            response = self._call("update_item", **kwargs)
        except ClientError as error:
            if _is_condition_failure(error):
                return None
            raise
        return from_item(response["Attributes"])

    def get_head_and_content(self, key: MessageKey) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """The head and the received content, in one consistent batch read."""
        keys = [
            {"pk": key.partition_key, "sk": HEAD_SORT_KEY},
            {"pk": key.partition_key, "sk": event_sort_key(EventType.RECEIVED, run=0, slot=0)},
        ]
        try:
            response = self._client.batch_get_item(
                RequestItems={self.table_name: {"Keys": [to_item(k) for k in keys], "ConsistentRead": True}}
            )
        except (ClientError, BotoCoreError) as error:
            raise _storage_failure(error) from error
        head: dict[str, Any] | None = None
        content: dict[str, Any] = {}
        for item in response.get("Responses", {}).get(self.table_name, []):
            plain = from_item(item)
            if plain["sk"] == HEAD_SORT_KEY:
                head = plain
            else:
                content = dict(plain.get("message", {}))
        return head, content

    def claim_delivery(self, key: MessageKey, run: int, execution_name: str, lease_until: int, now: int) -> bool:
        """Take the single delivery lease of a run; False when another run holds it or it is over.

        A redelivered queue message therefore never starts a second concurrent run, and never one
        for a terminal message.
        """
        updated = self._update_head(
            key,
            # dueAt stays as stored: moving it would rewrite the `due` index entry on every message;
            # the reconciler skips a leased message and only then pushes its due time out.
            "SET leaseUntil = :lease, executionName = :name",
            "#run = :run AND NOT (#status IN (:delivered, :failed, :cancelled)) "
            "AND (attribute_not_exists(leaseUntil) OR leaseUntil < :now)",
            {
                ":lease": lease_until,
                ":name": execution_name,
                ":run": run,
                ":now": now,
                ":delivered": "DELIVERED",
                ":failed": "FAILED",
                ":cancelled": "CANCELLED",
            },
            {"#run": "run", "#status": "status"},
        )
        return updated is not None

    def extend_claim(self, key: MessageKey, run: int, lease_until: int, execution_name: str) -> None:
        """Hand the lease to the slow lane's run (or keep it for a long wait)."""
        self._update_head(
            key,
            "SET leaseUntil = :lease, dueAt = :lease, executionName = :name",
            "#run = :run",
            {":lease": lease_until, ":run": run, ":name": execution_name},
            {"#run": "run"},
        )

    def release_claim(self, key: MessageKey, run: int) -> None:
        self._update_head(key, "REMOVE leaseUntil", "#run = :run", {":run": run}, {"#run": "run"})

    def begin_attempt(self, key: MessageKey, run: int, at: str, execution_arn: str) -> dict[str, Any] | None:
        """Count an attempt atomically and mark the message DELIVERING; None if the run is stale."""
        return self._update_head(
            key,
            "ADD attempts :one SET #status = :delivering, updatedAt = :at, executionArn = :arn",
            "#run = :run AND #status IN (:pending, :retrying, :delivering)",
            {
                ":one": 1,
                ":delivering": "DELIVERING",
                ":pending": "PENDING",
                ":retrying": "RETRYING",
                ":at": at,
                ":arn": execution_arn,
                ":run": run,
            },
            {"#status": "status", "#run": "run"},
        )

    def record_retrying(self, key: MessageKey, run: int, at: str, last_error: str) -> None:
        # dueAt stays the run's lease: the reconciler only steps in when the whole run is overdue.
        self._update_head(
            key,
            "SET #status = :retrying, updatedAt = :at, lastError = :error",
            "#run = :run AND #status = :delivering",
            {
                ":retrying": "RETRYING",
                ":delivering": "DELIVERING",
                ":at": at,
                ":error": last_error,
                ":run": run,
            },
            {"#status": "status", "#run": "run"},
        )

    def finish(
        self, key: MessageKey, run: int, status: str, at: str, last_error: str | None = None
    ) -> dict[str, Any] | None:
        """Move a run's message to a terminal status and take it off the reconciler's index.

        None when the message is already terminal or was replayed meanwhile (a retried step).
        """
        stamp = "deliveredAt" if status == "DELIVERED" else "failedAt" if status == "FAILED" else "cancelledAt"
        update = (
            f"SET #status = :status, updatedAt = :at, {stamp} = :at, gsi1pk = :gsi "
            + (", lastError = :error " if last_error else "")
            # A delivered message's earlier failures stay in its events, not in its status.
            + ("REMOVE dueAt, dueShard, leaseUntil" + (", lastError" if status == "DELIVERED" else ""))
        )
        values: dict[str, Any] = {
            ":status": status,
            ":at": at,
            ":run": run,
            ":gsi": status_index_key(key.sender_id, status),
            ":delivered": "DELIVERED",
            ":failed": "FAILED",
            ":cancelled": "CANCELLED",
        }
        if last_error:
            values[":error"] = last_error
        return self._update_head(
            key,
            update,
            "#run = :run AND NOT (#status IN (:delivered, :failed, :cancelled))",
            values,
            {"#status": "status", "#run": "run"},
        )

    # -- operations ------------------------------------------------------------------------------

    def query_index(
        self,
        partition: str,
        limit: int | None = None,
        start_key: dict[str, Any] | None = None,
        newest_first: bool = False,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Items of one `byStatus` partition (a keys-only index: the items are read from the table)."""
        kwargs: dict[str, Any] = {
            "IndexName": "byStatus",
            "KeyConditionExpression": "gsi1pk = :pk",
            "ExpressionAttributeValues": to_item({":pk": partition}),
            "ScanIndexForward": not newest_first,
        }
        if limit:
            kwargs["Limit"] = limit
        if start_key:
            kwargs["ExclusiveStartKey"] = to_item(start_key)
        response = self._call("query", **kwargs)
        keys = [{"pk": from_item(item)["pk"], "sk": from_item(item)["sk"]} for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return self.batch_get(keys), (from_item(last) if last else None)

    def batch_get(self, keys: list[dict[str, str]]) -> list[dict[str, Any]]:
        """Items by key, in the order of `keys` (missing ones left out)."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {self.table_name: {"Keys": [to_item(k) for k in keys[start : start + 100]]}}
            while pending:
                try:
                    response = self._client.batch_get_item(RequestItems=pending)
                except (ClientError, BotoCoreError) as error:
                    raise _storage_failure(error) from error
                for item in response.get("Responses", {}).get(self.table_name, []):
                    plain = from_item(item)
                    found[(plain["pk"], plain["sk"])] = plain
                pending = response.get("UnprocessedKeys") or {}
        return [found[(k["pk"], k["sk"])] for k in keys if (k["pk"], k["sk"]) in found]

    def list_by_status(
        self, sender_id: str, status: str, limit: int, start_key: dict[str, Any] | None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """A sender's heads in one status, newest first; returns the next page's start key.

        In-flight statuses share an index partition, so a page of them may hold fewer than `limit`.
        """
        heads, last = self.query_index(status_index_key(sender_id, status), limit, start_key, newest_first=True)
        return [head for head in heads if head.get("status") == status], last

    def start_replay(self, key: MessageKey, at: str, due_at: int) -> dict[str, Any] | None:
        """Begin a new run of a finished message (DELIVERED or FAILED); None when it is not finished."""
        return self._update_head(
            key,
            "SET #status = :pending, #run = #run + :one, updatedAt = :at, dueAt = :due, dueShard = :shard, "
            "gsi1pk = :gsi REMOVE leaseUntil, deliveredAt, failedAt, lastError",
            "#status IN (:delivered, :failed)",
            {
                ":pending": "PENDING",
                ":one": 1,
                ":at": at,
                ":due": due_at,
                ":shard": key.due_shard,
                ":gsi": status_index_key(key.sender_id, "PENDING"),
                ":delivered": "DELIVERED",
                ":failed": "FAILED",
            },
            {"#status": "status", "#run": "run"},
        )

    def cancel(self, key: MessageKey, at: str) -> dict[str, Any] | None:
        """Stop a message that has not finished; None when it already has."""
        return self._update_head(
            key,
            "SET #status = :cancelled, updatedAt = :at, cancelledAt = :at, gsi1pk = :gsi "
            "REMOVE dueAt, dueShard, leaseUntil",
            "#status IN (:pending, :delivering, :retrying)",
            {
                ":cancelled": "CANCELLED",
                ":at": at,
                ":gsi": status_index_key(key.sender_id, "CANCELLED"),
                ":pending": "PENDING",
                ":delivering": "DELIVERING",
                ":retrying": "RETRYING",
            },
            {"#status": "status"},
        )

    def note_redrive(self, key: MessageKey, run: int, due_at: int, now: int) -> dict[str, Any] | None:
        """Count a reconciler re-drive and push the due time out; None if the message moved on.

        The lease is checked again here, not only on the head the reconciler read: a run claimed
        in between keeps its lease (removing it would let a queued duplicate start a second run).
        """
        return self._update_head(
            key,
            "SET dueAt = :due ADD redrives :one REMOVE leaseUntil",
            "#run = :run AND #status IN (:pending, :delivering, :retrying) "
            "AND (attribute_not_exists(leaseUntil) OR leaseUntil <= :now)",
            {
                ":due": due_at,
                ":one": 1,
                ":run": run,
                ":now": now,
                ":pending": "PENDING",
                ":delivering": "DELIVERING",
                ":retrying": "RETRYING",
            },
            {"#run": "run", "#status": "status"},
        )

    def clear_due(self, key: MessageKey) -> None:
        """Take a finished message off the reconciler's index (a leftover due time)."""
        self._call(
            "update_item",
            Key=to_item({"pk": key.partition_key, "sk": HEAD_SORT_KEY}),
            UpdateExpression="REMOVE dueAt, dueShard",
        )
