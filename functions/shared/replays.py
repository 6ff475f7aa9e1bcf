"""Bulk replay: `POST /messages/replay` starts a job, a state machine replays it page by page.

    POST /messages/replay {status, since?, until?, origin?}
        -> the filter is checked (schemas/replay.schema.json), the matching messages counted,
           the job recorded (RUNNING) and the replay machine started: 202 {jobId, matched}
    replay machine (statemachines/replay.asl.json): ReplayPage -> more? -> Wait -> ReplayPage ...
        each page: up to PAGE_SIZE messages of the window, oldest first; each one replayed exactly
        as `POST /messages/{id}/replay` does (operations.replay), but only from the filter's status
    GET /replays/{jobId} -> matched, replayed, skipped, failed, state RUNNING|SUCCEEDED|FAILED

A message matches when it is in `status` (FAILED or CANCELLED) and reached it within
[since, until] (`until` defaults to, and is capped at, the time of the request; `since` defaults to
24 hours before `until`), and, with `origin`, its targetUrl has that origin. The window is fixed
when the job starts: a replayed message that fails again leaves it (its new failure is later than
`until`), so a job always ends. A matched message that is no longer in the status when its page
comes (replayed or expired meanwhile) is `skipped`; one whose replay could not be recorded is
`failed`. The pages are throttled (PAGE_SIZE per page, a one-second Wait between pages); the
deliveries themselves go through the delivery queue like any other, under the targets' limits.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from functions.shared.clock import iso, parse_iso
from functions.shared.config import SCHEMA_DIR, Settings
from functions.shared.exceptions import (
    FieldError,
    MessageExpired,
    MessageInvalid,
    MessageNotFinished,
    MessageNotFound,
    RelayError,
    ReplayJobNotFound,
)
from functions.shared.json_text import loads_strict
from functions.shared.model import Status, from_epoch_ms
from functions.shared.observability import logger
from functions.shared.operations import replay
from functions.shared.origins import origin_of
from functions.shared.queue import DeliveryQueue
from functions.shared.replay_repository import ReplayRepository
from functions.shared.workflows import Workflows

REPLAY_SCHEMA_PATH = SCHEMA_DIR / "replay.schema.json"


@lru_cache(maxsize=1)
def replay_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(REPLAY_SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def _limit(name: str) -> int:
    return int(replay_schema()["x-relay-replay"][name])


DEFAULT_WINDOW = timedelta(hours=_limit("defaultWindowHours"))
PAGE_SIZE = _limit("pageSize")
# One job replays at most this many messages (a bounded run: about ten history events a page);
# a wider filter is refused with 400, so the caller narrows the window or runs several jobs.
MAX_MESSAGES_PER_JOB = _limit("maxMessagesPerJob")


class JobState:
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


_JOB_ID = re.compile(r"[0-9a-f]{32}")
_COUNTERS = ("replayed", "skipped", "failed")


@dataclass(frozen=True)
class ReplayFilter:
    status: Status
    since: datetime
    until: datetime
    origin: str | None = None

    def to_dict(self) -> dict[str, Any]:
        view: dict[str, Any] = {"status": self.status.value, "since": iso(self.since), "until": iso(self.until)}
        if self.origin:
            view["origin"] = self.origin
        return view

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> ReplayFilter:
        """A filter as `to_dict` wrote it (the job record, the state machine's input)."""
        return cls(
            Status(stored["status"]), parse_iso(stored["since"]), parse_iso(stored["until"]), stored.get("origin")
        )

    def selects(self, target_url: str) -> bool:
        if self.origin is None:
            return True
        try:
            return origin_of(target_url) == self.origin
        except ValueError:
            return False


@lru_cache(maxsize=1)
def _validator() -> Any:
    # Imported on first use: the replay job's pages and the API's other routes never load jsonschema.
    from jsonschema import Draft202012Validator, FormatChecker

    schema = replay_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker(formats=("date-time",)))


# Moments a window may name: anything outside cannot hold a message, and the extremes would
# overflow once converted to UTC or widened by the default window.
MIN_YEAR, MAX_YEAR = 2001, 9998


def _year_in_range(stamp: Any) -> bool:
    return isinstance(stamp, str) and MIN_YEAR <= parse_iso(stamp).year <= MAX_YEAR


def _moment_error(path: str) -> FieldError:
    return FieldError(path, "must be an RFC 3339 date-time with a time zone, e.g. 2026-01-31T12:00:00Z")


def parse_filter(body: str | None, now: datetime) -> ReplayFilter:
    """The filter of a `POST /messages/replay` body; MessageInvalid naming each bad field."""
    try:
        document = loads_strict(body) if body else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise MessageInvalid([FieldError("$", "the filter must be a JSON object")], "The filter is invalid.")
    errors = list(_validator().iter_errors(document))
    moments = [error for error in errors if error.validator == "format"]
    details = [_moment_error(error.json_path) for error in moments]
    from functions.shared.validation import schema_field_errors

    details += schema_field_errors([error for error in errors if error.validator != "format"])
    details += [
        FieldError(f"$.{name}", f"must be a date-time between {MIN_YEAR} and {MAX_YEAR}")
        for name in ("since", "until")
        if name in document and f"$.{name}" not in {d.path for d in details} and not _year_in_range(document[name])
    ]
    if details:
        raise MessageInvalid(details, "The filter is invalid.")
    until = min(parse_iso(document["until"]), now) if "until" in document else now
    since = parse_iso(document["since"]) if "since" in document else until - DEFAULT_WINDOW
    if since > until:
        raise MessageInvalid([FieldError("$.since", "must not be later than until")], "The filter is invalid.")
    try:
        origin = origin_of(document["origin"]) if "origin" in document else None
    except ValueError:
        raise MessageInvalid(
            [FieldError("$.origin", "must be an http(s) origin with a host")], "The filter is invalid."
        ) from None
    return ReplayFilter(Status(document["status"]), since, until, origin)


def _matching(repository: ReplayRepository, sender_id: str, job_filter: ReplayFilter, keys: list[Any]) -> list[Any]:
    """The keys among `keys` whose message the filter selects (all of them without an origin)."""
    if job_filter.origin is None:
        return keys
    messages = repository.get_messages(keys)
    selected = {message.head.key for message in messages if job_filter.selects(message.content.target_url)}
    return [key for key in keys if key in selected]


def count_matches(repository: ReplayRepository, sender_id: str, job_filter: ReplayFilter) -> int:
    """How many messages the filter matches now (stops counting past MAX_MESSAGES_PER_JOB).

    With an origin, each message in the window is read to learn its target: past
    MAX_MESSAGES_PER_JOB read, the window is too wide to count within the API's time (a 400).
    """
    matched, scanned, cursor = 0, 0, None
    while True:
        keys, cursor = repository.status_window(
            sender_id, job_filter.status, job_filter.since, job_filter.until, None, cursor
        )
        for start in range(0, len(keys), 100):
            matched += len(_matching(repository, sender_id, job_filter, keys[start : start + 100]))
        scanned += len(keys)
        if job_filter.origin is not None and scanned > MAX_MESSAGES_PER_JOB and cursor is not None:
            raise MessageInvalid(
                [
                    FieldError(
                        "$.since",
                        f"more than {MAX_MESSAGES_PER_JOB} {job_filter.status.value} messages in the window to "
                        "search for the origin; narrow the window",
                    )
                ],
                "The filter is invalid.",
            )
        if cursor is None or matched > MAX_MESSAGES_PER_JOB:
            return matched


def start_job(
    repository: ReplayRepository,
    workflows: Workflows,
    settings: Settings,
    sender_id: str,
    body: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Check the filter, count the matches, record the job and start its run: the 202 body."""
    now = now or datetime.now(UTC)
    job_filter = parse_filter(body, now)
    matched = count_matches(repository, sender_id, job_filter)
    if matched > MAX_MESSAGES_PER_JOB:
        raise MessageInvalid(
            [FieldError("$.since", f"the filter matches more than {MAX_MESSAGES_PER_JOB} messages; narrow the window")],
            "The filter is invalid.",
        )
    job_id = uuid.uuid4().hex
    # Nothing to replay: the job is over at once, without a run.
    state = JobState.RUNNING if matched else JobState.SUCCEEDED
    ttl = int(now.timestamp()) + settings.ttl_seconds
    repository.create_job(sender_id, job_id, job_filter.to_dict(), matched, state, now, ttl)
    if matched:
        payload = {"senderId": sender_id, "jobId": job_id, "filter": job_filter.to_dict(), "page": 0, "cursor": None}
        try:
            workflows.start(settings.replay_machine_arn, job_id, payload)
        except RelayError:
            repository.set_job_state(sender_id, job_id, JobState.FAILED, now, "the replay run could not be started")
            raise
    return {"jobId": job_id, "matched": matched, "state": state, "filter": job_filter.to_dict()}


def replay_page(
    repository: ReplayRepository, queue: DeliveryQueue, settings: Settings, job: dict[str, Any]
) -> dict[str, Any]:
    """Replay one page of a job (the state machine's ReplayPage step); the input of the next page.

    `job` is {senderId, jobId, filter, page, cursor}; the answer is the same with the next page
    and cursor (`cursor` None: the job is done and recorded SUCCEEDED) and this page's counts.
    """
    sender_id, job_id, page = str(job["senderId"]), str(job["jobId"]), int(job["page"])
    job_filter = ReplayFilter.from_dict(job["filter"])
    keys, cursor = repository.status_window(
        sender_id, job_filter.status, job_filter.since, job_filter.until, PAGE_SIZE, job.get("cursor")
    )
    counts = dict.fromkeys(_COUNTERS, 0)
    only_from = frozenset({job_filter.status})
    for key in _matching(repository, sender_id, job_filter, keys):
        try:
            replay(repository, queue, settings, sender_id, key.message_id, only_from, job_id)
            counts["replayed"] += 1
        except (MessageNotFinished, MessageExpired, MessageNotFound):
            counts["skipped"] += 1  # it moved on since it matched, or expired: nothing to start
        except RelayError:
            logger.exception("Replay of one message failed", extra={"jobId": job_id, "messageId": key.message_id})
            counts["failed"] += 1
    state = JobState.RUNNING if cursor else JobState.SUCCEEDED
    if not repository.record_page(sender_id, job_id, page, counts, state, datetime.now(UTC)):
        logger.info("Page already counted (a retried step)", extra={"jobId": job_id, "page": page})
    return {**job, "page": page + 1, "cursor": cursor, "counts": counts}


def fail_job(repository: ReplayRepository, job: dict[str, Any]) -> dict[str, Any]:
    """Record a job whose run failed (the state machine's Catch)."""
    error = job.get("error") or {}
    reason = str(error.get("Error") or "the replay run failed") if isinstance(error, dict) else "the replay run failed"
    repository.set_job_state(str(job["senderId"]), str(job["jobId"]), JobState.FAILED, datetime.now(UTC), reason)
    return {"jobId": job["jobId"], "state": JobState.FAILED}


def get_job(repository: ReplayRepository, sender_id: str, job_id: str) -> dict[str, Any]:
    """`GET /replays/{jobId}`: the job's filter, state and counters (404 for another sender's)."""
    stored = repository.get_job(sender_id, job_id) if _JOB_ID.fullmatch(job_id) else None
    if stored is None:
        raise ReplayJobNotFound(f"No replay job '{job_id[:200]}'.")
    view: dict[str, Any] = {
        "jobId": job_id,
        "state": stored["state"],
        "filter": stored["filter"],
        "matched": int(stored["matched"]),
        **{name: int(stored.get(name, 0)) for name in _COUNTERS},
        "createdAt": iso(from_epoch_ms(int(stored["createdAt"]))),
        "updatedAt": iso(from_epoch_ms(int(stored["updatedAt"]))),
    }
    if stored.get("reason"):
        view["reason"] = stored["reason"]
    return view
