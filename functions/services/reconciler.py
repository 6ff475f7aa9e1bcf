"""The reconciler: each round re-drives every message that is overdue with no live run, so nothing
accepted is left behind (a lost queue message, a dead step, a run that ended early, a target that
recovered). What a round did is counted by name (RoundCount, MessageOutcome) for its log line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import islice
from typing import TYPE_CHECKING

from aws_lambda_powertools.metrics import MetricUnit

from functions.adapters.observability import logger, metrics
from functions.adapters.queue import DeliveryQueue, MessageQueue
from functions.adapters.repository import MessageRepository
from functions.contract.indexes import DUE_SHARDS
from functions.contract.metric_names import Metric
from functions.domain.breaker import BreakerPolicy, BreakerState
from functions.domain.config import Settings
from functions.domain.exceptions import RelayError
from functions.domain.model import Event, EventType, MessageHead, MessageKey, Status, due_partition

if TYPE_CHECKING:
    from functions.adapters.stores.target_health_store import TargetHealthRepository
    from functions.services.targeting.target_health import TargetHealth

# Ends a message that expired (FAILED, with its reason): the key, the run, the reason.
FailExpired = Callable[[MessageKey, int, str], object]


class MessageOutcome(StrEnum):
    """What the round did with one due message (each counted under its value)."""

    FINISHED = "finished"  # terminal already: its due time cleared
    EXPIRED = "expired"  # FAILED: it expired before it could be delivered
    LEASED = "leased"  # a run holds it: due again when its lease ends
    REDRIVEN = "redriven"  # onto the delivery queue again
    MOVED_ON = "moved-on"  # it changed since it was read: the next round looks again
    ENQUEUE_FAILED = "enqueue-failed"
    # A PAUSED message:
    FAILED = "failed"  # expired while paused
    RESUMED = "resumed"  # its target closed
    PROBE = "probe"  # re-driven as its target's probe
    PAUSED = "paused"  # still paused: due again at the next probe


class RoundCount(StrEnum):
    """The round's other counts."""

    DUE = "due"  # due messages looked at
    ERRORS = "errors"  # parts or messages that failed (logged; the round went on)
    RESCUED = "rescued"  # dead letters taken back
    RESUMED = "resumed"  # paused messages of targets that closed (with the due ones resumed)
    OPEN_TARGETS = "openTargets"
    UNCLAIMED = "unclaimed"  # never-claimed messages marked due by the sweep
    UNFINISHED = "unfinished"  # 1: the budget ran out; the next round goes on from here


class RoundBudget:
    """The time one reconciler round may spend, shared out so that no part starves another.

    Every part gets a slice of what is left when it starts; what a part leaves undone waits for the
    next round, which finds it again (due times only move forward once handled)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.deadline = clock() + seconds

    def left(self) -> float:
        return max(0.0, self.deadline - self._clock())

    def slice(self, share: float) -> RoundBudget:
        return RoundBudget(self.left() * share, self._clock)

    @property
    def spent(self) -> bool:
        return self._clock() >= self.deadline


# The round's default budget: a scheduled round runs every minute (the handler passes what its
# invocation has left, less a margin).
ROUND_BUDGET_SECONDS = 45.0
# What the sweep of never-claimed messages may take of a round (the due walk gets the rest).
SWEEP_SHARE = 0.3


def reconcile(
    repository: MessageRepository,
    queue: DeliveryQueue,
    settings: Settings,
    fail: FailExpired,
    now: datetime | None = None,
    dead_letters: MessageQueue | None = None,
    sweep: bool = True,
    budget: RoundBudget | None = None,
) -> dict[str, int]:
    """Re-drive every message that is overdue with no live run; nothing accepted is left behind.

    Each part of the round (dead letters, closed targets, the sweep, the due walk) is isolated: an
    error is logged and counted and the round goes on. `fail(key, run, reason)` ends a message that
    expired. Returns counts for the log.
    """
    now = now or datetime.now(UTC)
    budget = budget or RoundBudget(ROUND_BUDGET_SECONDS)
    counts: dict[str, int] = {
        RoundCount.DUE: 0,
        MessageOutcome.REDRIVEN: 0,
        MessageOutcome.EXPIRED: 0,
        MessageOutcome.FINISHED: 0,
        MessageOutcome.LEASED: 0,
        RoundCount.ERRORS: 0,
    }
    if dead_letters is not None:
        counts[RoundCount.RESCUED] = _isolated(
            counts, "rescue", lambda: rescue_dead_letters(repository, dead_letters, now)
        )
    # Targets that closed since the last round: their paused messages go again.
    from functions.adapters.stores.target_health_store import TargetHealthRepository
    from functions.services.targeting.target_health import count_open_targets, resume_closed_targets

    targets = TargetHealthRepository.from_settings(settings)
    counts[RoundCount.RESUMED] = _isolated(
        counts, "resume", lambda: resume_closed_targets(repository, targets, queue, settings)
    )
    counts[RoundCount.OPEN_TARGETS] = _isolated(counts, "open-targets", lambda: count_open_targets(targets))
    if sweep:
        sweep_budget = budget.slice(SWEEP_SHARE)

        def sweep_round() -> int:
            outcome = sweep_unclaimed(repository, settings, now, sweep_budget)
            if not outcome.finished:
                counts[RoundCount.UNFINISHED] = 1  # the next round starts at the then oldest minute
            return outcome.marked

        counts[RoundCount.UNCLAIMED] = _isolated(counts, "sweep", sweep_round)
    _walk_due(repository, queue, settings, fail, now, budget, targets, counts)
    if counts[RoundCount.ERRORS]:
        metrics.add_metric(name=Metric.RECONCILER_ERRORS, unit=MetricUnit.Count, value=counts[RoundCount.ERRORS])
    return counts


def _isolated(counts: dict[str, int], part: str, work: Callable[[], int]) -> int:
    """Run one part of the round; an error there is logged and counted, and the round goes on."""
    try:
        return work()
    except Exception:
        logger.exception("A part of the reconciler round failed; the round goes on", extra={"part": part})
        counts[RoundCount.ERRORS] += 1
        return 0


def _due_keys(repository: MessageRepository, epoch: int) -> Iterator[MessageKey]:
    """The due messages of every shard, taken a page from each shard in turn (one busy shard does
    not hold the others back); the first shard changes every round."""
    first = (epoch // 60) % DUE_SHARDS
    pages = [repository.iter_due_pages(due_partition((first + n) % DUE_SHARDS), epoch) for n in range(DUE_SHARDS)]
    while pages:
        for shard_pages in list(pages):
            page = next(shard_pages, None)
            if page is None:
                pages.remove(shard_pages)
            else:
                yield from page


def _walk_due(
    repository: MessageRepository,
    queue: DeliveryQueue,
    settings: Settings,
    fail: FailExpired,
    now: datetime,
    budget: RoundBudget,
    targets: TargetHealthRepository,
    counts: dict[str, int],
) -> None:
    seen: dict[tuple[str, str], TargetHealth] = {}
    for key in _due_keys(repository, int(now.timestamp())):
        if budget.spent:
            counts[RoundCount.UNFINISHED] = 1  # the next round goes on from here (what is handled moved on)
            return
        counts[RoundCount.DUE] += 1
        try:
            head = repository.get_head(key)
            if head is None:
                continue
            if head.status == Status.PAUSED:
                outcome = reconcile_paused(repository, targets, queue, settings, fail, head, now, seen)
            else:
                outcome = _reconcile_one(repository, queue, settings, fail, head, now)
        except Exception:
            # One bad message never stalls the round: logged, counted, looked at again later.
            logger.exception("Reconciling a message failed; it is looked at again later", extra=key.to_dict())
            counts[RoundCount.ERRORS] += 1
            _push_back(repository, key, int(now.timestamp()) + settings.redrive_after_seconds)
            continue
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == MessageOutcome.REDRIVEN:
            metrics.add_metric(name=Metric.REDRIVEN, unit=MetricUnit.Count, value=1)


def _push_back(repository: MessageRepository, key: MessageKey, due_at: int) -> None:
    try:
        repository.set_due(key, due_at)
    except Exception:
        logger.exception("Could not push the message's due time back", extra=key.to_dict())


# How far back each round looks for messages never claimed (several rounds, so a missed round or
# two loses nothing; each message's head is read about this many seconds / round interval times).
SWEEP_WINDOW_SECONDS = 180
# Head reads (BatchGetItem of up to 100 keys) the sweep keeps in flight at once: its time is then
# about its messages / 100 / SWEEP_READERS round trips.
SWEEP_READERS = 8
_HEADS_PER_READ = 100


@dataclass(frozen=True)
class SweepOutcome:
    marked: int  # never-claimed messages marked due
    finished: bool  # False: the budget ran out before the window's newest minute


def sweep_unclaimed(
    repository: MessageRepository, settings: Settings, now: datetime, budget: RoundBudget | None = None
) -> SweepOutcome:
    """Mark due every message accepted a while ago that no dispatcher ever claimed.

    A message on the success path has no due time (its queue message guards it). If its ingest run
    died between the store and the enqueue (a crash, a restart), nothing was queued: this sweep
    finds it once it is `redrive_after_seconds` old, and the due walk (this round or the next)
    re-drives it. A message the queue holds for a short delay (SCHEDULED, no index entry) is found
    the same way a re-drive window after its due time: the activity item of its due minute names it
    (activity.note_due_later), and the lost queue copy is re-driven.
    Its work follows the messages accepted in its window, not the number of senders:
    it reads the window's activity items (a few queries a minute, whatever the senders), whose
    named ids are the messages of senders that sent one or a few that minute, and, for the busy
    senders only, their acceptance index over the window; then the heads, SWEEP_READERS reads at a
    time. Reads only, but for the marks.

    Oldest first: should the budget run out, the next round starts again at what is then the
    oldest, so every message is swept before it leaves the window as long as a round gets through a
    minute's traffic (the capacity bench measures how many messages a round reads).
    """
    until = now - timedelta(seconds=settings.redrive_after_seconds)
    since = until - timedelta(seconds=max(SWEEP_WINDOW_SECONDS, settings.redrive_after_seconds))
    epoch = int(now.timestamp())
    marked = 0
    with ThreadPoolExecutor(max_workers=SWEEP_READERS) as readers:
        for keys in _accepted_in_window(repository, since, until):
            if budget is not None and budget.spent:
                return SweepOutcome(marked, finished=False)
            batches = [keys[start : start + _HEADS_PER_READ] for start in range(0, len(keys), _HEADS_PER_READ)]
            for heads in readers.map(repository.get_heads, batches):
                marked += _mark_never_claimed(repository, heads, since, until, epoch)
    return SweepOutcome(marked, finished=True)


def _accepted_in_window(repository: MessageRepository, since: datetime, until: datetime) -> Iterator[list[MessageKey]]:
    """The keys of the messages accepted in [since, until], SWEEP_READERS reads' worth at a time: the
    activity items' named ids, oldest minute first, then each busy sender's acceptance index over
    the whole window (one query per shard however many minutes it was busy)."""
    named: dict[MessageKey, None] = {}
    busy: dict[str, None] = {}  # in the order first met: oldest minute first
    for minute in range(int(since.timestamp()) // 60, int(until.timestamp()) // 60 + 1):
        for activity in repository.activity(minute):
            # Once each: a message due later can be named in its acceptance minute and its due minute.
            named.update(dict.fromkeys(activity.named_keys()))
            if activity.busy:
                busy.setdefault(activity.sender_id)
    yield from _waves(iter(named))
    for sender_id in busy:
        # Read as the waves go (not listed first): the budget, checked between waves, bounds it.
        yield from _waves(key for key in repository.iter_accepted(sender_id, since, until) if key not in named)


def _waves(keys: Iterator[MessageKey]) -> Iterator[list[MessageKey]]:
    """`keys` in lists of SWEEP_READERS reads' worth, each taken from `keys` only when asked for."""
    while wave := list(islice(keys, SWEEP_READERS * _HEADS_PER_READ)):
        yield wave


# What a message is until a dispatcher claims it: PENDING, or SCHEDULED while the queue holds it.
_WAITING_FOR_A_CLAIM = frozenset({Status.PENDING, Status.SCHEDULED})


def _mark_never_claimed(
    repository: MessageRepository, heads: list[MessageHead], since: datetime, until: datetime, epoch: int
) -> int:
    marked = 0
    for head in heads:
        # A message the queue holds for a short delay should be claimed from its due time on.
        expected_claim = max(head.accepted_at.timestamp(), head.not_before or 0)
        in_window = since.timestamp() <= expected_claim <= until.timestamp()
        never_claimed = head.status in _WAITING_FOR_A_CLAIM and head.enqueued_run < head.run
        if in_window and never_claimed and head.due_at is None and not head.leased(epoch):
            repository.set_due(head.key, epoch)
            marked += 1
    return marked


# At most this many dead letters are taken back per round (the rest wait for the next minute).
MAX_RESCUES_PER_ROUND = 100


def rescue_dead_letters(repository: MessageRepository, dead_letters: MessageQueue, now: datetime) -> int:
    """Take back queue messages the dispatcher failed on too often: mark each message due now, so
    this round's (or the next) re-drive sends it again (and keeps doing so, with backoff, until it expires).

    A message delivered at its first attempt has no due time (its queue message guards it until the
    claim): without this, a message whose dispatches all failed would wait in the dead-letter queue.
    """
    rescued = 0
    while rescued < MAX_RESCUES_PER_ROUND:
        received = dead_letters.receive_json()
        if not received:
            break
        for receipt, payload in received:
            if isinstance(payload.get("senderId"), str) and isinstance(payload.get("messageId"), str):
                key = MessageKey(payload["senderId"], payload["messageId"])
                head = repository.get_head(key)
                if head is not None and not head.is_terminal:
                    repository.set_due(key, int(now.timestamp()))
            dead_letters.delete(receipt)
            rescued += 1
    return rescued


# Re-drives without progress after which a message counts as stuck: it raises an alarm and later
# re-drives back off. Never a reason to FAIL it: Relay's own trouble only delays a message until it
# is delivered or expires (and then its FAILED reason names what kept it).
MAX_REDRIVES = 5
MAX_REDRIVE_BACKOFF_SECONDS = 3600


def redrive_delay(settings: Settings, redrives: int) -> int:
    """How long after this re-drive the reconciler looks again: one window, doubling past the budget."""
    window = settings.redrive_after_seconds
    if redrives < MAX_REDRIVES:
        return window
    return min(window * 2 ** (redrives - MAX_REDRIVES + 1), max(window, MAX_REDRIVE_BACKOFF_SECONDS))


def _redrive_reason(head: MessageHead) -> str:
    """What kept the message: the Relay part that did not make progress (shown in REDRIVEN, and in
    FAILED's reason should it expire)."""
    if head.status == Status.PENDING and head.enqueued_run < head.run:
        return "not claimed from the delivery queue"
    if head.unresolved_attempt is not None:
        return "an attempt's step ended without recording its result"
    if head.status == Status.RETRYING:
        return "its delivery run ended without finishing"
    return "its delivery run did not start or ended early"


def _reconcile_one(
    repository: MessageRepository,
    queue: DeliveryQueue,
    settings: Settings,
    fail: FailExpired,
    head: MessageHead,
    now: datetime,
) -> MessageOutcome:
    epoch = int(now.timestamp())
    if head.is_terminal:
        repository.clear_due(head.key)
        return MessageOutcome.FINISHED
    if head.is_expired(now) and not head.attempt_in_flight(epoch):
        redriven = head.last_event(EventType.REDRIVEN)
        kept = f"; kept by: {redriven.details.get('reason')}" if redriven and redriven.details.get("reason") else ""
        reason = f"expired before it could be delivered{kept}"
        fail(head.key, head.run, reason[:256])
        return MessageOutcome.EXPIRED
    if head.leased(epoch) or head.attempt_in_flight(epoch):
        # A run holds it: look again when its lease (or its attempt's) ends.
        repository.set_due(head.key, max(head.lease_until or 0, head.attempt_lease_until or 0))
        return MessageOutcome.LEASED
    if head.redrives >= MAX_REDRIVES:
        # Stuck: alarm (MessagesStuck), keep re-driving with backoff.
        metrics.add_metric(name=Metric.STUCK, unit=MetricUnit.Count, value=1)
    details = {"previousStatus": head.status.value, "reason": _redrive_reason(head)}
    redriven = Event(EventType.REDRIVEN, now, head.run, head.attempts, details)
    due_at = min(epoch + redrive_delay(settings, head.redrives), max(head.ttl, epoch + 1))
    if repository.note_redrive(head, redriven, due_at, epoch) is None:
        return MessageOutcome.MOVED_ON
    try:
        queue.send(head.key, run=head.run)
    except RelayError:
        logger.exception("Re-drive could not enqueue; next round tries again")
        return MessageOutcome.ENQUEUE_FAILED
    return MessageOutcome.REDRIVEN


def reconcile_paused(
    repository: MessageRepository,
    store: TargetHealthRepository,
    queue: DeliveryQueue,
    settings: Settings,
    fail: FailExpired,
    head: MessageHead,
    now: datetime,
    seen: dict[tuple[str, str], TargetHealth],
) -> MessageOutcome:
    """A due PAUSED message: FAILED past its expiry; the probe when one is due; re-driven when its
    target has closed; otherwise due again at the next probe (functions/services/targeting/target_health.py)."""
    from functions.services.targeting.target_health import ResumeReason, paused_due_at, paused_origin, resume_message

    def resumed(origin: str, how: ResumeReason) -> MessageOutcome:
        done = resume_message(repository, queue, settings, head, origin, how, now)
        return MessageOutcome.RESUMED if done else MessageOutcome.MOVED_ON

    epoch = int(now.timestamp())
    if head.is_expired(now):
        fail(head.key, head.run, "expired while paused: its target stayed OPEN")
        return MessageOutcome.FAILED
    origin = paused_origin(head)
    if origin is None:  # cannot happen for a message paused here; re-drive rather than strand it
        return resumed("", ResumeReason.CLOSED)
    policy = BreakerPolicy.from_settings(settings)
    key = (head.key.sender_id, origin)
    health = seen.get(key) or store.get(*key, consistent=True)
    seen[key] = health
    if health.state == BreakerState.CLOSED:
        return resumed(origin, ResumeReason.CLOSED)
    if health.probe_due(epoch):
        deadline = epoch + policy.probe_delay(health.probes)
        if store.start_probe(health, head.key.message_id, epoch, deadline):
            seen[key] = replace(
                health, state=BreakerState.HALF_OPEN, probe_message=head.key.message_id, next_probe_at=deadline
            )
            resume_message(repository, queue, settings, head, origin, ResumeReason.PROBE, now)
            return MessageOutcome.PROBE
        health = store.get(*key, consistent=True)
        seen[key] = health
    repository.set_due(head.key, paused_due_at(head, health, policy, epoch))
    return MessageOutcome.PAUSED
