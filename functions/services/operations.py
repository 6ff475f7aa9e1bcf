"""Reading and acting on messages (status, list, replay, cancel) and the reconciler, as plain logic.

Every call takes the authenticated sender: message keys are built from it, so another sender's
message id simply does not exist (404, exactly like a missing one).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.adapters.observability import logger, metrics
from functions.adapters.queue import DeliveryQueue, MessageQueue
from functions.adapters.repository import REPLAYABLE_STATUSES, MessageRepository
from functions.contract.metric_names import Metric
from functions.domain.clock import iso
from functions.domain.config import Settings
from functions.domain.exceptions import (
    FieldError,
    MessageExpired,
    MessageFinished,
    MessageInvalid,
    MessageNotFinished,
    MessageNotFound,
    RelayError,
)
from functions.domain.model import DUE_SHARDS, Event, EventType, MessageHead, MessageKey, Status, due_partition
from functions.services.runs import message_runs
from functions.services.status import status_view

if TYPE_CHECKING:
    from functions.services.target_health import TargetHealth

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 25


# A messageId from a URL that no message can carry (schemas/message.schema.json) names no message;
# it is answered without asking DynamoDB, which refuses keys over 2 KB with an error (a 500).
_MESSAGE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SUMMARY_FIELDS = ("messageId", "status", "attempts", "acceptedAt", "updatedAt", "targetUrl", "method", "lastError")


def _message_key(sender_id: str, message_id: str) -> MessageKey:
    if not _MESSAGE_ID.fullmatch(message_id):
        raise MessageNotFound(f"No message '{message_id[:200]}'.")
    return MessageKey(sender_id, message_id)


def get_status(
    repository: MessageRepository, sender_id: str, message_id: str, events_cursor: str | None = None
) -> dict[str, Any]:
    """The message's status and a page of its history, oldest first: the newest page (ending with the
    latest event) unless `events_cursor` asks for the one before an earlier page."""
    before = _decode_events_cursor(events_cursor) if events_cursor is not None else None
    stored = repository.get_message(_message_key(sender_id, message_id))
    if stored is None:
        raise MessageNotFound(f"No message '{message_id}'.")
    events, earlier = stored.head.events, None
    if stored.head.overflow_chunks or before is not None:
        events, earlier = repository.get_history(stored.head, before)
    view = status_view(stored, events)
    view["executions"] = [run.to_dict() for run in message_runs(events)]
    if earlier is not None:
        view["eventsCursor"] = str(earlier)
    return view


def _decode_events_cursor(cursor: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", cursor):
        raise MessageInvalid(
            [FieldError("$.eventsCursor", "is not a cursor of this message's history")], "The query is invalid."
        )
    return int(cursor)


def _invalid_cursor() -> MessageInvalid:
    return MessageInvalid([FieldError("$.cursor", "is not a cursor of this listing")], "The query is invalid.")


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        start = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise _invalid_cursor() from None
    if not isinstance(start, dict):
        raise _invalid_cursor()
    return start


def _encode_cursor(start: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(start, separators=(",", ":")).encode()).decode().rstrip("=")


def list_messages(
    repository: MessageRepository, sender_id: str, status: str | None, limit: str | None, cursor: str | None
) -> dict[str, Any]:
    errors: list[FieldError] = []
    if status not in {s.value for s in Status}:
        errors.append(FieldError("$.status", f"must be one of {', '.join(s.value for s in Status)}"))
    page_size = DEFAULT_PAGE_SIZE
    if limit is not None:
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
        if not re.fullmatch(r"[0-9]{1,6}", limit) or not 1 <= int(limit) <= MAX_PAGE_SIZE:
            errors.append(FieldError("$.limit", f"must be a whole number from 1 to {MAX_PAGE_SIZE}"))
        else:
            page_size = int(limit)
    if errors:
        raise MessageInvalid(errors, "The query is invalid.")
    assert status is not None
    # The cursor is opaque to clients but checked: it must continue this very listing.
    start = _decode_cursor(cursor) if cursor else None
    try:
        messages, last = repository.list_by_status(sender_id, Status(status), page_size, start)
    except ValueError:
        raise _invalid_cursor() from None
    items = []
    for message in messages:
        view = status_view(message)
        items.append({name: view[name] for name in _SUMMARY_FIELDS if name in view})
    return {"items": items, "nextCursor": _encode_cursor(last) if last else None}


def replay(
    repository: MessageRepository,
    queue: DeliveryQueue,
    settings: Settings,
    sender_id: str,
    message_id: str,
    statuses: frozenset[Status] = REPLAYABLE_STATUSES,
    job_id: str | None = None,
    expected_sort: str | None = None,
) -> dict[str, Any]:
    """Start a new run of a finished message in one of `statuses` (a bulk replay: its job's status,
    and `expected_sort`, the status index sort key of the failure the job matched)."""
    key = _message_key(sender_id, message_id)
    head = repository.get_head(key)
    if head is None:
        raise MessageNotFound(f"No message '{message_id}'.")
    now = datetime.now(UTC)
    if head.is_expired(now):
        raise MessageExpired(f"Message '{message_id}' expired at {iso(head.expires_at)}.")
    details = {"previousStatus": head.status.value, **({"jobId": job_id} if job_id else {})}
    replayed = Event(EventType.REPLAYED, now, head.run + 1, head.attempts, details)
    due_at = int(now.timestamp()) + settings.redrive_after_seconds
    updated = repository.start_replay(head, replayed, due_at, statuses, expected_sort)
    if updated is None and expected_sort is not None and head.status in statuses:
        raise MessageNotFinished(f"Message '{message_id}' is no longer in the {head.status.value} the job matched.")
    if updated is None:
        allowed = " or ".join(status.value for status in sorted(statuses))
        raise MessageNotFinished(f"Message '{message_id}' is {head.status.value}; only {allowed} can be replayed.")
    try:
        # ENQUEUED is recorded by the dispatcher's claim; until then the due time stands guard.
        queue.send(key, run=updated.run)
    except RelayError:
        logger.exception("Replay could not enqueue; the reconciler will re-drive it")
    metrics.add_metric(name=Metric.REPLAYED, unit=MetricUnit.Count, value=1)
    return {"messageId": message_id, "senderId": sender_id, "status": updated.status.value, "run": updated.run}


def cancel(repository: MessageRepository, sender_id: str, message_id: str) -> dict[str, Any]:
    key = _message_key(sender_id, message_id)
    head = repository.get_head(key)
    if head is None:
        raise MessageNotFound(f"No message '{message_id}'.")
    updated = None
    while updated is None and not head.is_terminal:
        cancelled = Event(EventType.CANCELLED, datetime.now(UTC), head.run, head.attempts)
        updated = repository.cancel(head, cancelled)
        if updated is None:  # it moved on meanwhile (an attempt, a result): read it again
            head = repository.get_head(key) or head
    if updated is None:
        raise MessageFinished(f"Message '{message_id}' is {head.status.value} and cannot be cancelled.")
    metrics.add_metric(name=Metric.CANCELLED, unit=MetricUnit.Count, value=1)
    return {"messageId": message_id, "senderId": sender_id, "status": updated.status.value}


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
    fail: Any,
    now: datetime | None = None,
    dead_letters: MessageQueue | None = None,
    sweep: bool = True,
    budget: RoundBudget | None = None,
) -> dict[str, int]:
    """Re-drive every message that is overdue with no live run; nothing accepted is left behind.

    Each part of the round (dead letters, closed targets, the sweep, the due walk) is isolated: an
    error is logged and counted and the round goes on. `fail(event)` ends a message that expired.
    Returns counts for the log.
    """
    now = now or datetime.now(UTC)
    budget = budget or RoundBudget(ROUND_BUDGET_SECONDS)
    counts: dict[str, int] = {"due": 0, "redriven": 0, "expired": 0, "finished": 0, "leased": 0, "errors": 0}
    if dead_letters is not None:
        counts["rescued"] = _isolated(counts, "rescue", lambda: rescue_dead_letters(repository, dead_letters, now))
    # Targets that closed since the last round: their paused messages go again. (Imported here: the
    # API function, which shares this module, does not load the circuit breaker at cold start.)
    from functions.adapters.target_health_store import TargetHealthRepository
    from functions.services.target_health import count_open_targets, resume_closed_targets

    targets = TargetHealthRepository.from_settings(settings)
    counts["resumed"] = _isolated(counts, "resume", lambda: resume_closed_targets(repository, targets, queue, settings))
    counts["openTargets"] = _isolated(counts, "open-targets", lambda: count_open_targets(targets))
    if sweep:
        sweep_budget = budget.slice(SWEEP_SHARE)
        counts["unclaimed"] = _isolated(
            counts, "sweep", lambda: sweep_unclaimed(repository, settings, now, sweep_budget)
        )
    _walk_due(repository, queue, settings, fail, now, budget, targets, counts)
    if counts["errors"]:
        metrics.add_metric(name=Metric.RECONCILER_ERRORS, unit=MetricUnit.Count, value=counts["errors"])
    return counts


def _isolated(counts: dict[str, int], part: str, work: Callable[[], int]) -> int:
    """Run one part of the round; an error there is logged and counted, and the round goes on."""
    try:
        return work()
    except Exception:
        logger.exception("A part of the reconciler round failed; the round goes on", extra={"part": part})
        counts["errors"] += 1
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
    fail: Any,
    now: datetime,
    budget: RoundBudget,
    targets: Any,
    counts: dict[str, int],
) -> None:
    from functions.services.target_health import reconcile_paused

    seen: dict[tuple[str, str], TargetHealth] = {}
    for key in _due_keys(repository, int(now.timestamp())):
        if budget.spent:
            counts["unfinished"] = 1  # the next round goes on from here (what is handled moved on)
            return
        counts["due"] += 1
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
            counts["errors"] += 1
            _push_back(repository, key, int(now.timestamp()) + settings.redrive_after_seconds)
            continue
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == "redriven":
            metrics.add_metric(name=Metric.REDRIVEN, unit=MetricUnit.Count, value=1)


def _push_back(repository: MessageRepository, key: MessageKey, due_at: int) -> None:
    try:
        repository.set_due(key, due_at)
    except Exception:
        logger.exception("Could not push the message's due time back", extra=key.to_dict())


# How far back each round looks for messages never claimed (several rounds, so a missed round or
# two loses nothing; each message's head is read about this many seconds / round interval times).
SWEEP_WINDOW_SECONDS = 180


def sweep_unclaimed(
    repository: MessageRepository, settings: Settings, now: datetime, budget: RoundBudget | None = None
) -> int:
    """Mark due every message accepted a while ago that no dispatcher ever claimed.

    A message on the success path has no due time (its queue message guards it). If its ingest run
    died between the store and the enqueue (a crash, a restart), nothing was queued: this sweep
    finds it once it is `redrive_after_seconds` old, and the due walk (this round or the next)
    re-drives it. Its work follows the traffic of its window, not the number of senders: it reads
    the senders active in the window (one small item per sender and minute, written at ingest),
    then their messages accepted in it. Reads only, but for the marks.
    """
    until = now - timedelta(seconds=settings.redrive_after_seconds)
    since = until - timedelta(seconds=max(SWEEP_WINDOW_SECONDS, settings.redrive_after_seconds))
    epoch = int(now.timestamp())
    marked = 0
    for sender_id in repository.active_senders(since, until):
        if budget is not None and budget.spent:
            break
        keys = list(repository.iter_accepted(sender_id, since, until))
        for start in range(0, len(keys), 100):
            for head in repository.get_heads(keys[start : start + 100]):
                never_claimed = head.status == Status.PENDING and head.enqueued_run < head.run
                if never_claimed and head.due_at is None and not head.leased(epoch):
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
    repository: MessageRepository, queue: DeliveryQueue, settings: Settings, fail: Any, head: MessageHead, now: datetime
) -> str:
    epoch = int(now.timestamp())
    if head.is_terminal:
        repository.clear_due(head.key)
        return "finished"
    if head.is_expired(now) and not head.attempt_in_flight(epoch):
        redriven = head.last_event(EventType.REDRIVEN)
        kept = f"; kept by: {redriven.details.get('reason')}" if redriven and redriven.details.get("reason") else ""
        reason = f"expired before it could be delivered{kept}"
        fail({**head.key.to_dict(), "run": head.run, "reason": reason[:256]})
        return "expired"
    if head.leased(epoch) or head.attempt_in_flight(epoch):
        # A run holds it: look again when its lease (or its attempt's) ends.
        repository.set_due(head.key, max(head.lease_until or 0, head.attempt_lease_until or 0))
        return "leased"
    if head.redrives >= MAX_REDRIVES:
        # Stuck: alarm (MessagesStuck), keep re-driving with backoff.
        metrics.add_metric(name=Metric.STUCK, unit=MetricUnit.Count, value=1)
    details = {"previousStatus": head.status.value, "reason": _redrive_reason(head)}
    redriven = Event(EventType.REDRIVEN, now, head.run, head.attempts, details)
    due_at = min(epoch + redrive_delay(settings, head.redrives), max(head.ttl, epoch + 1))
    if repository.note_redrive(head, redriven, due_at, epoch) is None:
        return "moved-on"
    try:
        queue.send(head.key, run=head.run)
    except RelayError:
        logger.exception("Re-drive could not enqueue; next round tries again")
        return "enqueue-failed"
    return "redriven"
