"""Circuit breaker per target: a dead target's messages are PAUSED, not FAILED, and nothing is lost.

A target is the origin of a message's `targetUrl`, per sender. Its health is CLOSED (deliver),
OPEN (do not send: a message about to be attempted becomes PAUSED, keeps its attempts and its lane
run ends) or HALF_OPEN (one paused message, the probe, is on its way). The state machine:

    CLOSED --(threshold consecutive failed attempts)--> OPEN
    OPEN --(probe due: the reconciler re-drives one paused message)--> HALF_OPEN
    HALF_OPEN --(the probe fails)--> OPEN, the next probe later (doubling, capped)
    OPEN/HALF_OPEN --(the probe succeeds, or `relay targets resume`)--> CLOSED, every paused message
        re-driven

Only a success that says the target answers *now* closes it: the probe's, or one of an attempt
that started KNOWN_OPEN_AFTER_SECONDS after the target opened (every warm function knew it was open
by then, so such an attempt went ahead on purpose). A success of an attempt that started before the
open, or soon after it on a warm function's cache from before it, is stale: it closes nothing,
resets nothing. The close is a conditional write on the attempt's start time (and the probe's
identity), so no cache, however old, can close a target it has not seen open. Without this a busy,
mostly failing target (100 attempts/s, 90% failing) opens and closes every few seconds: the
successes of the attempts in flight when it opened each closed it and re-drove its paused messages.

No cost on the common path: failures are counted on the failure path only (one atomic ADD), a
success writes only when the warm function knows of failures, and whether a target is open is
read at most every CACHE_SECONDS per target per warm function. "Consecutive" is therefore as a
warm function knows it within that age; a success anywhere resets the count of a CLOSED target.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.adapters.observability import logger, metrics
from functions.contract.metric_names import Metric
from functions.domain.breaker import CACHE_SECONDS, BreakerPolicy, BreakerState, TargetHealth
from functions.domain.clock import iso
from functions.domain.exceptions import FieldError, MessageInvalid, RelayError
from functions.domain.model import Event, EventType, MessageHead, from_epoch_ms
from functions.domain.web.origins import DEFAULT_ORIGIN, origin_of
from functions.services.targeting.targets import Target, TargetRepository, target_views

if TYPE_CHECKING:
    from functions.adapters.queue import DeliveryQueue
    from functions.adapters.repository import MessageRepository
    from functions.adapters.stores.target_health_store import TargetHealthRepository
    from functions.domain.config import Settings


class TargetBreaker:
    """The breaker as a warm function sees it: a short-lived cache over the health items."""

    def __init__(
        self,
        store: TargetHealthRepository,
        policy: BreakerPolicy,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_change: Callable[[TargetHealth, bool], None] | None = None,
    ) -> None:
        self.store = store
        # Told once per transition this breaker makes (the health, and True when it opened it):
        # the target.opened / target.closed notifications (functions/services/reporting/outcomes.py).
        self._on_change = on_change
        self.policy = policy
        self._clock = clock
        self._wall_clock = wall_clock
        self._cache: dict[tuple[str, str], tuple[float, TargetHealth]] = {}
        self._lock = threading.Lock()

    def _changed(self, health: TargetHealth, opened: bool) -> None:
        """Best effort, like the breaker's own bookkeeping: delivery never fails on a notification."""
        if self._on_change is None:
            return
        try:
            self._on_change(health, opened)
        except Exception:
            logger.exception("Could not notify the target's change")

    def _remember(self, health: TargetHealth) -> TargetHealth:
        with self._lock:
            self._cache[(health.sender_id, health.origin)] = (self._clock(), health)
        return health

    def health(self, sender_id: str, origin: str) -> TargetHealth:
        """The target's health, read at most every CACHE_SECONDS."""
        with self._lock:
            hit = self._cache.get((sender_id, origin))
        if hit is not None and self._clock() - hit[0] < CACHE_SECONDS:
            return hit[1]
        return self._remember(self.store.get(sender_id, origin))

    def blocking(self, sender_id: str, origin: str, message_id: str) -> TargetHealth | None:
        """The health that keeps `message_id` from being attempted, or None (go ahead).

        Only a target cached as unhealthy is read again (consistently) before a message pauses.
        """
        if not self.health(sender_id, origin).blocks(message_id):
            return None
        fresh = self._remember(self.store.get(sender_id, origin, consistent=True))
        return fresh if fresh.blocks(message_id) else None

    def failed(self, sender_id: str, origin: str, message_id: str) -> TargetHealth:
        """Count a failed attempt (a retryable failure of the target); open the target at the threshold."""
        now = int(self._wall_clock())
        counted = self.store.add_failure(sender_id, origin)
        opened = counted.after_failure(self.policy, message_id, now)
        if opened is None:
            return self._remember(counted)
        if not self.store.open(opened, counted):
            return self._remember(self.store.get(sender_id, origin, consistent=True))
        metrics.add_metric(name=Metric.TARGET_OPENED, unit=MetricUnit.Count, value=1)
        self._changed(opened, True)
        logger.warning(
            "Target is OPEN: its messages pause until a probe gets through",
            extra={"senderId": sender_id, "origin": origin, "failures": counted.failures, "probes": opened.probes},
        )
        return self._remember(opened)

    def succeeded(self, sender_id: str, origin: str, message_id: str, started_at: int | None) -> bool:
        """An attempt of `message_id` that started at `started_at` (epoch seconds) got through: reset
        the count (if this function knows of one) or close the target, if this success may (see
        TargetHealth.closed_by; an unknown start is stale). True when this call closed it (its
        paused messages are then re-driven)."""
        known = self.health(sender_id, origin)
        if known.state == BreakerState.CLOSED and known.failures == 0:
            return False
        if known.state == BreakerState.CLOSED:
            if self.store.reset_failures(sender_id, origin):
                self._remember(TargetHealth(sender_id, origin))
                return False
            # Not CLOSED with failures any more: closed and reset meanwhile, or opened meanwhile.
            known = self._remember(self.store.get(sender_id, origin, consistent=True))
            if known.state == BreakerState.CLOSED:
                return False
        if started_at is None:
            logger.warning("A success with no known start closes nothing", extra={"origin": origin})
        elif self.store.close(sender_id, origin, message_id, started_at, resuming=True):
            metrics.add_metric(name=Metric.TARGET_CLOSED, unit=MetricUnit.Count, value=1)
            self._changed(known, False)
            logger.info("Target is CLOSED again: its paused messages are re-driven", extra={"origin": origin})
            self._remember(TargetHealth(sender_id, origin, resuming=True))
            return True
        # A stale success (it started before the open, or on a cache from before it), or the target
        # closed meanwhile: it closes nothing, and this function learns the target's health as it is.
        self._remember(self.store.get(sender_id, origin, consistent=True))
        return False


# -- pausing and resuming messages (the data-access calls are MessageRepository's) ------------------


def paused_event(head: MessageHead, health: TargetHealth, at: datetime) -> Event:
    if health.state == BreakerState.HALF_OPEN:
        reason = "target OPEN: a probe is on its way"
    else:
        reason = f"target OPEN after {health.failures} consecutive failed attempts"
    details: dict[str, Any] = {"origin": health.origin, "reason": reason}
    if health.next_probe_at is not None:
        details["nextProbeAt"] = iso(from_epoch_ms(health.next_probe_at * 1000))
    return Event(EventType.PAUSED, at, head.run, head.attempts, details)


def paused_due_at(head: MessageHead, health: TargetHealth, policy: BreakerPolicy, now: int) -> int:
    """When the reconciler looks at a paused message: its next probe, or its expiry if sooner."""
    return min(head.ttl, health.next_probe_at or now + policy.probe_after_seconds)


def pause(
    repository: MessageRepository,
    head: MessageHead,
    health: TargetHealth,
    policy: BreakerPolicy,
    lease_free_at: int | None = None,
    owner: tuple[str, ...] = (),
) -> MessageHead | None:
    now = datetime.now(UTC)
    epoch = int(now.timestamp())
    event = paused_event(head, health, now)
    due_at = paused_due_at(head, health, policy, epoch)
    paused = repository.pause(head, event, health.origin, due_at, lease_free_at, owner)
    if paused is not None:
        metrics.add_metric(name=Metric.PAUSED, unit=MetricUnit.Count, value=1)
    return paused


def paused_origin(head: MessageHead) -> str | None:
    event = head.last_event(EventType.PAUSED)
    return str(event.details["origin"]) if event and event.details.get("origin") else None


class ResumeReason(StrEnum):
    """Why a paused message goes again (RESUMED's `reason`)."""

    CLOSED = "closed"  # its target closed
    PROBE = "probe"  # it is its target's probe
    MANUAL = "manual"  # `relay targets resume`


def resume_message(
    repository: MessageRepository,
    queue: DeliveryQueue,
    settings: Settings,
    head: MessageHead,
    origin: str,
    how: ResumeReason,
    now: datetime,
) -> bool:
    """PAUSED -> PENDING (RESUMED) and onto the delivery queue; the due time guards the send."""
    details: dict[str, Any] = {"origin": origin, "reason": how.value}
    if how == ResumeReason.PROBE:
        details["probe"] = True
    resumed = Event(EventType.RESUMED, now, head.run, head.attempts, details)
    updated = repository.resume(head, resumed, int(now.timestamp()) + settings.redrive_after_seconds)
    if updated is None:
        return False
    metrics.add_metric(name=Metric.RESUMED, unit=MetricUnit.Count, value=1)
    try:
        queue.send(head.key, run=updated.run)
    except RelayError:
        logger.exception("Resume could not enqueue; the reconciler re-drives it")
    return True


def resume_paused(
    repository: MessageRepository,
    queue: DeliveryQueue,
    settings: Settings,
    sender_id: str,
    origin: str,
    how: ResumeReason,
    now: datetime | None = None,
) -> int:
    """Re-drive every PAUSED message of a target; how many were re-driven."""
    now = now or datetime.now(UTC)
    resumed = 0
    for page in repository.iter_paused(sender_id, origin):
        for head in page:
            resumed += resume_message(repository, queue, settings, head, origin, how, now)
    return resumed


def resume_closed_targets(
    repository: MessageRepository, store: TargetHealthRepository, queue: DeliveryQueue, settings: Settings
) -> int:
    """Re-drive the paused messages of every target that closed since (the reconciler, each round)."""
    resumed = 0
    for health in store.resuming():
        if health.state != BreakerState.CLOSED:
            continue
        resumed += resume_paused(repository, queue, settings, health.sender_id, health.origin, ResumeReason.CLOSED)
        store.finish_resume(health.sender_id, health.origin)
    return resumed


def count_open_targets(store: TargetHealthRepository) -> int:
    """The `OpenTargets` gauge (the reconciler, each round): its alarm is on while any target is open."""
    opened = len(store.open_targets())
    metrics.add_metric(name=Metric.OPEN_TARGETS, unit=MetricUnit.Count, value=opened)
    return opened


# -- the API: `relay targets resume` and a target's health ------------------------------------------


def _origin_field(raw: Any) -> str:
    if not isinstance(raw, str) or not raw or len(raw) > 2048:
        raise MessageInvalid([FieldError("$.origin", "must be a URL or origin (scheme://host[:port])")])
    try:
        origin = origin_of(raw)
    except ValueError:
        raise MessageInvalid(
            [FieldError("$.origin", "must be an http(s) URL or origin (scheme://host[:port])")]
        ) from None
    return origin


def targets_view(repository: TargetRepository, store: TargetHealthRepository, sender_id: str) -> list[dict[str, Any]]:
    """`GET /targets`: the sender's targets with limits and those whose circuit is open, each with its
    limits, live counts and health (the `*` default has no health of its own)."""
    views = target_views(repository, sender_id)
    listed = {view["origin"] for view in views}
    healths = store.get_many(sender_id, sorted(listed - {DEFAULT_ORIGIN}))
    for opened in store.open_of_sender(sender_id):
        healths[opened.origin] = opened
        if opened.origin not in listed:
            views.append({**Target(opened.origin).to_dict(), "inFlight": 0, "tokens": None})
    for view in views:
        if view["origin"] in healths:
            view["health"] = healths[view["origin"]].to_dict()
    return sorted(views, key=lambda view: str(view["origin"]))


def target_health_view(store: TargetHealthRepository, sender_id: str, origin: str) -> dict[str, Any]:
    """A target's health as the sender sees it (GET /targets shows this per target)."""
    return store.get(sender_id, _origin_field(origin), consistent=True).to_dict()


def resume_target(
    repository: MessageRepository,
    store: TargetHealthRepository,
    queue: DeliveryQueue,
    settings: Settings,
    sender_id: str,
    origin: Any,
) -> dict[str, Any]:
    """Close a target by hand and re-drive its paused messages (the reconciler finishes any left)."""
    origin = _origin_field(origin)
    previous = store.get(sender_id, origin, consistent=True)
    # A target with nothing to close (never failed, or closed and reset) gets no health item: asking
    # to resume any origin must not leave one behind. Its paused messages, if any, still go.
    closing = previous.state != BreakerState.CLOSED or previous.failures > 0 or previous.resuming
    if closing:
        store.force_close(sender_id, origin)
    if previous.state != BreakerState.CLOSED:
        metrics.add_metric(name=Metric.TARGET_CLOSED, unit=MetricUnit.Count, value=1)
    resumed = resume_paused(repository, queue, settings, sender_id, origin, ResumeReason.MANUAL)
    if closing:
        store.finish_resume(sender_id, origin)
    return {"origin": origin, "previousState": previous.state.value, "state": "CLOSED", "resumed": resumed}
