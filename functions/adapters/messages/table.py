"""The relay table itself: calls, batch reads, index reads and item (de)serialisation.

Every store of the table (messages, senders, targets, target health, replay jobs) goes through a
`Table`, so AWS failures are translated into domain errors in one place and AWS text never
reaches a caller.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from functions.adapters import aws
from functions.contract.indexes import STATUS_INDEX
from functions.domain.exceptions import StorageError, StorageUnavailable

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


def is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def storage_failure(error: Exception) -> Exception:
    """Translate an AWS failure into a domain error; AWS text never reaches a caller."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in _TRANSIENT_CODES:
            return StorageUnavailable(f"DynamoDB is unavailable ({code})")
        return StorageError(f"DynamoDB refused the request ({code})")
    return StorageUnavailable(f"DynamoDB could not be reached ({type(error).__name__})")


class UpdateExpression(Protocol):
    """What `Table.update` reads of an update (messages/updates.UpdateBuilder is one)."""

    names: dict[str, str]
    values: dict[str, Any]
    conditions: list[str]

    def expression(self) -> str: ...


class Table:
    """One DynamoDB table, by name (the client is the process's shared one: functions/adapters/aws.py)."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def client(self) -> Any:
        return aws.client("dynamodb")

    def call(self, operation: str, **kwargs: Any) -> Any:
        """One call on this table. A failed condition raises as it is (the caller decides what it
        means); every other failure raises StorageError or StorageUnavailable."""
        try:
            return getattr(self.client, operation)(TableName=self.table_name, **kwargs)
        except ClientError as error:
            if is_condition_failure(error):
                raise
            raise storage_failure(error) from error
        except BotoCoreError as error:
            raise storage_failure(error) from error

    def update(self, key: dict[str, Any], update: UpdateExpression, must_exist: bool = True) -> dict[str, Any] | None:
        """One conditional UpdateItem (`update`'s expression and conditions; with `must_exist`, only of
        an item that exists): the item after it, or None when a condition failed."""
        conditions = (["attribute_exists(pk)"] if must_exist else []) + update.conditions
        kwargs: dict[str, Any] = {
            "Key": key,
            "UpdateExpression": update.expression(),
            "ExpressionAttributeNames": update.names,
            "ReturnValues": "ALL_NEW",
        }
        if conditions:
            kwargs["ConditionExpression"] = " AND ".join(conditions)
        if update.values:
            kwargs["ExpressionAttributeValues"] = to_item(update.values)
        try:
            response = self.call("update_item", **kwargs)
        except ClientError as error:
            if is_condition_failure(error):
                return None
            raise
        return from_item(response["Attributes"])

    def batch_get(self, keys: list[dict[str, Any]], consistent: bool) -> list[dict[str, Any]]:
        """The items of `keys` (serialised keys), in no particular order (missing ones left out)."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {
                self.table_name: {"Keys": keys[start : start + 100], "ConsistentRead": consistent}
            }
            while pending:
                try:
                    response = self.client.batch_get_item(RequestItems=pending)
                except (ClientError, BotoCoreError) as error:
                    raise storage_failure(error) from error
                found.extend(from_item(item) for item in response.get("Responses", {}).get(self.table_name, []))
                pending = response.get("UnprocessedKeys") or {}
        return found

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
        response = self.call("query", **kwargs)
        keys = [to_item({"pk": item["pk"], "sk": item["sk"]}) for item in map(from_item, response.get("Items", []))]
        found = {(item["pk"], item["sk"]): item for item in self.batch_get(keys, consistent=False)}
        ordered = [found[(k["pk"]["S"], k["sk"]["S"])] for k in keys if (k["pk"]["S"], k["sk"]["S"]) in found]
        last = response.get("LastEvaluatedKey")
        return ordered, (from_item(last) if last else None)
