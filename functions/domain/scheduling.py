"""Time rules of delayed messages and cron schedules, pure (no AWS): the one place they are decided.

A delayed message's wait rides the delivery queue's own delay when its due time is at most
QUEUE_LEAD_SECONDS (plus a margin) away (SQS delays up to 900 s); a later one waits in the scheduler's shards of
the `due` index, due QUEUE_LEAD_SECONDS before its time, and the scheduler (swept every minute)
hands it to the queue with the seconds that remain. So every message reaches the queue early and
the queue's delay, not the sweep, sets the second it is sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Due within this many seconds: queued at once with the delay that remains. Over twice the
# scheduler's period (60 s), under SQS's 900 s ceiling.
QUEUE_LEAD_SECONDS = 300
# A message waits in the scheduler only when due more than this much beyond QUEUE_LEAD_SECONDS: its
# entry (due QUEUE_LEAD_SECONDS early) is then due a minute after its acceptance at the earliest,
# so no sweep's cursor (the start of a sweep) can have passed it by the time it is written and
# indexed (scheduler.py). One due within QUEUE_LEAD_SECONDS + this rides the queue's delay (< 900 s).
SCHEDULER_ENTRY_MARGIN_SECONDS = 60
# A schedule's firing is created this long before its time (over the scheduler's 60 s period, so
# it is queued before its minute and the queue's delay sends it on the second), and no earlier:
# a schedule deleted or paused has at most the firings of this window to cancel.
SCHEDULE_LEAD_SECONDS = 90
# SQS's longest DelaySeconds.
MAX_QUEUE_DELAY_SECONDS = 900


def queue_delay(not_before: int, now: float) -> int:
    """Whole seconds the queue must hold a message due at `not_before` (epoch s), at most SQS's 900."""
    return min(MAX_QUEUE_DELAY_SECONDS, max(0, math.ceil(not_before - now)))


def waits_in_scheduler(not_before: int, accepted_at: float) -> bool:
    """True when the due time is too far for the queue's delay: the scheduler queues it later."""
    return not_before - accepted_at > QUEUE_LEAD_SECONDS + SCHEDULER_ENTRY_MARGIN_SECONDS


@dataclass(frozen=True)
class Cron:
    """A five-field cron expression in a time zone (IANA name, default UTC)."""

    expression: str
    timezone: str = "UTC"

    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after `moment`, in UTC, whole minutes (DST as the zone has it)."""
        from croniter import croniter  # imported here: only the scheduler and the API load it

        local = moment.astimezone(ZoneInfo(self.timezone))
        following = croniter(self.expression, local).get_next(datetime)
        return following.astimezone(UTC).replace(second=0, microsecond=0)


def cron_problem(expression: str) -> str | None:
    """Why `expression` is not a five-field cron expression, or None."""
    from croniter import CroniterError, croniter

    if len(expression.split()) != 5:
        return "must have five fields: minute hour day-of-month month day-of-week"
    if not croniter.is_valid(expression):
        return "is not a valid cron expression"
    try:
        croniter(expression, datetime.now(UTC)).get_next(datetime)
    except (CroniterError, ValueError, OverflowError):
        return "never fires (no such date, e.g. 30 February)"
    return None


def timezone_problem(name: str) -> str | None:
    """Why `name` is not an IANA time zone, or None."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "is not a known IANA time zone, e.g. UTC or Europe/Berlin"
    return None


def firing_id(schedule_name: str, due: datetime) -> str:
    """The message id of a schedule's firing at `due`: one id per schedule and minute, so a firing
    processed twice is one message."""
    return f"schedule-{schedule_name}-{due.astimezone(UTC):%Y%m%dT%H%MZ}"


@dataclass(frozen=True)
class ScheduleMessage:
    """What each firing of a schedule delivers (a message's fields, without ids and time)."""

    target_url: str
    method: str = "POST"
    headers: dict[str, str] | None = None
    body: Any = None
    retry: dict[str, int] | None = None
    timeout_seconds: int | None = None

    def to_dict(self) -> dict[str, Any]:
        view: dict[str, Any] = {"targetUrl": self.target_url, "method": self.method}
        for name, value in (
            ("headers", self.headers),
            ("body", self.body),
            ("retry", self.retry),
            ("timeoutSeconds", self.timeout_seconds),
        ):
            if value is not None:
                view[name] = value
        return view

    @staticmethod
    def from_dict(document: dict[str, Any]) -> ScheduleMessage:
        return ScheduleMessage(
            target_url=str(document["targetUrl"]),
            method=str(document.get("method", "POST")),
            headers=document.get("headers"),
            body=document.get("body"),
            retry=document.get("retry"),
            timeout_seconds=document.get("timeoutSeconds"),
        )


@dataclass(frozen=True)
class Schedule:
    """A sender's cron schedule: each firing is an ordinary message from that sender."""

    sender_id: str
    name: str
    cron: Cron
    message: ScheduleMessage
    next_run_at: datetime
    paused: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def firings_until(self, horizon: datetime, most: int) -> list[datetime]:
        """The firings from `next_run_at` up to `horizon` (at most `most`), one per minute at most."""
        times: list[datetime] = []
        moment = self.next_run_at
        while moment <= horizon and len(times) < most:
            times.append(moment)
            moment = self.cron.next_after(moment)
        return times
