"""Bulk replay: `POST /messages/replay` starts a job, a state machine replays it run by run.

    POST /messages/replay {status, since?, until?, origin?}
        -> the filter is checked (schemas/replay.schema.json), the window's first page looked at,
           the job recorded (RUNNING) and the replay machine started: 202 {jobId, matched}
    replay machine (statemachines/replay.asl.json): ReplayPage -> more? -> Wait -> ReplayPage ...
        each run (one Lambda invocation): pages of up to `pageSize` messages of the window, oldest
        first, from the cursor stored in the job item, until the window ends, `pagesPerRun` pages
        are done or the invocation's time runs short; each match replayed exactly as
        `POST /messages/{id}/replay` does (operations.replay), but only while it is still in the
        very failure (or cancellation) the job matched
    GET /replays/{jobId} -> matched, replayed, skipped, failed, state RUNNING|SUCCEEDED|FAILED

A message matches when it is in `status` (FAILED or CANCELLED) and reached it within
[since, until] (`until` defaults to, and is capped at, the time of the request; `since` defaults to
24 hours before `until`), and, with `origin`, its targetUrl has that origin. The window is fixed
when the job starts: a replayed message that fails again leaves it (its new failure is later than
`until`), so a job always ends, whatever its size: nothing counts the matches first.

`matched` counts the matches the job has found so far: it grows page by page while the job is
RUNNING and is final once it is SUCCEEDED (then matched = replayed + skipped + failed). The 202's
`matched` is what the API found in the window's first page (exact for a job of one page; none
found and no more pages: the job is SUCCEEDED at once, without a run).

Each replay is conditional on the message's status index sort key being the one the job read: a
message replayed meanwhile (by hand, or by another job over the same window, which may already have
seen it fail again) is `skipped`, so concurrent jobs replay each message once. One whose replay
could not be recorded is `failed`. The deliveries themselves go through the delivery queue like
any other, under the targets' limits.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any

from functions.adapters.observability import logger
from functions.adapters.queue import DeliveryQueue
from functions.adapters.stores.replay_repository import ReplayRepository, WindowEntry
from functions.adapters.workflows import Workflows
from functions.contract.settings_names import Setting
from functions.domain.clock import iso, parse_iso
from functions.domain.config import Settings, replay_schema
from functions.domain.exceptions import (
    FieldError,
    MessageExpired,
    MessageInvalid,
    MessageNotFinished,
    MessageNotFound,
    RelayError,
    ReplayJobNotFound,
)
from functions.domain.model import Status, from_epoch_ms
from functions.domain.web.json_text import loads_strict
from functions.domain.web.origins import origin_of
from functions.services.http_api.operations import replay


def _limit(name: str) -> int:
    return int(replay_schema()["x-relay-replay"][name])


DEFAULT_WINDOW = timedelta(hours=_limit("defaultWindowHours"))
PAGE_SIZE = _limit("pageSize")
# A run (one invocation of the replay function, one round of the machine: about ten history events)
# replays at most this many pages; with a second between runs, a STANDARD run's 25,000 events hold
# about 2,500 rounds, millions of messages at the defaults.
PAGES_PER_RUN = _limit("pagesPerRun")
# A run starts no further page with less than this left of its invocation (a page's worst case with
# throttled DynamoDB calls and SDK retries; the function's timeout is stacks/constructs/replay.py's).
RUN_RESERVE_MS = 20_000


@dataclass(frozen=True)
class Paging:
    """How a job walks its window: messages per page, pages per run."""

    page_size: int = PAGE_SIZE
    pages_per_run: int = PAGES_PER_RUN

    @classmethod
    def from_environment(cls) -> Paging:
        def read(name: str, default: int) -> int:
            raw = os.environ.get(name, "")
            return max(1, int(raw)) if raw.strip() else default

        # Local and test overrides of the paging (the deployed stack leaves them unset).
        return cls(read(Setting.REPLAY_PAGE_SIZE, PAGE_SIZE), read(Setting.REPLAY_PAGES_PER_RUN, PAGES_PER_RUN))


class JobState(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class ReplayCount(StrEnum):
    """A job's counters (and a run's): matched = replayed + skipped + failed once it is SUCCEEDED."""

    MATCHED = "matched"
    REPLAYED = "replayed"
    SKIPPED = "skipped"  # it moved on since it matched (another job, by hand), or expired
    FAILED = "failed"  # its replay could not be recorded


_JOB_ID = re.compile(r"[0-9a-f]{32}")
_COUNTERS = (ReplayCount.REPLAYED, ReplayCount.SKIPPED, ReplayCount.FAILED)


@dataclass(frozen=True)
class ReplayStep:
    """The replay machine's step input: {senderId, jobId} (ReplayPage), and with `action: fail` its
    Catch's `error` (RecordFailure)."""

    sender_id: str
    job_id: str
    fail: bool = False
    error: str = ""  # the failed run's error name

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> ReplayStep:
        sender_id, job_id = event.get("senderId"), event.get("jobId")
        if not isinstance(sender_id, str) or not isinstance(job_id, str):
            raise ValueError(f"a replay step needs senderId and jobId strings, not {sender_id!r}, {job_id!r}"[:200])
        error = event.get("error")
        name = str(error.get("Error") or "") if isinstance(error, Mapping) else ""
        return cls(sender_id, job_id, event.get("action") == "fail", name)


@dataclass(frozen=True)
class ReplayRunResult:
    """One run's answer: the machine's next input (senderId, jobId, done) and what the run did."""

    sender_id: str
    job_id: str
    done: bool  # no page left: the job is recorded SUCCEEDED, or it is not RUNNING any more
    pages: int
    counts: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "senderId": self.sender_id,
            "jobId": self.job_id,
            "done": self.done,
            "pages": self.pages,
            "counts": dict(self.counts),
        }


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
    from functions.domain.validation import schema_field_errors

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


def _matching(repository: ReplayRepository, job_filter: ReplayFilter, entries: list[WindowEntry]) -> list[WindowEntry]:
    """The entries whose message the filter selects (all of them without an origin)."""
    if job_filter.origin is None:
        return entries
    selected = set()
    for start in range(0, len(entries), 100):  # BatchGetItem reads 100 keys at most
        messages = repository.get_messages([entry.key for entry in entries[start : start + 100]])
        selected |= {message.head.key for message in messages if job_filter.selects(message.content.target_url)}
    return [entry for entry in entries if entry.key in selected]


def start_job(
    repository: ReplayRepository,
    workflows: Workflows,
    settings: Settings,
    sender_id: str,
    body: str | None,
    now: datetime | None = None,
    paging: Paging | None = None,
) -> dict[str, Any]:
    """Check the filter, look at the window's first page, record the job and start its run: the 202 body.

    Nothing counts the whole window here (a job may match any number of messages): `matched` is
    what the first page holds; the job's own pages replace and then grow it.
    """
    now = now or datetime.now(UTC)
    paging = paging or Paging.from_environment()
    job_filter = parse_filter(body, now)
    entries, cursor = repository.status_window(
        sender_id, job_filter.status, job_filter.since, job_filter.until, paging.page_size, None
    )
    matched = len(_matching(repository, job_filter, entries))
    job_id = uuid.uuid4().hex
    # Nothing in the window: the job is over at once, without a run.
    state = JobState.RUNNING if matched or cursor else JobState.SUCCEEDED
    ttl = int(now.timestamp()) + settings.ttl_seconds
    repository.create_job(sender_id, job_id, job_filter.to_dict(), matched, state, now, ttl)
    if state == JobState.RUNNING:
        try:
            workflows.start(settings.replay_machine_arn, job_id, {"senderId": sender_id, "jobId": job_id})
        except RelayError:
            repository.set_job_state(sender_id, job_id, JobState.FAILED, now, "the replay run could not be started")
            raise
    return {"jobId": job_id, "matched": matched, "state": state.value, "filter": job_filter.to_dict()}


def replay_entries(
    repository: ReplayRepository,
    queue: DeliveryQueue,
    settings: Settings,
    sender_id: str,
    job_id: str,
    job_filter: ReplayFilter,
    entries: list[WindowEntry],
) -> dict[str, int]:
    """Replay one page's matches, each only while it is in the failure the window showed: the counts."""
    counts: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
    only_from = frozenset({job_filter.status})
    for entry in entries:
        try:
            replay(repository, queue, settings, sender_id, entry.key.message_id, only_from, job_id, entry.sort)
            counts[ReplayCount.REPLAYED] += 1
        except (MessageNotFinished, MessageExpired, MessageNotFound):
            counts[ReplayCount.SKIPPED] += 1
        except RelayError:
            logger.exception("Replay of one message failed", extra={"jobId": job_id, "messageId": entry.key.message_id})
            counts[ReplayCount.FAILED] += 1
    return counts


def replay_run(
    repository: ReplayRepository,
    queue: DeliveryQueue,
    settings: Settings,
    job: ReplayStep,
    paging: Paging | None = None,
    remaining_ms: Callable[[], int] | None = None,
) -> ReplayRunResult:
    """One run of a job (the state machine's ReplayPage step): pages from where the job item stands.

    The answer adds to the job `done` (no page left: the job is recorded SUCCEEDED, or it is not
    RUNNING any more) and this run's `pages` and `counts`. Where the job
    stands is read from its item, never from the input, so a retried or repeated run resumes after
    the last page recorded. The run stops after `pages_per_run` pages, or when `remaining_ms()`
    (the invocation's time left) falls under RUN_RESERVE_MS.
    """
    paging = paging or Paging.from_environment()
    sender_id, job_id = job.sender_id, job.job_id
    totals: dict[str, int] = {ReplayCount.MATCHED: 0, **dict.fromkeys(_COUNTERS, 0)}
    pages = 0

    def answer(done: bool) -> ReplayRunResult:
        return ReplayRunResult(sender_id, job_id, done, pages, totals)

    stored = repository.get_job(sender_id, job_id)
    if stored is None or stored["state"] != JobState.RUNNING:
        return answer(True)
    job_filter = ReplayFilter.from_dict(stored["filter"])
    page, cursor = int(stored.get("page", 0)), stored.get("cursor")
    while True:
        entries, next_cursor = repository.status_window(
            sender_id, job_filter.status, job_filter.since, job_filter.until, paging.page_size, cursor
        )
        matches = _matching(repository, job_filter, entries)
        counts = {
            ReplayCount.MATCHED: len(matches),
            **replay_entries(repository, queue, settings, sender_id, job_id, job_filter, matches),
        }
        state = JobState.RUNNING if next_cursor else JobState.SUCCEEDED
        # The first page's matches replace the API's first look at them; later pages add theirs.
        first = frozenset({ReplayCount.MATCHED}) if page == 0 else frozenset()
        if not repository.record_page(sender_id, job_id, page, counts, state, datetime.now(UTC), next_cursor, first):
            # Another run of this job recorded this page first: the next round reads where it stands.
            logger.info("Page already counted (a repeated run)", extra={"jobId": job_id, "page": page})
            return answer(False)
        for name, amount in counts.items():
            totals[name] += amount
        pages, page, cursor = pages + 1, page + 1, next_cursor
        if cursor is None:
            return answer(True)
        if pages >= paging.pages_per_run or (remaining_ms is not None and remaining_ms() < RUN_RESERVE_MS):
            return answer(False)


def fail_job(repository: ReplayRepository, job: ReplayStep) -> dict[str, str]:
    """Record a job whose run failed (the state machine's Catch)."""
    reason = job.error or "the replay run failed"
    repository.set_job_state(job.sender_id, job.job_id, JobState.FAILED, datetime.now(UTC), reason)
    return {"jobId": job.job_id, "state": JobState.FAILED.value}


def get_job(repository: ReplayRepository, sender_id: str, job_id: str) -> dict[str, Any]:
    """`GET /replays/{jobId}`: the job's filter, state and counters (404 for another sender's)."""
    stored = repository.get_job(sender_id, job_id) if _JOB_ID.fullmatch(job_id) else None
    if stored is None:
        raise ReplayJobNotFound(f"No replay job '{job_id[:200]}'.")
    view: dict[str, Any] = {
        "jobId": job_id,
        "state": stored["state"],
        "filter": stored["filter"],
        "matched": int(stored.get("matched", 0)),
        **{name: int(stored.get(name, 0)) for name in _COUNTERS},
        "createdAt": iso(from_epoch_ms(int(stored["createdAt"]))),
        "updatedAt": iso(from_epoch_ms(int(stored["updatedAt"]))),
    }
    if stored.get("reason"):
        view["reason"] = stored["reason"]
    return view
