"""Data access for targets: a sender's limits (`sk = LIMITS`, `pk = TARGET#<sender>#<origin>`) and a
limited target's flow items, each under a partition key of its own so the rate and the slots spread
over partitions (DynamoDB takes at most 1,000 WCU/s on one key): its sub-buckets
`TARGET#<sender>#<origin>#B<n>` and its concurrency slots `TARGET#<sender>#<origin>#S<n>`, all with
`sk = FLOW` (the arithmetic: functions/domain/flow.py; its use: functions/services/targeting/flow_control.py).

Every flow write is one small conditional `UpdateItem` (the delivery functions may update target
items, never delete them): a slot given back has its lease removed and expires with its TTL.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from functions.adapters.messages.table import Table, from_item, is_condition_failure, to_item
from functions.contract.key_prefixes import SENDER_TARGETS_PREFIX, TARGET_PREFIX
from functions.domain.flow import FLOW_TTL_SECONDS, Bucket, Enqueue, FlowSnapshot, Mark, Share, Take, Target
from functions.domain.web.origins import DEFAULT_ORIGIN

LIMITS_SORT_KEY = "LIMITS"
FLOW_SORT_KEY = "FLOW"
# The partition key suffixes of a target's flow items: `#B<n>` its sub-buckets, `#S<n>` its slots.
BUCKET_INFIX = "#B"
SLOT_INFIX = "#S"
# Stored names (short: every write is billed by the item's size): a sub-bucket's GCRA times (µs),
# a slot's lease end (ms) and holder.
_FULL_AT, _QUEUE, _MARKS, _UNTIL, _HOLDER = "fa", "wq", "rm", "su", "pid"
# Deleting a target removes the flow items it has, this many at a time (one DeleteItem each).
_DELETE_THREADS = 8


def target_partition(sender_id: str, origin: str) -> str:
    """Where a target's items live: its limits and its health (its flow items: `flow_partition`)."""
    return f"{TARGET_PREFIX}{sender_id}#{origin}"


def flow_partition(sender_id: str, origin: str, infix: str, index: int) -> str:
    return f"{target_partition(sender_id, origin)}{infix}{index}"


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


def _bucket_from(item: dict[str, Any] | None) -> Bucket:
    item = item or {}
    return Bucket(int(item.get(_FULL_AT, 0)), int(item.get(_QUEUE, 0)), int(item.get(_MARKS, 0)))


def _ttl(now_us: int) -> int:
    return now_us // 1_000_000 + FLOW_TTL_SECONDS


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
        """Forget a target's limits and the flow items they had; False when it had none."""
        response = self._call("delete_item", Key=self._key(sender_id, origin, LIMITS_SORT_KEY), ReturnValues="ALL_OLD")
        if "Attributes" not in response:
            return False
        target = _target_from(from_item(response["Attributes"]))
        # Only the items that exist: a read is cheaper than a write, and most slots were given back.
        found = self.table.batch_get(self._flow_keys(sender_id, target), consistent=True)
        keys = [to_item({"pk": item["pk"], "sk": item["sk"]}) for item in found]
        with ThreadPoolExecutor(max_workers=_DELETE_THREADS) as pool:
            list(pool.map(lambda key: self._call("delete_item", Key=key), keys))
        return True

    # -- flow items

    @staticmethod
    def _flow_key(sender_id: str, origin: str, infix: str, index: int) -> dict[str, Any]:
        return to_item({"pk": flow_partition(sender_id, origin, infix, index), "sk": FLOW_SORT_KEY})

    def _flow_keys(self, sender_id: str, target: Target) -> list[dict[str, Any]]:
        """Every flow item a target's limits use: its sub-buckets, then its slots."""
        buckets = Share.of(target).count if target.rate_per_second is not None else 0
        slots = target.max_concurrency or 0
        return [self._flow_key(sender_id, target.origin, BUCKET_INFIX, n) for n in range(buckets)] + [
            self._flow_key(sender_id, target.origin, SLOT_INFIX, n) for n in range(slots)
        ]

    def _conditional(self, key: dict[str, Any], **kwargs: Any) -> tuple[bool, dict[str, Any]]:
        """One conditional UpdateItem: (True, the item after it) or (False, the item that failed it)."""
        try:
            response = self._call(
                "update_item", Key=key, ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD", **kwargs
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            item: dict[str, Any] = error.response.get("Item") or {}  # type: ignore[assignment]
            return False, from_item(item)
        return True, from_item(response.get("Attributes") or {})

    def _update_bucket(
        self,
        sender_id: str,
        origin: str,
        index: int,
        update: str,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
    ) -> tuple[bool, Bucket]:
        """One conditional update of sub-bucket `index`: (applied, the sub-bucket after it, or as
        found when the condition failed it)."""
        applied, item = self._conditional(
            self._flow_key(sender_id, origin, BUCKET_INFIX, index),
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(values),
        )
        return applied, _bucket_from(item)

    def take_token(self, sender_id: str, origin: str, index: int, take: Take) -> tuple[bool, Bucket]:
        """One permit from sub-bucket `index` as `take` planned it: (taken, the sub-bucket as found)."""
        names = {"#fa": _FULL_AT, "#ttl": "ttl"}
        values: dict[str, Any] = {":now": take.now_us, ":ttl": _ttl(take.now_us)}
        if take.from_full:
            update = "SET #fa = :next, #ttl = :ttl"
            condition = "(attribute_not_exists(#fa) OR #fa <= :now)"
            values[":next"] = take.now_us + take.interval_us
        else:
            update = "SET #ttl = :ttl ADD #fa :interval"
            condition = "#fa BETWEEN :now AND :latest"
            values.update({":interval": take.interval_us, ":latest": take.latest_full_at_us})
        if take.most_marks_us is not None:
            names["#rm"] = _MARKS
            condition += " AND (attribute_not_exists(#rm) OR #rm <= :marks)"
            values[":marks"] = take.most_marks_us
        if take.spent_mark_us:
            names["#rm"] = _MARKS
            update += ", #rm :unmark" if "ADD" in update else " ADD #rm :unmark"
            values[":unmark"] = -take.spent_mark_us
        return self._update_bucket(sender_id, origin, index, update, condition, names, values)

    def give_back(self, sender_id: str, origin: str, index: int, interval_us: int) -> None:
        """Undo a permit just taken (its attempt found no slot): as if it had never been taken."""
        self._conditional(
            self._flow_key(sender_id, origin, BUCKET_INFIX, index),
            UpdateExpression="ADD #fa :back",
            ConditionExpression="attribute_exists(#fa)",
            ExpressionAttributeNames={"#fa": _FULL_AT},
            ExpressionAttributeValues=to_item({":back": -interval_us}),
        )

    def enqueue(self, sender_id: str, origin: str, index: int, plan: Enqueue, now_us: int) -> tuple[bool, Bucket]:
        """Count a fresh taker in as waiting on sub-bucket `index`: (counted, the sub-bucket after or as found)."""
        values: dict[str, Any] = {":after": plan.after_us, ":ttl": _ttl(now_us)}
        if plan.after_tail:
            update, condition = "SET #ttl = :ttl ADD #wq :interval", "#wq >= :after"
            values[":interval"] = plan.interval_us
        else:
            update, condition = "SET #wq = :turn, #ttl = :ttl", "(attribute_not_exists(#wq) OR #wq < :after)"
            values[":turn"] = plan.turn_us
        return self._update_bucket(sender_id, origin, index, update, condition, {"#wq": _QUEUE, "#ttl": "ttl"}, values)

    def mark_retry(self, sender_id: str, origin: str, index: int, mark: Mark) -> tuple[bool, Bucket]:
        """Leave a waiting retry's mark on sub-bucket `index`: (marked, the sub-bucket after or as found)."""
        values: dict[str, Any] = {":now": mark.now_us, ":ttl": _ttl(mark.now_us)}
        if mark.live:
            update, condition = "SET #ttl = :ttl ADD #rm :mark", "#rm BETWEEN :now AND :most"
            values.update({":mark": mark.mark_us, ":most": mark.most_marks_us})
        else:
            update, condition = "SET #rm = :first, #ttl = :ttl", "(attribute_not_exists(#rm) OR #rm <= :now)"
            values[":first"] = mark.now_us + mark.mark_us
        return self._update_bucket(sender_id, origin, index, update, condition, {"#rm": _MARKS, "#ttl": "ttl"}, values)

    def take_slot(
        self, sender_id: str, origin: str, slot: int, holder: str, now_ms: int, until_ms: int
    ) -> tuple[bool, int]:
        """Hold slot `slot` until `until_ms` if it is free (never held, given back, or its lease ran
        out): (taken, when the lease found ends)."""
        taken, item = self._conditional(
            self._flow_key(sender_id, origin, SLOT_INFIX, slot),
            UpdateExpression="SET #su = :until, #pid = :holder, #ttl = :ttl",
            ConditionExpression="attribute_not_exists(#su) OR #su <= :now",
            ExpressionAttributeNames={"#su": _UNTIL, "#pid": _HOLDER, "#ttl": "ttl"},
            ExpressionAttributeValues=to_item(
                {":until": until_ms, ":holder": holder, ":now": now_ms, ":ttl": until_ms // 1000 + FLOW_TTL_SECONDS}
            ),
        )
        return taken, int(item.get(_UNTIL, 0))

    def release_slot(self, sender_id: str, origin: str, slot: int, holder: str) -> bool:
        """Give a slot back, if `holder` still holds it (not when its lease ran out and another took it)."""
        released, _ = self._conditional(
            self._flow_key(sender_id, origin, SLOT_INFIX, slot),
            UpdateExpression="REMOVE #su, #pid",
            ConditionExpression="#pid = :holder",
            ExpressionAttributeNames={"#su": _UNTIL, "#pid": _HOLDER},
            ExpressionAttributeValues=to_item({":holder": holder}),
        )
        return released

    def flow_snapshots(self, sender_id: str, targets: list[Target]) -> dict[str, FlowSnapshot]:
        """The flow items of limited targets, by origin (`GET /targets`), in batch reads."""
        keys = [key for target in targets for key in self._flow_keys(sender_id, target)]
        found = {str(item["pk"]): item for item in self.table.batch_get(keys, consistent=False)} if keys else {}
        snapshots: dict[str, FlowSnapshot] = {}
        for target in targets:
            buckets = Share.of(target).count if target.rate_per_second is not None else 0
            bucket_items = [
                found.get(flow_partition(sender_id, target.origin, BUCKET_INFIX, n)) for n in range(buckets)
            ]
            untils = [
                int((found.get(flow_partition(sender_id, target.origin, SLOT_INFIX, n)) or {}).get(_UNTIL, 0))
                for n in range(target.max_concurrency or 0)
            ]
            snapshots[target.origin] = FlowSnapshot(
                tuple(_bucket_from(item) if item is not None else None for item in bucket_items), tuple(untils)
            )
        return snapshots
