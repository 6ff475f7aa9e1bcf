"""The scheduler: swept every minute (EventBridge on AWS, a ScheduledWorker in `relay dev`), it hands
the queue what is due in its shards of the `due` index.

- A delayed message due within QUEUE_LEAD_SECONDS: sent to the delivery queue with the seconds that
  remain (the send first), then moved to the reconciler's shard, due a re-drive window after its
  time (conditional on SCHEDULED and the same due time). If that move fails, the next sweep sends
  again: the dispatcher's claim makes a second queue copy harmless, and never attempts early.
- A schedule whose next firing is within SCHEDULE_LEAD_SECONDS: each such firing becomes an
  ordinary message from the schedule's sender through the ingest steps (validate, store, enqueue),
  with an id derived from the schedule and the firing's minute, so a firing processed twice is one
  message; then the schedule's next firing moves on (conditional on the one read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from functions.adapters.observability import logger
from functions.adapters.queue import DeliveryQueue
from functions.adapters.stores.schedule_repository import ScheduleKey, ScheduleRepository
from functions.contract.indexes import SCHEDULER_SHARDS
from functions.contract.request_shapes import RequestShape
from functions.domain.clock import iso_seconds
from functions.domain.config import Settings
from functions.domain.exceptions import RelayError
from functions.domain.model import MessageKey, Status
from functions.domain.scheduling import (
    QUEUE_LEAD_SECONDS,
    SCHEDULE_LEAD_SECONDS,
    Schedule,
    firing_id,
    queue_delay,
)

if TYPE_CHECKING:  # the ingest steps load with the first firing (emit_firing), not at cold start
    from functions.services.http_api.responses import HttpAnswer
    from functions.services.ingest_payloads import ItemsState, StoredItem

# Firings one schedule may create in a sweep (a schedule fires at most once a minute).
MAX_FIRINGS_PER_SWEEP = 5


class SweepCount(StrEnum):
    QUEUED = "queued"  # delayed messages handed to the queue
    FIRED = "fired"  # schedule firings created
    SKIPPED = "skipped"  # moved on meanwhile (cancelled, claimed, paused, deleted)
    ERRORS = "errors"


@dataclass
class Sweep:
    counts: dict[str, int] = field(default_factory=lambda: {count.value: 0 for count in SweepCount})

    def add(self, count: SweepCount, value: int = 1) -> None:
        self.counts[count.value] += value


def sweep(
    repository: ScheduleRepository, queue: DeliveryQueue, settings: Settings, now: datetime | None = None
) -> dict[str, int]:
    """One sweep over every scheduler shard: what is due is queued (messages) or fired (schedules)."""
    now = now or datetime.now(UTC)
    done = Sweep()
    for shard in range(SCHEDULER_SHARDS):
        for work in repository.scheduler_due(shard, int(now.timestamp())):
            for key in work.messages:
                _guarded(done, lambda key=key: _queue_message(repository, queue, settings, key, now))
            for schedule_key in work.schedules:
                _guarded(done, lambda k=schedule_key: _fire(repository, queue, settings, k, now))
    return done.counts


def _guarded(done: Sweep, step: Any) -> None:
    """One item's work; its failure is logged and counted, and the sweep goes on (the next retries)."""
    try:
        done.add(step())
    except (RelayError, ValueError):
        logger.exception("Scheduler step failed; the next sweep retries")
        done.add(SweepCount.ERRORS)


def _queue_message(
    repository: ScheduleRepository, queue: DeliveryQueue, settings: Settings, key: MessageKey, now: datetime
) -> SweepCount:
    head = repository.get_head(key)
    if head is None or head.status != Status.SCHEDULED or head.not_before is None:
        if head is not None and head.is_terminal:
            repository.clear_due(key)
        return SweepCount.SKIPPED
    queue.send(key, head.run, delay_seconds=queue_delay(head.not_before, now.timestamp()))
    moved = repository.hand_scheduled_to_queue(head, head.not_before + settings.redrive_after_seconds)
    return SweepCount.QUEUED if moved is not None else SweepCount.SKIPPED


def _fire(
    repository: ScheduleRepository, queue: DeliveryQueue, settings: Settings, key: ScheduleKey, now: datetime
) -> SweepCount:
    schedule = repository.get_schedule(key.sender_id, key.name)
    if schedule is None or schedule.paused:
        return SweepCount.SKIPPED
    firings = schedule.firings_until(now + timedelta(seconds=SCHEDULE_LEAD_SECONDS), MAX_FIRINGS_PER_SWEEP)
    for due in firings:
        emit_firing(repository, queue, settings, schedule, due, now)
    following = schedule.cron.next_after(firings[-1] if firings else max(now, schedule.next_run_at))
    if firings and not repository.advance(schedule, following):
        return SweepCount.SKIPPED
    return SweepCount.FIRED if firings else SweepCount.SKIPPED


def firing_message(schedule: Schedule, due: datetime, now: datetime) -> dict[str, Any]:
    """The message of one firing: the schedule's message from its sender, due at the firing's time."""
    return {
        **schedule.message.to_dict(),
        "messageId": firing_id(schedule.name, due),
        "senderId": schedule.sender_id,
        "timestamp": iso_seconds(now),
        "notBefore": iso_seconds(due),
    }


def emit_firing(
    repository: ScheduleRepository,
    queue: DeliveryQueue,
    settings: Settings,
    schedule: Schedule,
    due: datetime,
    now: datetime,
) -> HttpAnswer:
    """One firing through the ingest steps (validate, store, enqueue): its answer (202, or 200
    duplicate when this firing was already processed)."""
    from functions.domain.validation import validate_message
    from functions.services.ingest import enqueue, store_item

    valid = validate_message(firing_message(schedule, due, now), settings, schedule.sender_id, now)
    request_id = f"schedule:{schedule.name}:{int(due.timestamp())}"
    item = store_item(
        {"requestId": request_id, "message": valid.message, "contentHash": valid.content_hash},
        repository,
        settings,
        now=now,
    )
    if "response" in item:
        return item["response"]
    state: ItemsState[StoredItem] = {"requestId": request_id, "shape": RequestShape.MESSAGE, "items": [item]}
    return enqueue(state, repository, queue, now)["response"]


def cancel_upcoming_firings(repository: ScheduleRepository, schedule: Schedule, now: datetime, cancel: Any) -> int:
    """Cancel the firings already created for the lead window (a schedule deleted or paused fires no
    more): their ids are derived, so each is found by key. `cancel(head)` cancels one; the count."""
    cancelled = 0
    horizon = now + timedelta(seconds=SCHEDULE_LEAD_SECONDS + QUEUE_LEAD_SECONDS)
    moment = schedule.cron.next_after(now - timedelta(seconds=SCHEDULE_LEAD_SECONDS + 60))
    for _ in range(MAX_FIRINGS_PER_SWEEP * 2):
        if moment > horizon:
            break
        head = repository.get_head(MessageKey(schedule.sender_id, firing_id(schedule.name, moment)))
        if head is not None and head.status == Status.SCHEDULED and cancel(head):
            cancelled += 1
        moment = schedule.cron.next_after(moment)
    return cancelled
