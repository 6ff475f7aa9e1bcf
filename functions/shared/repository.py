"""The data-access layer over the single DynamoDB table. Nothing above this module calls boto3.

Layout (one partition per message, everything expires together through `ttl`):
- `pk = MSG#<senderId>#<messageId>, sk = MSG`: the head (status, attempts, timestamps, hash).
  Kept small on purpose: DynamoDB charges every update by the item's size.
- `sk = EVT#<run>#<slot>#<phase><TYPE>`: immutable events in lifecycle order. The RECEIVED event
  carries the message content, so the payload is written once and never rewritten.
"""

from __future__ import annotations

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


def _to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in values.items() if value is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_plain(inner) for inner in value]
    return value


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
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
            self._call("put_item", Item=_to_item(item), ConditionExpression=condition, **kwargs)
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True

    # -- reads ---------------------------------------------------------------------------------

    def get_head(self, key: MessageKey, consistent: bool = True) -> dict[str, Any] | None:
        response = self._call(
            "get_item",
            Key=_to_item({"pk": key.partition_key, "sk": HEAD_SORT_KEY}),
            ConsistentRead=consistent,
        )
        item = response.get("Item")
        return _from_item(item) if item else None

    def get_message(self, key: MessageKey) -> StoredMessage | None:
        """The head and every event of a message, in lifecycle order (one query)."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": _to_item({":pk": key.partition_key}),
            "ConsistentRead": True,
        }
        while True:
            response = self._call("query", **kwargs)
            items.extend(_from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        head = next((item for item in items if item["sk"] == HEAD_SORT_KEY), None)
        if head is None:
            return None
        events = [item for item in items if item["sk"].startswith(EVENT_PREFIX)]
        return StoredMessage(head=head, events=events)

    def find_due(self, shard: str, due_before: int, limit: int = 100) -> list[MessageKey]:
        """Heads whose `dueAt` has passed in one shard of the sparse `due` index."""
        response = self._call(
            "query",
            IndexName="due",
            KeyConditionExpression="dueShard = :shard AND dueAt <= :now",
            ExpressionAttributeValues=_to_item({":shard": shard, ":now": due_before}),
            Limit=limit,
        )
        keys = []
        for item in response.get("Items", []):
            plain = _from_item(item)
            _, sender_id, message_id = plain["pk"].split("#", 2)
            keys.append(MessageKey(sender_id, message_id))
        return keys

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
                Item=_to_item(item),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            existing: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            if existing is None:  # older emulators do not return the item
                response = self._call("get_item", Key=_to_item({"pk": item["pk"], "sk": item["sk"]}))
                existing = response.get("Item", {})
            return bool(_from_item(existing).get("contentHash") == content_hash)
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
            Key=_to_item({"pk": key.partition_key, "sk": HEAD_SORT_KEY}),
            UpdateExpression="SET dueAt = :due, dueShard = :shard",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues=_to_item({":due": due_at, ":shard": key.due_shard}),
        )
