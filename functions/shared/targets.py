"""Targets: a sender's per-target delivery limits, their data access, and the flow control that holds them.

A target is the origin (`scheme://host[:port]`) of a message's targetUrl; it belongs to a sender,
and one sender's targets never affect another's. Items (in the relay table):

- `pk = TARGET#<sender>#<origin>`, `sk = LIMITS`: the limits a sender set (`PUT /targets`); also
  in the sparse `byStatus` index under `TARGETS#<sender>`, so a sender's targets are one query.
  Origin `*` holds the sender's default for every target without limits of its own.
- `pk = TARGET#<sender>#<origin>`, `sk = FLOW`: the live flow state of a limited target: a token
  bucket (rate) and the leases of the attempts in flight (concurrency). Written only for targets
  with limits, by one conditional update per permit (optimistic, on a version number), so the
  limits hold across any number of concurrent Lambdas. A lease runs out on its own (an attempt's
  longest time plus a margin), so a crashed holder cannot keep its slot.

Which limits apply: the target's own item, else the sender's `*` item, else the deployment's
defaults (`relay.targets` in cdk.json; null = unlimited). A warm function keeps what it read for
`CONFIG_MAX_AGE_SECONDS` (one read per origin per 30 s): a changed limit takes effect within that
time. A target with no limits costs nothing per attempt: no read, no write.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from botocore.exceptions import ClientError

from functions.shared.exceptions import FieldError, MessageInvalid, RelayError, TargetNotFound
from functions.shared.json_text import loads_strict
from functions.shared.key_prefixes import TARGET_PREFIX
from functions.shared.origins import DEFAULT_ORIGIN, origin_of_id, parse_origin, target_id
from functions.shared.repository import MessageRepository, from_item, to_item

LIMITS_SORT_KEY = "LIMITS"
FLOW_SORT_KEY = "FLOW"
# How long a warm function trusts the limits it read (a changed limit applies within this time).
CONFIG_MAX_AGE_SECONDS = 30.0
# A lease outlives the attempt's longest time by this much (the deliver function's own overhead).
LEASE_MARGIN_SECONDS = 10
# When every slot is taken, look again after this long (a release may come at any moment).
SLOT_WAIT_SECONDS = 0.5
# Conditional writes lost to concurrent holders before `acquire` answers Wait.
MAX_WRITE_TRIES = 5
# An idle flow item disappears (DynamoDB TTL) this long after its last write.
FLOW_TTL_SECONDS = 86_400


# -- limits -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A target's limits; None means no limit of that kind."""

    origin: str
    rate_per_second: float | None = None
    max_concurrency: int | None = None
    updated_at: str | None = None

    @property
    def unlimited(self) -> bool:
        return self.rate_per_second is None and self.max_concurrency is None

    @property
    def burst(self) -> float:
        """The bucket's size: one second's worth of tokens, and at least one."""
        return max(1.0, self.rate_per_second or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": target_id(self.origin),
            "origin": self.origin,
            "ratePerSecond": self.rate_per_second,
            "maxConcurrency": self.max_concurrency,
            "updatedAt": self.updated_at,
        }


@lru_cache(maxsize=1)
def _target_schema() -> Any:
    """Loaded on first use: the delivery functions import this module but never validate."""
    import json

    from jsonschema import Draft202012Validator

    from functions.shared.config import SCHEMA_DIR

    schema = json.loads((SCHEMA_DIR / "target.schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def json_body(raw: str | None) -> Any:
    """A request's JSON body; a body that is not JSON is a 400 naming the whole body."""
    try:
        return loads_strict(raw or "")
    except ValueError:
        raise MessageInvalid([FieldError("$", "the body must be a JSON object")], "The request is invalid.") from None


def validate_target(body: Any, now: datetime | None = None) -> Target:
    """A `PUT /targets` body as a Target, or MessageInvalid naming every offending field."""
    from functions.shared.validation import _schema_errors

    details = _schema_errors(list(_target_schema().iter_errors(body)))
    origin = ""
    if not details:
        try:
            origin = parse_origin(str(body["origin"]))
        except ValueError as error:
            details.append(FieldError("$.origin", str(error)))
    if details:
        raise MessageInvalid(details, "The target is invalid.")
    rate = body.get("ratePerSecond")
    concurrency = body.get("maxConcurrency")
    return Target(
        origin=origin,
        rate_per_second=float(rate) if rate is not None else None,
        max_concurrency=int(concurrency) if concurrency is not None else None,
        updated_at=_iso(now or datetime.now(UTC)),
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# -- flow state: a token bucket and leases, as plain math ---------------------------------------------


@dataclass(frozen=True)
class FlowState:
    """A limited target's live state. `tokens` as of `refilled_ms`; leases: permit id -> expiry (ms)."""

    version: int = 0
    tokens: float = 0.0
    refilled_ms: int = 0
    leases: dict[str, int] = field(default_factory=dict)

    def live_leases(self, now_ms: int) -> dict[str, int]:
        return {permit: until for permit, until in self.leases.items() if until > now_ms}


def refill(tokens: float, refilled_ms: int, now_ms: int, rate: float, burst: float) -> float:
    """Tokens in a bucket of `burst` filling at `rate` per second, `now_ms` after holding `tokens`."""
    elapsed = max(0, now_ms - refilled_ms) / 1000
    return min(burst, tokens + elapsed * rate)


def take(state: FlowState | None, limits: Target, now_ms: int, permit_id: str, lease_ms: int) -> FlowState | float:
    """The state after one more attempt goes, or the seconds to wait before one can.

    A bucket never written is full. Only the version decides whether the write wins; the state
    written is a pure function of the state read, so a lost write is simply taken again.
    """
    wait = 0.0
    tokens = 0.0
    version = 0
    leases: dict[str, int] = {}
    if state is not None:
        version = state.version
        leases = state.live_leases(now_ms)
    if limits.rate_per_second is not None:
        if state is None or state.version == 0:
            tokens = limits.burst
        else:
            tokens = refill(state.tokens, state.refilled_ms, now_ms, limits.rate_per_second, limits.burst)
        if tokens < 1:
            wait = (1 - tokens) / limits.rate_per_second
    if limits.max_concurrency is not None and len(leases) >= limits.max_concurrency:
        wait = max(wait, min(SLOT_WAIT_SECONDS, (min(leases.values()) - now_ms) / 1000))
    if wait > 0:
        return wait
    if limits.max_concurrency is not None:
        leases = {**leases, permit_id: now_ms + lease_ms}
    return FlowState(
        version=version + 1,
        tokens=tokens - 1 if limits.rate_per_second is not None else 0.0,
        refilled_ms=now_ms,
        leases=leases,
    )


@dataclass(frozen=True)
class Permit:
    """Leave to make one attempt; give it back with `FlowControl.release` (a no-op when it holds nothing)."""

    sender_id: str
    origin: str
    permit_id: str = ""
    holds_slot: bool = False


@dataclass(frozen=True)
class Wait:
    """No room now: try again after `seconds` (no attempt was counted)."""

    seconds: float

    @property
    def whole_seconds(self) -> int:
        return max(1, math.ceil(self.seconds))


# -- data access --------------------------------------------------------------------------------------


def target_partition(sender_id: str, origin: str) -> str:
    """Where a target's items live: its limits, its flow state and its health."""
    return f"{TARGET_PREFIX}{sender_id}#{origin}"


def _index_partition(sender_id: str) -> str:
    return f"TARGETS#{sender_id}"


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
        self._messages = MessageRepository(table_name)

    def _call(self, operation: str, **kwargs: Any) -> Any:
        return self._messages._call(operation, **kwargs)

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
        found = {item["origin"]: _target_from(item) for item in self._messages._batch_get(keys, consistent=False)}
        return found.get(origin), found.get(DEFAULT_ORIGIN)

    def of_sender(self, sender_id: str) -> list[Target]:
        targets: list[Target] = []
        start: dict[str, Any] | None = None
        while True:
            page, start = self._messages.query_index(_index_partition(sender_id), start_key=start)
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
        for item in self._messages._batch_get(keys, consistent=False) if keys else []:
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
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
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
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None  # the target was deleted meanwhile
            raise
        return _flow_from(from_item(response["Attributes"]))


# -- flow control -------------------------------------------------------------------------------------


class FlowControl:
    """What the delivery code asks before each attempt: `acquire` -> Permit | Wait, then `release`.

    A process-wide instance per settings (delivery.dependencies); thread-safe (the dispatcher
    attempts a batch in parallel threads).
    """

    def __init__(
        self,
        repository: TargetRepository,
        defaults: Target,
        lease_seconds: float,
        clock: Callable[[], float] = time.time,
        max_age_seconds: float = CONFIG_MAX_AGE_SECONDS,
    ) -> None:
        self.repository = repository
        self.defaults = defaults
        self.lease_ms = int(lease_seconds * 1000)
        self.clock = clock
        self.max_age_seconds = max_age_seconds
        self._limits: dict[tuple[str, str], tuple[float, Target]] = {}
        self._states: dict[tuple[str, str], FlowState] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def limits(self, sender_id: str, origin: str) -> Target:
        """The limits that apply, as read at most `max_age_seconds` ago."""
        key = (sender_id, origin)
        now = time.monotonic()
        with self._guard:
            cached = self._limits.get(key)
        if cached is not None and now - cached[0] < self.max_age_seconds:
            return cached[1]
        own, default = self.repository.get_with_default(sender_id, origin)
        chosen = own or default or self.defaults
        limits = replace(chosen, origin=origin)
        with self._guard:
            self._limits[key] = (now, limits)
        return limits

    def acquire(self, sender_id: str, origin: str) -> Permit | Wait:
        limits = self.limits(sender_id, origin)
        if limits.unlimited:
            return Permit(sender_id, origin)
        key = (sender_id, origin)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        permit_id = uuid.uuid4().hex[:12]
        with lock:  # one writer per target per process: threads do not race each other's versions
            state = self._states.get(key)
            for _ in range(MAX_WRITE_TRIES):
                now_ms = int(self.clock() * 1000)
                decided = take(state, limits, now_ms, permit_id, self.lease_ms)
                if isinstance(decided, float):
                    # What this process saw last is never too strict for the rate (tokens only
                    # refill with time and others only take them); for slots, it may be: read.
                    if limits.max_concurrency is None or state is None:
                        return Wait(decided)
                    fresh = self.repository.get_flow(sender_id, origin)
                    if fresh == state:
                        return Wait(decided)
                    state = fresh
                    if state is not None:
                        self._states[key] = state
                    continue
                written, found = self.repository.write_flow(
                    sender_id, origin, state.version if state is not None else 0, decided
                )
                if written:
                    self._states[key] = decided
                    return Permit(sender_id, origin, permit_id, holds_slot=limits.max_concurrency is not None)
                state = found
                if found is not None:
                    self._states[key] = found
        return Wait(SLOT_WAIT_SECONDS)

    def release(self, permit: Permit | Wait | None) -> None:
        if not isinstance(permit, Permit) or not permit.holds_slot:
            return
        key = (permit.sender_id, permit.origin)
        try:
            state = self.repository.release_lease(permit.sender_id, permit.origin, permit.permit_id)
        except RelayError:
            return  # best effort: the lease runs out on its own (an attempt's longest time)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            current = self._states.get(key)
            if state is not None and (current is None or state.version > current.version):
                self._states[key] = state

    def forget(self) -> None:
        """Drop every cached limit and state (tests; a new embedded AWS)."""
        with self._guard:
            self._limits.clear()
            self._states.clear()


def target_views(repository: TargetRepository, sender_id: str, now_ms: int | None = None) -> list[dict[str, Any]]:
    """`GET /targets`: each target's limits and its live counts (slots in flight, tokens now)."""
    targets = repository.of_sender(sender_id)
    flows = repository.get_flows(sender_id, [t.origin for t in targets if t.origin != DEFAULT_ORIGIN])
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    views = []
    for target in targets:
        view = target.to_dict()
        state = flows.get(target.origin)
        view["inFlight"] = len(state.live_leases(now_ms)) if state else 0
        if target.rate_per_second is not None:
            tokens = (
                refill(state.tokens, state.refilled_ms, now_ms, target.rate_per_second, target.burst)
                if state
                else target.burst
            )
            view["tokens"] = round(tokens, 3)
        else:
            view["tokens"] = None
        views.append(view)
    return views


def delete_target(repository: TargetRepository, sender_id: str, raw_id: str) -> dict[str, Any]:
    """`DELETE /targets/{id}`: the id as `GET /targets` lists it (`target_id`), or `*`."""
    try:
        origin = origin_of_id(raw_id)
    except ValueError:
        raise TargetNotFound(f"No target '{raw_id[:200]}'.") from None
    if not repository.delete(sender_id, origin):
        raise TargetNotFound(f"No target '{origin}'.")
    return {"id": target_id(origin), "origin": origin, "deleted": True}
