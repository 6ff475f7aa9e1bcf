"""A target's limits and the flow-control arithmetic that holds them: the token bucket (rate), split
into sub-buckets so it scales with the rate, the expected turn of a taker that must wait (retries
first), and the slots of the attempts in flight (concurrency). Pure: no AWS; the items live in
functions/adapters/stores/target_store.py and functions/services/targeting/flow_control.py applies them per attempt.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from functions.domain.clock import iso_seconds
from functions.domain.exceptions import FieldError, MessageInvalid
from functions.domain.web.json_text import loads_strict
from functions.domain.web.origins import parse_origin, target_id

# How long a warm function trusts the limits it read (a changed limit applies within this time).
CONFIG_MAX_AGE_SECONDS = 30.0
# A lease outlives the attempt's longest time by this much (the deliver function's own overhead).
LEASE_MARGIN_SECONDS = 10
# When every slot is taken, look again after this long (a release may come at any moment).
SLOT_WAIT_SECONDS = 0.5
# Conditional writes of one sub-bucket per ask: the one planned from what the process saw last and,
# when that was stale (the bucket was full after all, or busy), the one planned from what it found.
MAX_WRITE_TRIES = 2
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


# -- the rate: a token bucket split into sub-buckets ---------------------------------------------------
#
# A target's bucket is `sub_bucket_count(rate)` sub-buckets, each its own DynamoDB item under its own
# partition key (DynamoDB takes at most 1,000 WCU/s on one partition key, and one item cannot be split
# across partitions): each holds an equal share of the rate and of the burst (at least one token), so
# their sum is exactly the target's bucket and no window ever sees more than rate x seconds + burst.
# A taker picks one at random (a second before it waits): the rate spreads with the number of items.
#
# Each sub-bucket is kept as GCRA times rather than a token count: `full_at_us`, the moment the bucket
# is full again, moves one interval (1 / its rate) later per permit. So a permit is one conditional
# `ADD` (no read, no version race: concurrent takers do not lose to each other) while the bucket is
# busy, and one conditional `SET` when it was full. Times are integer microseconds since the epoch.

# The permits per second one sub-bucket takes (the rule: ceil(rate / this) sub-buckets). A permit is
# one ~1 WCU write of its sub-bucket; a taker that waits adds one more (its place in the queue) and a
# lost condition is billed too, so 50/s keeps every sub-bucket item far below its partition's
# 1,000 WCU/s even when most takers wait, and a target at the API's largest rate (10,000/s) is 200
# items: a listing (`GET /targets`) reads them in two batch reads.
SUB_BUCKET_PERMITS_PER_SECOND = 50.0
# What DynamoDB lets one partition key (so one sub-bucket or slot item) take: the ceiling behind
# SUB_BUCKET_PERMITS_PER_SECOND, for the capacity model (the AWS DynamoDB quotas page).
PARTITION_WRITE_UNITS_PER_SECOND = 1_000
# Flow writes of an attempt that gets its permit at once (each a small item, ~1 WCU): a rate takes
# one sub-bucket update, a concurrency limit takes a slot and gives it back.
RATE_WRITES_PER_PERMIT = 1
SLOT_WRITES_PER_PERMIT = 2
# Sub-buckets a taker tries before it waits: its own one (from its message id), then another.
SUB_BUCKET_TRIES = 2
# A retry that had to wait leaves a mark that sets tokens aside for retries; each mark lasts this
# long unless a retry spends it: the longest a lane's throttled retrier waits between two asks (the
# slow lane's DeliveryThrottled Retry: up to 60 s, full jitter), so the retry is back before it ends.
RETRY_MARK_SECONDS = 60
# The longest wait a queue can hold a message for (SQS DelaySeconds; the dispatcher caps a wait
# there): a fresh taker whose turn is later is not counted in, it comes back then and asks again.
TURN_HORIZON_SECONDS = 900

_MICROS = 1_000_000
_MARK_US = RETRY_MARK_SECONDS * _MICROS


def sub_bucket_count(rate_per_second: float) -> int:
    """How many sub-buckets (items, partition keys) hold a bucket of this rate."""
    return max(1, math.ceil(rate_per_second / SUB_BUCKET_PERMITS_PER_SECOND))


def max_permits_per_second(rate_per_second: float) -> float:
    """What one target's flow items can grant per second in principle: its sub-buckets, each at
    its partition's write limit (every permit one write)."""
    return sub_bucket_count(rate_per_second) * PARTITION_WRITE_UNITS_PER_SECOND / RATE_WRITES_PER_PERMIT


@dataclass(frozen=True)
class Share:
    """One sub-bucket's part of a target's bucket: `count` of them, each with this rate and burst."""

    count: int
    rate: float
    burst: float

    @classmethod
    def of(cls, limits: Target) -> Share:
        rate = limits.rate_per_second
        if rate is None:
            raise ValueError("a target without a rate has no bucket")
        count = sub_bucket_count(rate)
        return cls(count, rate / count, max(1.0, limits.burst / count))

    @property
    def interval_us(self) -> int:
        """The time one permit takes from the sub-bucket (rounded up: never faster than its share)."""
        return math.ceil(_MICROS / self.rate)

    @property
    def reserve_cap(self) -> float:
        """The most tokens fresh takers leave for retries: all but one of the burst, so a fresh taker
        can always take what would overflow and no refill is ever lost to a retry that is not back
        yet. (A bucket of one token, a rate up to 1/s, sets none aside: holding its only token for a
        retry that comes back within a minute would stop the target for that minute.)"""
        return max(0.0, self.burst - 1)

    @property
    def most_marks(self) -> int:
        """Retry marks worth keeping: beyond these the reserve is full."""
        return math.ceil(self.reserve_cap)

    def tolerance_us(self, reserve: float) -> int:
        """How far ahead of now `full_at` may be for a taker that leaves `reserve` tokens."""
        return math.floor((self.burst - 1 - reserve) * self.interval_us)


@dataclass(frozen=True)
class Bucket:
    """One sub-bucket as stored (microseconds since the epoch; 0: never written, a full bucket).

    `full_at_us`: the bucket is full from then on (a permit moves it one interval later);
    `queue_us`: the turn of the last fresh taker counted in as waiting (the queue ends then);
    `marks_us`: retry marks, one per RETRY_MARK_SECONDS between now and then.
    """

    full_at_us: int = 0
    queue_us: int = 0
    marks_us: int = 0

    def tokens(self, share: Share, now_us: int) -> float:
        return share.burst - max(0, self.full_at_us - now_us) / share.interval_us

    def marks(self, now_us: int) -> int:
        return math.ceil(max(0, self.marks_us - now_us) / _MARK_US)

    def reserve(self, share: Share, now_us: int) -> float:
        """The tokens a fresh taker leaves for retries now."""
        return min(float(self.marks(now_us)), share.reserve_cap)

    def token_at_us(self, share: Share, now_us: int, retry: bool) -> int:
        """When the next token for this kind of taker is there (now or earlier: there is one)."""
        reserve = 0.0 if retry else self.reserve(share, now_us)
        return self.full_at_us - share.tolerance_us(reserve)


@dataclass(frozen=True)
class Take:
    """One permit from a sub-bucket, as a conditional write (functions/adapters/stores/target_store.py).

    `from_full`: the bucket is full: `full_at` becomes now + one interval, if it is still at most now.
    Otherwise `full_at` moves one interval later, if it is still between now and `latest_full_at_us`.
    `most_marks_us`: a fresh taker's assumption about the retry marks (None: any number, its reserve
    is full or it has none): fewer than it assumed is only stricter, more fails the write.
    `spent_mark_us`: a retry takes a token set aside for retries, so the marks end this much
    earlier (one mark fewer; 0: none spent).
    """

    now_us: int
    interval_us: int
    from_full: bool
    latest_full_at_us: int
    most_marks_us: int | None = None
    spent_mark_us: int = 0


def plan_take(bucket: Bucket, share: Share, now_us: int, retry: bool) -> Take | None:
    """The write that takes one permit if `bucket` is still as seen, or None: no token for this
    taker in it (tokens only come back with time, others only take them, so a bucket seen without
    one has none)."""
    reserve = 0.0 if retry else bucket.reserve(share, now_us)
    latest = now_us + share.tolerance_us(reserve)
    if bucket.full_at_us > latest:
        return None
    most_marks_us = None
    marks = bucket.marks(now_us)
    if not retry and marks < share.most_marks:
        most_marks_us = now_us + marks * _MARK_US
    return Take(
        now_us=now_us,
        interval_us=share.interval_us,
        from_full=bucket.full_at_us <= now_us,
        latest_full_at_us=latest,
        # A full bucket holds every reserve: no taker can take a retry's token from it.
        most_marks_us=None if bucket.full_at_us <= now_us else most_marks_us,
        spent_mark_us=_MARK_US if retry and marks > 0 else 0,
    )


@dataclass(frozen=True)
class Enqueue:
    """A fresh taker counted in as waiting, its turn at `turn_us`: after the last one counted
    (`queue_us` moves one interval on, if it is still at least `after_us`) or, when the queue ends
    before the next token, at that token (`queue_us` set, if it is still before `after_us`)."""

    turn_us: int
    interval_us: int
    after_tail: bool
    after_us: int


def plan_enqueue(bucket: Bucket, share: Share, now_us: int) -> Enqueue | None:
    """Where a fresh taker that found no token waits; None when its turn is past the horizon (it
    is not counted: it comes back at the horizon and asks again)."""
    token_at = bucket.token_at_us(share, now_us, retry=False)
    after_tail = bucket.queue_us + share.interval_us >= token_at
    turn = bucket.queue_us + share.interval_us if after_tail else token_at
    if turn - now_us > TURN_HORIZON_SECONDS * _MICROS:
        return None
    return Enqueue(turn, share.interval_us, after_tail, token_at - share.interval_us)


def fresh_turn_us(bucket: Bucket, share: Share, now_us: int) -> int:
    """When a fresh taker that waits on this sub-bucket gets its turn: after the fresh takers
    already waiting, and after the tokens set aside for retries."""
    return max(bucket.token_at_us(share, now_us, retry=False), bucket.queue_us + share.interval_us)


@dataclass(frozen=True)
class Mark:
    """A retry that waits leaves a mark: `marks_us` one RETRY_MARK_SECONDS later (from now, when
    none is live), if it still holds fewer marks than `most_marks_us` allows."""

    now_us: int
    mark_us: int
    live: bool
    most_marks_us: int


def plan_mark(bucket: Bucket, share: Share, now_us: int) -> Mark | None:
    """The mark a waiting retry leaves, or None when the reserve is full already (or the bucket
    sets nothing aside)."""
    marks = bucket.marks(now_us)
    if marks >= share.most_marks:
        return None
    return Mark(now_us, _MARK_US, marks > 0, now_us + (share.most_marks - 1) * _MARK_US)


def wait_until(turn_us: int, now_us: int, counted: bool = False) -> Wait:
    return Wait(max(0.0, (turn_us - now_us) / _MICROS), counted)


# -- concurrency: slots ---------------------------------------------------------------------------------
#
# `maxConcurrency` C is C slot items (0..C-1), each its own partition key: a taker takes one with a
# conditional write (free: never held, given back, or its lease ran out), gives it back after the
# attempt, and a crashed holder's slot frees itself when its lease runs out. An attempt writes two
# small items whatever C; no item grows with C.

# Slots a taker tries before it waits. A cap up to this many is tried whole (exact: a taker waits
# only when every slot is held, or was seen held within SLOT_WAIT_SECONDS, the wait it is told); a
# larger one at random, so near its cap a taker may wait with a slot free.
SLOT_PROBES = 8


def slots_to_probe(cap: int, skip: set[int], pick: Callable[[list[int], int], list[int]]) -> list[int]:
    """The slots a taker tries, in order: all of a small cap, else SLOT_PROBES of them (`pick`
    chooses, at random in service code), never one in `skip` (held by this process, or seen held
    a moment ago)."""
    free = [slot for slot in range(cap) if slot not in skip]
    return pick(free, min(len(free), SLOT_PROBES))


@dataclass(frozen=True)
class FlowSnapshot:
    """A target's flow items as read for `GET /targets`: its sub-buckets (None: never written) and
    the lease ends of its slots (ms; 0: free)."""

    buckets: tuple[Bucket | None, ...] = ()
    slot_untils_ms: tuple[int, ...] = ()

    def tokens(self, share: Share, now_us: int) -> float:
        return sum(share.burst if bucket is None else bucket.tokens(share, now_us) for bucket in self.buckets)

    def in_flight(self, now_ms: int) -> int:
        return sum(1 for until in self.slot_untils_ms if until > now_ms)


@dataclass(frozen=True)
class Permit:
    """Leave to make one attempt; give it back with `FlowControl.release` (a no-op when it holds nothing)."""

    sender_id: str
    origin: str
    permit_id: str = ""
    slot: int | None = None

    @property
    def holds_slot(self) -> bool:
        return self.slot is not None


@dataclass(frozen=True)
class Wait:
    """No room now: try again after `seconds`, the taker's expected turn (no attempt was counted).

    `counted`: the taker was counted into its target's queue for that turn. Another copy of the same
    message (a re-drive's, while this one waits) must wait for this turn, not be counted again: a
    turn counted twice is a token's time that nobody takes.
    """

    seconds: float
    counted: bool = False

    @property
    def whole_seconds(self) -> int:
        return max(1, math.ceil(self.seconds))


# -- data access --------------------------------------------------------------------------------------
