"""Flow control: what the delivery code asks before each attempt, `acquire` -> Permit | Wait, then
`release`; the limits hold across any number of concurrent Lambdas.

Rate: the target's bucket is sub-buckets (functions/domain/flow.py), each an item of its own. A taker
tries its own one (from its message id, so it comes back to where it waited), then another at random.
A permit is one conditional write; a process plans it from what it saw of the sub-bucket last (one
seen without a token has none: tokens only come back with time), so a taker that must wait often
writes nothing to learn it.

Waiting: a fresh taker (the dispatcher's first attempt) that found no token is counted into its own
sub-bucket's queue and told its turn there (after the takers counted before it and the tokens set
aside for retries), so the dispatcher delays it once instead of polling. A retry (a lane's attempt)
that found none leaves a mark on its own sub-bucket: while marks are live, fresh takers leave tokens
for retries (up to all but one of the sub-bucket's burst), which the retries take when they come
back. Neither changes what any taker may take: the rate holds exactly as the buckets hold it.

Concurrency: slot items; a small cap is tried whole, a large one at random (SLOT_PROBES).

A target with no limits costs nothing: the limits are cached (CONFIG_MAX_AGE_SECONDS), no flow item
is read or written.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace

from functions.adapters.stores.target_store import TargetRepository
from functions.domain.exceptions import RelayError
from functions.domain.flow import (
    CONFIG_MAX_AGE_SECONDS,
    MAX_WRITE_TRIES,
    SLOT_WAIT_SECONDS,
    SUB_BUCKET_TRIES,
    Bucket,
    Permit,
    Share,
    Target,
    Wait,
    fresh_turn_us,
    plan_enqueue,
    plan_mark,
    plan_take,
    slots_to_probe,
    wait_until,
)

_SLOT_WAIT_MS = int(SLOT_WAIT_SECONDS * 1000)


class FlowControl:
    """Per-target limits for the delivery code. A process-wide instance per settings
    (delivery.dependencies); thread-safe (the dispatcher attempts a batch in parallel threads)."""

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
        # What this process saw of each sub-bucket last, by (sender, origin, index).
        self._buckets: dict[tuple[str, str, int], Bucket] = {}
        # Slots this process holds (until their lease ends) or found held: when it tries them again (ms).
        self._busy: dict[tuple[str, str], dict[int, int]] = {}
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

    def acquire(
        self, sender_id: str, origin: str, retry: bool = False, home: str = "", waited_turn: bool = False
    ) -> Permit | Wait:
        """A Permit for one attempt now, or the Wait until this taker's expected turn.

        `retry`: a retrying message (a lane's attempt), served before fresh ones; `home` (its message
        id) picks the sub-bucket it asks first, where it waits: it comes back to its turn there (or
        to the mark it left). `waited_turn`: a fresh taker back at the turn it was told; without a
        token it asks again at the sub-bucket's next token, not counted in again at the back.
        """
        limits = self.limits(sender_id, origin)
        if limits.unlimited:
            return Permit(sender_id, origin)
        taken: int | None = None
        if limits.rate_per_second is not None:
            share = Share.of(limits)
            decided = self._take_rate(sender_id, origin, share, retry, home, waited_turn)
            if isinstance(decided, Wait):
                return decided
            taken = decided
        if limits.max_concurrency is None:
            return Permit(sender_id, origin)
        permit_id = uuid.uuid4().hex[:12]
        slot = self._take_slot(sender_id, origin, limits.max_concurrency, permit_id)
        if slot is None:
            if taken is not None:
                self._give_back(sender_id, origin, share, taken)
            return Wait(SLOT_WAIT_SECONDS)
        return Permit(sender_id, origin, permit_id, slot=slot)

    def release(self, permit: Permit | Wait | None) -> None:
        """Give a permit's slot back (best effort: its lease runs out on its own)."""
        if not isinstance(permit, Permit) or permit.slot is None:
            return
        key = (permit.sender_id, permit.origin)
        with suppress(RelayError):  # best effort: the lease runs out on its own (an attempt's longest time)
            self.repository.release_slot(permit.sender_id, permit.origin, permit.slot, permit.permit_id)
        with self._guard:
            self._busy.get(key, {}).pop(permit.slot, None)

    def forget(self) -> None:
        """Drop every cached limit and state (tests; a new embedded AWS)."""
        with self._guard:
            self._limits.clear()
            self._buckets.clear()
            self._busy.clear()

    # -- rate

    def _now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    def _seen(self, sender_id: str, origin: str, index: int, bucket: Bucket | None = None) -> Bucket:
        """What this process saw of a sub-bucket last (a bucket never seen is taken as full); with
        `bucket`, remember it."""
        key = (sender_id, origin, index)
        with self._guard:
            if bucket is not None:
                self._buckets[key] = bucket
            return self._buckets.get(key, Bucket())

    def _take_rate(
        self, sender_id: str, origin: str, share: Share, retry: bool, home: str, waited_turn: bool = False
    ) -> int | Wait:
        """The index of the sub-bucket a permit was taken from, or the Wait for this taker's turn."""
        tries = self._sub_buckets(share.count, home)
        for index in tries:
            if self._take_from(sender_id, origin, share, index, retry):
                return index
        # None free: it waits on the first one it tried (its own), as that was last seen.
        first = tries[0]
        bucket, now_us = self._seen(sender_id, origin, first), self._now_us()
        if retry:
            return self._mark(sender_id, origin, share, first, bucket, now_us)
        if waited_turn:
            return wait_until(bucket.token_at_us(share, now_us, retry=False), now_us)
        return self._enqueue(sender_id, origin, share, first, bucket, now_us)

    @staticmethod
    def _sub_buckets(count: int, home: str) -> list[int]:
        """The sub-buckets a taker tries, in order: its own (from its message id: where it was
        counted in, or left its mark, when it waited before), then another at random."""
        if count == 1:
            return [0]
        if not home:
            return random.sample(range(count), SUB_BUCKET_TRIES)
        own = zlib.crc32(home.encode()) % count
        other = random.randrange(count - 1)
        return [own, other if other < own else other + 1]

    def _take_from(self, sender_id: str, origin: str, share: Share, index: int, retry: bool) -> bool:
        bucket = self._seen(sender_id, origin, index)
        for _ in range(MAX_WRITE_TRIES):
            take = plan_take(bucket, share, self._now_us(), retry)
            if take is None:
                return False
            taken, bucket = self.repository.take_token(sender_id, origin, index, take)
            self._seen(sender_id, origin, index, bucket)
            if taken:
                return True
        return False

    def _enqueue(
        self, sender_id: str, origin: str, share: Share, index: int, bucket: Bucket, now_us: int
    ) -> int | Wait:
        """Count a fresh taker into a sub-bucket's queue (`bucket`: as last seen); its Wait is its turn.
        When what it finds there shows a token after all (what it saw was stale: the items were
        deleted), it takes it."""
        for _ in range(MAX_WRITE_TRIES):
            plan = plan_enqueue(bucket, share, now_us)
            if plan is None:
                break
            counted, bucket = self.repository.enqueue(sender_id, origin, index, plan, now_us)
            self._seen(sender_id, origin, index, bucket)
            if plan_take(bucket, share, now_us, retry=False) is not None and self._take_from(
                sender_id, origin, share, index, retry=False
            ):
                return index
            if counted:
                return wait_until(bucket.queue_us, now_us, counted=True)
        return wait_until(fresh_turn_us(bucket, share, now_us), now_us)

    def _mark(self, sender_id: str, origin: str, share: Share, index: int, bucket: Bucket, now_us: int) -> Wait:
        """Leave a waiting retry's mark on its own sub-bucket (`bucket`: as last seen); its Wait is its
        next token."""
        for _ in range(MAX_WRITE_TRIES):
            plan = plan_mark(bucket, share, now_us)
            if plan is None:
                break
            marked, bucket = self.repository.mark_retry(sender_id, origin, index, plan)
            self._seen(sender_id, origin, index, bucket)
            if marked:
                break
        return wait_until(bucket.token_at_us(share, now_us, retry=True), now_us)

    def _give_back(self, sender_id: str, origin: str, share: Share, index: int) -> None:
        with suppress(RelayError):  # a token lost: the bucket is only stricter for it
            self.repository.give_back(sender_id, origin, index, share.interval_us)

    # -- concurrency

    def _take_slot(self, sender_id: str, origin: str, cap: int, permit_id: str) -> int | None:
        """The slot taken, or None when every slot tried is held."""
        now_ms = int(self.clock() * 1000)
        with self._guard:
            busy = self._busy.setdefault((sender_id, origin), {})
            skip = {slot for slot, until in busy.items() if until > now_ms}
        for slot in slots_to_probe(cap, skip, _shuffled):
            until_ms = now_ms + self.lease_ms
            taken, until = self.repository.take_slot(sender_id, origin, slot, permit_id, now_ms, until_ms)
            with self._guard:
                # Held by this process: not tried again until released or its lease ran out. Found
                # held: not for a while (its holder may give it back any time, so not long).
                busy[slot] = until_ms if taken else min(until, now_ms + _SLOT_WAIT_MS)
            if taken:
                return slot
        return None


def _shuffled(slots: list[int], count: int) -> list[int]:
    return random.sample(slots, count)
