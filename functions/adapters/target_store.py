"""Data access for targets: a sender's limits (`sk = LIMITS`) and a limited target's live flow state
(`sk = FLOW`), both under `pk = TARGET#<sender>#<origin>` (see functions/services/targets.py).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from functions.adapters.messages.table import Table, from_item, is_condition_failure, to_item
from functions.contract.key_prefixes import SENDER_TARGETS_PREFIX, TARGET_PREFIX
from functions.domain.flow import FLOW_TTL_SECONDS, FlowState, Target
from functions.domain.origins import DEFAULT_ORIGIN

LIMITS_SORT_KEY = "LIMITS"
FLOW_SORT_KEY = "FLOW"


def target_partition(sender_id: str, origin: str) -> str:
    """Where a target's items live: its limits, its flow state and its health."""
    return f"{TARGET_PREFIX}{sender_id}#{origin}"


def _index_partition(sender_id: str) -> str:
    return f"{SENDER_TARGETS_PREFIX}{sender_id}"


def _target_from(item: dict[str, Any]) -> Target:
    rate = item.get("ratePerSecond")
    concurrency = item.get("maxConcurrency")
    return Target(
        origin=str(item["origin"]),
        rate_per_second=float(rate) if rate is not None else None,
        max_concurrency=int(concurrency) if concurrency is not None else None,
        updated_at=item.get("updatedAt"),
    )


def _flow_from(item: dict[str, Any] | None) -> FlowState | None:
    if not item or "ver" not in item:
        return None
    return FlowState(
        version=int(item["ver"]),
        tokens=int(item.get("tk", 0)) / 1000,
        refilled_ms=int(item.get("at", 0)),
        leases={str(k): int(v) for k, v in (item.get("ls") or {}).items()},
    )


class TargetRepository:
    """Target limits (`sk = LIMITS`) and flow state (`sk = FLOW`) under `TARGET#<sender>#<origin>`."""

    def __init__(self, table_name: str) -> None:
        self.table = Table(table_name)

    def _call(self, operation: str, **kwargs: Any) -> Any:
        return self.table.call(operation, **kwargs)

    @staticmethod
    def _key(sender_id: str, origin: str, sort_key: str) -> dict[str, Any]:
        return to_item({"pk": target_partition(sender_id, origin), "sk": sort_key})

    # -- limits

    def put(self, sender_id: str, target: Target) -> Target:
        item = {
            "pk": target_partition(sender_id, target.origin),
            "sk": LIMITS_SORT_KEY,
            "senderId": sender_id,
            "origin": target.origin,
            "ratePerSecond": target.rate_per_second,
            "maxConcurrency": target.max_concurrency,
            "updatedAt": target.updated_at,
            "gsi1pk": _index_partition(sender_id),
            "gsi1sk": target.origin,
        }
        self._call("put_item", Item=to_item(item))
        return target

    def get(self, sender_id: str, origin: str) -> Target | None:
        response = self._call("get_item", Key=self._key(sender_id, origin, LIMITS_SORT_KEY), ConsistentRead=True)
        return _target_from(from_item(response["Item"])) if "Item" in response else None

    def get_with_default(self, sender_id: str, origin: str) -> tuple[Target | None, Target | None]:
        """The target's own limits and the sender's default, in one request."""
        keys = [self._key(sender_id, origin, LIMITS_SORT_KEY), self._key(sender_id, DEFAULT_ORIGIN, LIMITS_SORT_KEY)]
        found = {item["origin"]: _target_from(item) for item in self.table.batch_get(keys, consistent=False)}
        return found.get(origin), found.get(DEFAULT_ORIGIN)

    def of_sender(self, sender_id: str) -> list[Target]:
        targets: list[Target] = []
        start: dict[str, Any] | None = None
        while True:
            page, start = self.table.query_index(_index_partition(sender_id), start_key=start)
            targets.extend(_target_from(item) for item in page if item.get("sk") == LIMITS_SORT_KEY)
            if start is None:
                return sorted(targets, key=lambda target: target.origin)

    def delete(self, sender_id: str, origin: str) -> bool:
        """Forget a target's limits (and its flow state); False when it had none."""
        response = self._call("delete_item", Key=self._key(sender_id, origin, LIMITS_SORT_KEY), ReturnValues="ALL_OLD")
        self._call("delete_item", Key=self._key(sender_id, origin, FLOW_SORT_KEY))
        return "Attributes" in response

    # -- flow state

    def get_flow(self, sender_id: str, origin: str) -> FlowState | None:
        response = self._call("get_item", Key=self._key(sender_id, origin, FLOW_SORT_KEY), ConsistentRead=True)
        return _flow_from(from_item(response["Item"]) if "Item" in response else None)

    def get_flows(self, sender_id: str, origins: list[str]) -> dict[str, FlowState]:
        keys = [self._key(sender_id, origin, FLOW_SORT_KEY) for origin in origins]
        flows: dict[str, FlowState] = {}
        for item in self.table.batch_get(keys, consistent=False) if keys else []:
            state = _flow_from(item)
            if state is not None:
                flows[str(item["pk"]).split("#", 2)[2]] = state
        return flows

    def write_flow(
        self, sender_id: str, origin: str, expected_version: int, state: FlowState
    ) -> tuple[bool, FlowState | None]:
        """Write `state` if the stored version is still `expected_version` (0: no state yet).

        Returns (True, state) when written, else (False, the state found) for the caller to retry.
        """
        condition = "attribute_not_exists(ver)" if expected_version == 0 else "ver = :expected"
        values: dict[str, Any] = {
            ":ver": state.version,
            ":tk": round(state.tokens * 1000),
            ":at": state.refilled_ms,
            ":ls": state.leases,
            ":ttl": state.refilled_ms // 1000 + FLOW_TTL_SECONDS,
        }
        if expected_version:
            values[":expected"] = expected_version
        try:
            self._call(
                "update_item",
                Key=self._key(sender_id, origin, FLOW_SORT_KEY),
                UpdateExpression="SET ver = :ver, tk = :tk, #at = :at, ls = :ls, #ttl = :ttl",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#at": "at", "#ttl": "ttl"},
                ExpressionAttributeValues=to_item(values),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            item: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            if item is not None:
                return False, _flow_from(from_item(item))
            return False, self.get_flow(sender_id, origin)
        return True, state

    def release_lease(self, sender_id: str, origin: str, permit_id: str) -> FlowState | None:
        """Give a slot back (one write; the version moves, so no acquirer re-adds it)."""
        try:
            response = self._call(
                "update_item",
                Key=self._key(sender_id, origin, FLOW_SORT_KEY),
                UpdateExpression="REMOVE ls.#permit ADD ver :one",
                ConditionExpression="attribute_exists(ver)",
                ExpressionAttributeNames={"#permit": permit_id},
                ExpressionAttributeValues=to_item({":one": 1}),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if is_condition_failure(error):
                return None  # the target was deleted meanwhile
            raise
        return _flow_from(from_item(response["Attributes"]))


# -- flow control -------------------------------------------------------------------------------------
