"""The scheduler: swept every minute (EventBridge on AWS, a ScheduledWorker in `relay dev`), it hands
the queue what is due in its shards of the `due` index.

- A delayed message due within QUEUE_LEAD_SECONDS: sent to the delivery queue with the seconds that
  remain, and nothing written for it: its entry stays in the shard until the dispatcher's claim
  removes it (the claim that starts its delivery, so a cancelled one, never claimed, is skipped and
  its entry cleared here). Instead, each shard keeps a cursor (one small item, written at most once
  a sweep, only forward): the time up to which a sweep handed every message due there. A later
  sweep skips, without reading its head, every message entry due by the cursor. A message entry is
  never written due at or before a cursor: ingest puts it due QUEUE_LEAD_SECONDS before its time,
  and it waits here only when that is more than SCHEDULER_ENTRY_MARGIN_SECONDS (a minute) after
  its acceptance (else the queue's delay takes it), while a cursor is the start of a sweep that
  has already run: an entry due by then was written, and indexed, before that sweep queried its
  shard. (Were one missed all the same, it is re-driven as below, late by a re-drive window, never
  lost.) If a sweep fails for an entry, its cursor stays before that
  entry: the next sweep sends again from there (the dispatcher's claim makes a second queue copy
  harmless, and never attempts early).
- A handed message whose queue copy was lost (never claimed): its entry is still in the shard a
  re-drive window after its time, the head still SCHEDULED. The sweep then moves it to the
  reconciler's shard, due at once, and the reconciler's due walk re-drives it (a write on that
  failure path only; the entry leaves the scheduler's shard, so it is not looked at again).
- A schedule whose next firing is within SCHEDULE_LEAD_SECONDS: each such firing becomes an
  ordinary message from the schedule's sender through the ingest steps (validate, store, enqueue),
  with an id derived from the schedule and the firing's minute, so a firing processed twice is one
  message; then the schedule's next firing moves on (conditional on the one read). Schedules take
  no notice of the cursor: one may be written due in the past (created, resumed), and each is
  processed whenever it is due.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from functions.adapters.observability import logger
from functions.adapters.queue import DeliveryQueue
from functions.adapters.stores.schedule_repository import DueMessage, ScheduleKey, ScheduleRepository
from functions.contract.indexes import SCHEDULER_SHARDS
from functions.contract.request_shapes import RequestShape
from functions.domain.clock import iso_seconds
from functions.domain.config import Settings
from functions.domain.exceptions import RelayError
from functions.domain.model import MessageHead, MessageKey, Status
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
    UNCLAIMED = "unclaimed"  # handed ones never claimed a re-drive window after their time: to the reconciler
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
        _sweep_shard(repository, queue, settings, shard, now, done)
    return done.counts


def _sweep_shard(
    repository: ScheduleRepository, queue: DeliveryQueue, settings: Settings, shard: int, now: datetime, done: Sweep
) -> None:
    """One shard: its message entries due after its cursor are queued, those still there a re-drive
    window after their time go to the reconciler, its schedules due fire; then, when it queued any,
    its cursor moves on to `now` (or to just before the first that failed)."""
    epoch = int(now.timestamp())
    cursor: int | None = None  # read with the shard's first message entry: an idle sweep reads none
    # Due this long ago (its time plus a re-drive window passed) and still here: never claimed.
    unclaimed_by = epoch - QUEUE_LEAD_SECONDS - settings.redrive_after_seconds
    handed_until, handed = epoch, False
    for work in repository.scheduler_due(shard, epoch):
        for entry in work.messages:
            cursor = repository.scheduler_cursor(shard) if cursor is None else cursor
            if entry.due_at > cursor:
                handed = True
                queued = _guarded(done, lambda key=entry.key: _queue_message(repository, queue, key, now))
                if queued == SweepCount.ERRORS:
                    handed_until = min(handed_until, entry.due_at - 1)
            elif entry.due_at <= unclaimed_by:
                _guarded(done, lambda entry=entry: _hand_unclaimed(repository, entry, epoch))
        for schedule_key in work.schedules:
            _guarded(done, lambda k=schedule_key: _fire(repository, queue, settings, k, now))
    if handed and cursor is not None and handed_until > cursor:
        repository.advance_scheduler_cursor(shard, handed_until)


def _guarded(done: Sweep, step: Any) -> SweepCount:
    """One item's work; its failure is logged and counted, and the sweep goes on (the next retries)."""
    try:
        outcome: SweepCount = step()
    except (RelayError, ValueError):
        logger.exception("Scheduler step failed; the next sweep retries")
        outcome = SweepCount.ERRORS
    done.add(outcome)
    return outcome


def _queue_message(repository: ScheduleRepository, queue: DeliveryQueue, key: MessageKey, now: datetime) -> SweepCount:
    """Send a SCHEDULED message to the queue with the seconds that remain; write nothing (the cursor
    remembers it was handed)."""
    head = _waiting_head(repository, key)
    if head is None or head.not_before is None:
        return SweepCount.SKIPPED
    queue.send(key, head.run, delay_seconds=queue_delay(head.not_before, now.timestamp()))
    return SweepCount.QUEUED


def _hand_unclaimed(repository: ScheduleRepository, entry: DueMessage, epoch: int) -> SweepCount:
    """A handed message still in the shard a re-drive window after its time: its queue copy was lost.
    Moved to the reconciler's shard, due now (conditional on SCHEDULED, its run and its time), so the
    reconciler's due walk re-drives it."""
    head = _waiting_head(repository, entry.key)
    if head is None:
        return SweepCount.SKIPPED
    moved = repository.hand_scheduled_to_reconciler(head, epoch)
    return SweepCount.UNCLAIMED if moved is not None else SweepCount.SKIPPED


def _waiting_head(repository: ScheduleRepository, key: MessageKey) -> MessageHead | None:
    """The head while it is SCHEDULED; else None, and a finished (cancelled) one's entry leaves the shard."""
    head = repository.get_head(key)
    if head is not None and head.is_terminal:
        repository.clear_due(key)
    return head if head is not None and head.status == Status.SCHEDULED else None


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
