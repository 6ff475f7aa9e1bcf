"""Senders and their API tokens: the data-access layer and the plain logic around it.

A token is shown once and stored only as its SHA-256 (tokens carry 256 bits of randomness, so a
fast hash is enough). A sender may hold several tokens at once: rotating issues a new one and
lets the old ones live for a grace period, so clients switch without downtime.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from functions.adapters.messages.table import Table, from_item, is_condition_failure, to_item
from functions.contract.key_prefixes import SENDER_PREFIX, SENDER_TOKENS_PREFIX, SENDERS_PARTITION, TOKEN_PREFIX
from functions.domain.clock import iso_seconds
from functions.domain.exceptions import SenderExists, SenderUnknown

# What every API token starts with (the partition key prefix of its hash is TOKEN_PREFIX).
API_TOKEN_PREFIX = "rly_"
SENDER_SORT_KEY = "SENDER"
TOKEN_SORT_KEY = "TOKEN"
ACTIVE = "active"
DISABLED = "disabled"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the outcome of checking a token."""

    sender_id: str
    active: bool
    rate_limit: float | None = None
    burst_limit: int | None = None
    # The API Gateway key of the sender's usage plan (per-sender throttling on AWS).
    api_key: str | None = None


class SenderRepository:
    """Sender records (`SENDER#<id>`) and token hashes (`TOKEN#<sha256>`) in the relay table."""

    def __init__(self, table_name: str) -> None:
        self.table = Table(table_name)

    def _call(self, operation: str, **kwargs: Any) -> Any:
        return self.table.call(operation, **kwargs)

    def get(self, sender_id: str) -> dict[str, Any] | None:
        response = self._call(
            "get_item", Key=to_item({"pk": f"{SENDER_PREFIX}{sender_id}", "sk": SENDER_SORT_KEY}), ConsistentRead=True
        )
        return from_item(response["Item"]) if "Item" in response else None

    def list_all(self) -> list[dict[str, Any]]:
        senders: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while True:
            page, start = self.table.query_index(SENDERS_PARTITION, start_key=start)
            senders.extend(page)
            if start is None:
                return senders

    def create(
        self, sender_id: str, limits: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        record = {
            "pk": f"{SENDER_PREFIX}{sender_id}",
            "sk": SENDER_SORT_KEY,
            "senderId": sender_id,
            "status": ACTIVE,
            "createdAt": iso_seconds(_now()),
            "gsi1pk": SENDERS_PARTITION,
            "gsi1sk": sender_id,
            **({"limits": limits} if limits else {}),
            **(extra or {}),
        }
        try:
            self._call("put_item", Item=to_item(record), ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if is_condition_failure(error):
                raise SenderExists(f"sender '{sender_id}' exists already") from None
            raise
        return record

    def delete(self, sender_id: str) -> None:
        """Remove a sender's record (undoing a creation that could not finish)."""
        self._call("delete_item", Key=to_item({"pk": f"{SENDER_PREFIX}{sender_id}", "sk": SENDER_SORT_KEY}))

    def set_status(self, sender_id: str, status: str) -> None:
        try:
            self._call(
                "update_item",
                Key=to_item({"pk": f"{SENDER_PREFIX}{sender_id}", "sk": SENDER_SORT_KEY}),
                UpdateExpression="SET #status = :status",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item({":status": status}),
            )
        except ClientError as error:
            if is_condition_failure(error):
                raise SenderUnknown(f"no sender '{sender_id}'") from None
            raise

    def add_token(self, sender_id: str) -> str:
        token = new_token()
        self._call(
            "put_item",
            Item=to_item(
                {
                    "pk": f"{TOKEN_PREFIX}{hash_token(token)}",
                    "sk": TOKEN_SORT_KEY,
                    "senderId": sender_id,
                    "createdAt": iso_seconds(_now()),
                    # Lets `senders list` show a sender's tokens by their first characters.
                    "hint": token[: len(API_TOKEN_PREFIX) + 4],
                    "gsi1pk": f"{SENDER_TOKENS_PREFIX}{sender_id}",
                    "gsi1sk": iso_seconds(_now()),
                }
            ),
        )
        return token

    def delete_token(self, token: str) -> None:
        """Remove a token (undoing a creation that could not finish)."""
        self._call("delete_item", Key=to_item({"pk": f"{TOKEN_PREFIX}{hash_token(token)}", "sk": TOKEN_SORT_KEY}))

    def tokens(self, sender_id: str) -> list[dict[str, Any]]:
        tokens: list[dict[str, Any]] = []
        start: dict[str, Any] | None = None
        while True:
            page, start = self.table.query_index(f"{SENDER_TOKENS_PREFIX}{sender_id}", start_key=start)
            tokens.extend(page)
            if start is None:
                return tokens

    def expire_tokens(self, sender_id: str, after: datetime, keep: str | None = None) -> int:
        """Let a sender's tokens (except `keep`) stop working at `after`; TTL removes them later."""
        count = 0
        for token in self.tokens(sender_id):
            if keep is not None and token["pk"] == f"{TOKEN_PREFIX}{hash_token(keep)}":
                continue
            if "expiresAt" in token and token["expiresAt"] <= iso_seconds(after):
                continue
            self._call(
                "update_item",
                Key=to_item({"pk": token["pk"], "sk": TOKEN_SORT_KEY}),
                UpdateExpression="SET expiresAt = :at, #ttl = :ttl",
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues=to_item({":at": iso_seconds(after), ":ttl": int(after.timestamp()) + 86_400}),
            )
            count += 1
        return count

    def authenticate(self, token: str) -> Principal | None:
        """The sender a token belongs to, or None when the token is unknown or expired."""
        if not token.startswith(API_TOKEN_PREFIX) or len(token) > 200:
            return None
        response = self._call(
            "get_item", Key=to_item({"pk": f"{TOKEN_PREFIX}{hash_token(token)}", "sk": TOKEN_SORT_KEY})
        )
        if "Item" not in response:
            return None
        record = from_item(response["Item"])
        if "expiresAt" in record and record["expiresAt"] <= iso_seconds(_now()):
            return None
        sender = self.get(record["senderId"])
        if sender is None:
            return None
        limits = sender.get("limits") or {}
        return Principal(
            sender_id=sender["senderId"],
            active=sender.get("status") == ACTIVE,
            rate_limit=limits.get("ratePerSecond"),
            burst_limit=limits.get("burst"),
            api_key=sender.get("apiKey"),
        )


def rotation_deadline(grace_hours: float) -> datetime:
    return _now() + timedelta(hours=grace_hours)
