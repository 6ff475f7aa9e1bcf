"""Cron schedules as plain logic: PUT/GET/DELETE /schedules/{name}, GET /schedules, pause/resume.

A schedule's message is checked by the very rules of POST /messages (validate_message), so a
schedule that is accepted fires messages that are accepted; its problems are named under
`$.message`. Deleting or pausing a schedule also cancels the firings already created for the
next minutes (their ids are derived), so it fires no more.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from functions.adapters.stores.schedule_repository import ScheduleRepository
from functions.domain.clock import iso_seconds
from functions.domain.config import Settings
from functions.domain.exceptions import FieldError, MessageInvalid, RelayError, ScheduleNotFound
from functions.domain.model import Event, EventType, MessageHead
from functions.domain.scheduling import Cron, Schedule, ScheduleMessage, cron_problem, timezone_problem
from functions.domain.web.json_text import loads_strict
from functions.services.scheduling.scheduler import cancel_upcoming_firings

# A name fits a firing's id (`schedule-<name>-<yyyymmddThhmmZ>`, at most 128 characters).
SCHEDULE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_FIELDS = frozenset({"cron", "timezone", "message"})
_MESSAGE_FIELDS = frozenset({"targetUrl", "method", "headers", "body", "retry", "timeoutSeconds"})


def schedule_view(schedule: Schedule) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": schedule.name,
        "cron": schedule.cron.expression,
        "timezone": schedule.cron.timezone,
        "nextRunAt": iso_seconds(schedule.next_run_at),
        "paused": schedule.paused,
        "message": schedule.message.to_dict(),
    }
    if schedule.created_at:
        view["createdAt"] = iso_seconds(schedule.created_at)
    if schedule.updated_at:
        view["updatedAt"] = iso_seconds(schedule.updated_at)
    return view


def _checked_name(name: str) -> str:
    if not SCHEDULE_NAME.fullmatch(name):
        raise MessageInvalid([FieldError("$.name", "must be 1 to 64 letters, digits and . _ -")])
    return name


def _body_errors(document: Any, sender_id: str, settings: Settings, now: datetime) -> list[FieldError]:
    if not isinstance(document, dict):
        return [FieldError("$", "must be a JSON object {cron, timezone?, message}")]
    details = [FieldError(f"$.{name}", f"'{name}' is not a known field") for name in document if name not in _FIELDS]
    cron, zone, message = document.get("cron"), document.get("timezone", "UTC"), document.get("message")
    if not isinstance(cron, str):
        details.append(FieldError("$.cron", "is required: a five-field cron expression, e.g. '*/5 * * * *'"))
    elif problem := cron_problem(cron):
        details.append(FieldError("$.cron", problem))
    if not isinstance(zone, str) or (problem := timezone_problem(zone)):
        details.append(FieldError("$.timezone", "is not a known IANA time zone, e.g. UTC or Europe/Berlin"))
    if not isinstance(message, dict):
        details.append(FieldError("$.message", "is required: an object {targetUrl, method?, headers?, body?, ...}"))
    else:
        details.extend(_message_errors(message, sender_id, settings, now))
    return details


def _message_errors(message: dict[str, Any], sender_id: str, settings: Settings, now: datetime) -> list[FieldError]:
    """The rules of POST /messages on the schedule's message, its problems named under `$.message`."""
    from functions.domain.validation import validate_message

    extra = [
        FieldError(f"$.message.{name}", f"'{name}' is not a known field")
        for name in message
        if name not in _MESSAGE_FIELDS
    ]
    probe = {**message, "messageId": "schedule-check", "senderId": sender_id, "timestamp": iso_seconds(now)}
    try:
        validate_message(probe, settings, sender_id, now)
    except MessageInvalid as invalid:
        extra.extend(FieldError("$.message" + detail.path[1:], detail.message) for detail in invalid.details)
    except RelayError as rejection:
        extra.append(FieldError("$.message", str(rejection)))
    return extra


def put_schedule(
    repository: ScheduleRepository,
    settings: Settings,
    sender_id: str,
    name: str,
    raw_body: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Create or replace a schedule; its next firing from now (a replaced schedule keeps `paused`)."""
    now = now or datetime.now(UTC)
    _checked_name(name)
    try:
        document = loads_strict(raw_body or "")
    except ValueError:
        raise MessageInvalid([FieldError("$", "must be a JSON object {cron, timezone?, message}")]) from None
    if details := _body_errors(document, sender_id, settings, now):
        raise MessageInvalid(details[:50], "The schedule is invalid.")
    cron = Cron(document["cron"], document.get("timezone", "UTC"))
    existing = repository.get_schedule(sender_id, name)
    schedule = Schedule(
        sender_id=sender_id,
        name=name,
        cron=cron,
        message=ScheduleMessage.from_dict(document["message"]),
        next_run_at=cron.next_after(now),
        paused=existing.paused if existing else False,
        created_at=existing.created_at if existing and existing.created_at else now,
        updated_at=now,
    )
    repository.put_schedule(schedule)
    return schedule_view(schedule)


def _existing(repository: ScheduleRepository, sender_id: str, name: str) -> Schedule:
    schedule = repository.get_schedule(sender_id, _checked_name(name))
    if schedule is None:
        raise ScheduleNotFound(f"No schedule '{name}'.")
    return schedule


def get_schedule(repository: ScheduleRepository, sender_id: str, name: str) -> dict[str, Any]:
    return schedule_view(_existing(repository, sender_id, name))


def list_schedules(repository: ScheduleRepository, sender_id: str) -> dict[str, Any]:
    return {"items": [schedule_view(schedule) for schedule in repository.list_schedules(sender_id)]}


def _canceller(repository: ScheduleRepository, now: datetime) -> Any:
    def cancel(head: MessageHead) -> bool:
        event = Event(EventType.CANCELLED, now, head.run, head.attempts, {"reason": "schedule stopped"})
        return repository.cancel(head, event) is not None

    return cancel


def delete_schedule(repository: ScheduleRepository, sender_id: str, name: str) -> dict[str, Any]:
    """Delete a schedule and cancel the firings it already created for the next minutes."""
    now = datetime.now(UTC)
    deleted = repository.delete_schedule(sender_id, _checked_name(name))
    if deleted is None:
        raise ScheduleNotFound(f"No schedule '{name}'.")
    cancelled = cancel_upcoming_firings(repository, deleted, now, _canceller(repository, now))
    return {"name": name, "deleted": True, "cancelledFirings": cancelled}


def set_paused(repository: ScheduleRepository, sender_id: str, name: str, paused: bool) -> dict[str, Any]:
    """Pause (no firing until resumed; upcoming ones cancelled) or resume (from the next firing after now)."""
    now = datetime.now(UTC)
    schedule = _existing(repository, sender_id, name)
    updated = repository.set_paused(schedule, paused, schedule.cron.next_after(now), now)
    if updated is None:
        raise ScheduleNotFound(f"No schedule '{name}'.")
    if paused:
        cancel_upcoming_firings(repository, schedule, now, _canceller(repository, now))
    return schedule_view(updated)
