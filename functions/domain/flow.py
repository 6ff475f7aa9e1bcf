"""A target's limits and the flow-control arithmetic that holds them: the token bucket (rate) and
the leases of the attempts in flight (concurrency). Pure: no AWS; the items live in
functions/adapters/target_store.py and functions/services/targets.py applies them per attempt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from functions.domain.clock import iso_seconds
from functions.domain.exceptions import FieldError, MessageInvalid
from functions.domain.json_text import loads_strict
from functions.domain.origins import parse_origin, target_id

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

    from functions.domain.config import SCHEMA_DIR

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
    from functions.domain.validation import _schema_errors

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
        updated_at=iso_seconds(now or datetime.now(UTC)),
    )


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
