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

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from functions.adapters.target_store import TargetRepository
from functions.domain.exceptions import RelayError, TargetNotFound
from functions.domain.flow import (
    CONFIG_MAX_AGE_SECONDS,
    MAX_WRITE_TRIES,
    SLOT_WAIT_SECONDS,
    FlowState,
    Permit,
    Target,
    Wait,
    refill,
    take,
)
from functions.domain.origins import DEFAULT_ORIGIN, origin_of_id, target_id


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
