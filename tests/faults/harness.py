"""The pieces of the fault suite: a retrying sender, a runtime restart, quiescence and the checks."""

from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3

from functions.adapters.repository import MessageRepository
from functions.domain.model import Event, EventType, MessageHead, MessageKey, Status, StoredMessage
from functions.services.delivery import INTERRUPTED_ERROR
from relay.client import RelayClient
from relay.local.emulator import ACCOUNT_ID, REGION, LocalAws, stop_execution
from relay.local.runtime import LocalRelay
from relay.local.server import RelayHttpServer
from relay.local.targets import TargetServer
from relay.local.workers import QueueWorker, ScheduledWorker
from tests.faults.injector import DELIVERY_FUNCTIONS, FaultInjector

TERMINAL = frozenset({Status.DELIVERED, Status.FAILED})
TERMINAL_EVENTS = frozenset({EventType.DELIVERED, EventType.FAILED})
# Reads in chunks: the repository's batch reads take 100 keys (a message is two of them).
READ_CHUNK = 50
# Answers after which a real client sends the same message again (same messageId, same content).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

# Target paths of relay.local.targets.TargetServer and how often each is picked.
TARGET_MIX: tuple[tuple[str, int], ...] = (
    ("/ok", 69),
    ("/slow/100", 5),
    ("/flaky/1", 5),
    ("/flaky/2", 5),
    ("/missing", 4),
    ("/fail", 3),
    ("/throttle", 3),
    ("/hang", 3),
    ("/reset", 3),
)


# -- what each target must end with -------------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    status: str
    attempts: int  # exact attempts when no delivery-side fault touched the message
    # How many requests of a message the target answers with a non-2xx before it answers 2xx
    # (None: it never answers 2xx).
    failures_before_success: int | None


def expectation(path: str, total_attempts: int) -> Expectation:
    kind, _, argument = path.strip("/").partition("/")
    if kind in ("ok", "slow"):
        return Expectation("DELIVERED", 1, 0)
    if kind == "flaky":
        failures = int(argument or 2)
        return Expectation("DELIVERED", failures + 1, failures)
    if kind == "missing":
        return Expectation("FAILED", 1, None)
    if kind in ("fail", "throttle", "hang", "reset"):
        return Expectation("FAILED", total_attempts, None)
    raise ValueError(f"no expectation for target {path}")


def successes(path: str, requests: int) -> int:
    """How many of `requests` the target answered 2xx (its scripted behaviour)."""
    failures = expectation(path, 0).failures_before_success
    return 0 if failures is None else max(0, requests - failures)


@contextmanager
def quiet_logs() -> Iterator[None]:
    """The handlers log every injected failure with its traceback; formatting thousands of them costs
    more CPU than the work they describe. Only CRITICAL records are kept while the suite runs."""
    names = ("relay", "aws_lambda_powertools", "botocore", "urllib3")
    saved = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


# -- sending like a real client -----------------------------------------------------------------------


@dataclass
class SendRecord:
    message: dict[str, Any]
    path: str
    answers: list[int | str] = field(default_factory=list)

    @property
    def message_id(self) -> str:
        return str(self.message["messageId"])

    @property
    def accepted(self) -> bool:
        return any(answer in (200, 202) for answer in self.answers)

    @property
    def created(self) -> int:
        """202 answers: each one claims to have stored the message anew."""
        return sum(1 for answer in self.answers if answer == 202)


class Progress:
    """When the relay last made progress; `stalled()` once it made none for `stall_seconds`.

    Waits in the suite end on conditions, and give up only when nothing moves any more: a slow or
    busy machine makes everything slower, never a different verdict.
    """

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self._last = time.monotonic()

    def made(self) -> None:
        self._last = time.monotonic()

    def stalled(self) -> bool:
        return time.monotonic() - self._last > self.stall_seconds


class Sender:
    """Sends every message over HTTP with the dev token, from a thread pool, retrying like a client.

    A 5xx, a 429 or a broken connection is retried with the same messageId and content after a
    jittered backoff; the relay must answer the retry 202 (not stored before) or 200 duplicate.
    """

    def __init__(self, url: str, token: str, seed: int, concurrency: int = 8, stall_seconds: float = 120) -> None:
        self.client = RelayClient(url, token=token, timeout=30)
        self.concurrency = concurrency
        # Nothing is given up on while the relay makes progress, however slow the machine; only a
        # relay that answered nothing for `stall_seconds` fails the suite (in minutes, not hours).
        self.progress = Progress(stall_seconds)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.sent = 0
        self.held_seconds = 0.0

    def _backoff(self, retry: int) -> float:
        with self._lock:
            return self._random.uniform(0, min(1.0, 0.05 * 2**retry))

    def send_one(self, record: SendRecord) -> SendRecord:
        payload = json.dumps(record.message).encode("utf-8")
        retry = 0
        while True:
            try:
                answer: int | str = self.client.send(payload).status
            except (OSError, http.client.HTTPException) as error:
                answer = type(error).__name__
            record.answers.append(answer)
            if answer in (200, 202):
                self.progress.made()
            if answer in (200, 202) or (isinstance(answer, int) and answer not in RETRY_STATUSES):
                break
            if self.progress.stalled():
                break
            time.sleep(self._backoff(retry))
            retry += 1
        with self._lock:
            self.sent += 1
        return record

    def send_all(
        self,
        records: list[SendRecord],
        on_progress: Callable[[int], None] | None = None,
        hold: Callable[[], bool] | None = None,
    ) -> None:
        """Send every record; `hold()` True keeps new messages back (retries of started ones go on)."""

        def task(record: SendRecord) -> SendRecord:
            while hold is not None and hold() and not self.progress.stalled():
                with self._lock:
                    self.held_seconds += 0.05
                time.sleep(0.05)
            self.send_one(record)
            if on_progress is not None:
                on_progress(self.sent)
            return record

        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="fault-sender") as pool:
            list(pool.map(task, records))


class Backpressure:
    """True while the relay's delivery backlog is deep: the senders then hold new messages back.

    Everything shares one GIL here, so senders at full speed starve the single queue consumer and
    messages wait in the queue longer than RELAY_REDRIVE_AFTER_SECONDS; the reconciler then re-drives
    messages that are merely queued (and fails them after MAX_REDRIVES, see the report). Holding
    new sends while the queue or the running runs pile up keeps the backlog at a few seconds, as an
    auto-scaled consumer would on AWS, without changing the work each message goes through.
    """

    def __init__(self, local: LocalAws, max_queued: int = 40, max_running: int = 80) -> None:
        self.local = local
        self.max_queued = max_queued
        self.max_running = max_running
        self._lock = threading.Lock()
        self._checked = 0.0
        self._busy = False

    def __call__(self) -> bool:
        with self._lock:
            if time.monotonic() - self._checked > 0.25:
                self._busy = (
                    queue_depth(self.local) > self.max_queued or len(running_executions(self.local)) > self.max_running
                )
                self._checked = time.monotonic()
            return self._busy


# -- restarting the runtime -----------------------------------------------------------------------------


def _executions(local: LocalAws, names: tuple[str, ...] = ("relay-delivery-fast", "relay-delivery-slow")) -> list[Any]:
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    backend = stepfunctions_parser_backends[ACCOUNT_ID][REGION]
    found = []
    for name in names:
        found.extend(list(backend.describe_state_machine(local.state_machine_arns[name]).executions))
    return found


def _status(execution: Any) -> str:
    return str(getattr(execution.exec_status, "value", "PENDING"))


def running_executions(local: LocalAws) -> list[Any]:
    return [execution for execution in _executions(local) if _status(execution) == "RUNNING"]


def execution_counts(local: LocalAws) -> dict[str, Any]:
    """Delivery runs by lane and status, and the longest run of each lane (it must stay under the
    lane's lease, or the reconciler would start a second run beside a live one)."""
    counts: dict[str, Any] = Counter()
    for execution in _executions(local):
        lane = "fast" if ":relay-delivery-fast:" in execution.exec_arn else "slow"
        counts[f"{lane} {_status(execution)}"] += 1
        if execution.stop_date is not None:
            seconds = round((execution.stop_date - execution.start_date).total_seconds(), 1)
            counts[f"{lane} longest seconds"] = max(counts[f"{lane} longest seconds"], seconds)
    return dict(sorted(counts.items()))


@dataclass
class RestartRecord:
    at_sent: int
    stopped_runs: list[str]
    seconds: float


def restart_runtime(relay: LocalRelay, injector: FaultInjector, downtime_seconds: float = 1.0) -> RestartRecord:
    """Everything `relay dev` runs in its process dies and comes back; the embedded AWS stays.

    While "down", every handler invocation crashes (before or after doing its work), the HTTP server
    stops listening (clients get connection errors, in-flight requests 500), the queue worker and
    the reconciler stop, and every running delivery execution is stopped as the process's threads
    would be. Then a new server on the same port, a new queue worker and a new reconciler start.
    """
    assert relay.local is not None and relay.server is not None and relay.reconciler is not None
    local = relay.local
    started = time.monotonic()
    port = int(relay.server.server_address[1])
    stopped: list[str] = []
    injector.down = True
    try:
        relay.server.shutdown()
        relay.server.server_close()
        for worker in relay.workers:
            worker.stop()
        relay.reconciler.stop()
        for execution in running_executions(local):
            if stop_execution(execution, error="ProcessRestart", cause="relay dev restarted"):
                stopped.append(str(execution.input_data.get("messageId", "")))
        time.sleep(downtime_seconds)
    finally:
        # Whatever happened above, the runtime comes back (senders would wait for it forever).
        injector.down = False
        relay.server = RelayHttpServer((relay.host, port), local, admin_token=relay.admin_token)
        relay.server.serve_in_background()
        relay.workers = [QueueWorker(local, local.queue_urls[local.queue_name]).start()]
        relay.reconciler = ScheduledWorker(local, "relay-reconciler", relay.reconcile_every_seconds).start()
    return RestartRecord(at_sent=0, stopped_runs=stopped, seconds=time.monotonic() - started)


# -- waiting and reading the outcome ---------------------------------------------------------------------


def non_terminal(table: str, sender_id: str, message_ids: list[str]) -> list[str]:
    """The ids among `message_ids` whose head exists and is not DELIVERED or FAILED."""
    repository = MessageRepository(table)
    waiting: list[str] = []
    for start in range(0, len(message_ids), READ_CHUNK):
        keys = [MessageKey(sender_id, message_id) for message_id in message_ids[start : start + READ_CHUNK]]
        waiting.extend(head.key.message_id for head in repository.get_heads(keys) if head.status not in TERMINAL)
    return waiting


def queue_depth(local: LocalAws) -> int:
    attributes = boto3.client("sqs", region_name=REGION).get_queue_attributes(
        QueueUrl=local.queue_urls[local.queue_name], AttributeNames=["All"]
    )["Attributes"]
    return sum(
        int(attributes.get(name, 0))
        for name in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    )


def wait_until_quiescent(
    relay: LocalRelay, sender_id: str, message_ids: list[str], stall_seconds: float
) -> tuple[list[str], float]:
    """Wait until every stored message is terminal, the delivery queue is empty and no delivery run
    is running. Gives up only when none of these moved for `stall_seconds` (progress, not the clock,
    decides). Returns the ids still not terminal then (empty when quiescent)."""
    assert relay.local is not None
    started = time.monotonic()
    progress = Progress(stall_seconds)
    waiting = list(message_ids)
    last_state: tuple[int, int, int] | None = None
    while True:
        waiting = non_terminal(relay.local.table_name, sender_id, waiting)
        state = (len(waiting), queue_depth(relay.local), len(running_executions(relay.local)))
        if state == (0, 0, 0):
            return [], time.monotonic() - started
        if state != last_state:
            progress.made()
            last_state = state
        if progress.stalled():
            return waiting, time.monotonic() - started
        time.sleep(1.0)


def read_messages(table: str, sender_id: str, message_ids: Sequence[str]) -> dict[str, StoredMessage]:
    """Every stored message (head and content) among `message_ids`, by message id."""
    repository = MessageRepository(table)
    found: dict[str, StoredMessage] = {}
    for start in range(0, len(message_ids), READ_CHUNK):
        keys = [MessageKey(sender_id, message_id) for message_id in message_ids[start : start + READ_CHUNK]]
        found.update(
            (stored.head.key.message_id, _whole(repository, stored)) for stored in repository.get_messages(keys)
        )
    return found


def _whole(repository: MessageRepository, stored: StoredMessage) -> StoredMessage:
    """The message with its whole history (a long one keeps its older events in overflow items)."""
    if not stored.head.overflow_chunks:
        return stored
    events, _ = repository.get_history(stored.head, page_events=1_000_000)
    return StoredMessage(dataclasses.replace(stored.head, events=events), stored.content)


def stored_message_ids(table: str, sender_id: str) -> set[str]:
    """The ids of every message the sender has stored, whatever its status (from the listings)."""
    repository = MessageRepository(table)
    ids: set[str] = set()
    for status in Status:
        cursor: dict[str, Any] | None = None
        while True:
            page, cursor = repository.list_by_status(sender_id, status, 100, cursor)
            ids.update(stored.head.key.message_id for stored in page)
            if cursor is None:
                break
    return ids


def dead_letters(local: LocalAws) -> int:
    sqs = boto3.client("sqs", region_name=REGION)
    attributes = sqs.get_queue_attributes(
        QueueUrl=local.queue_urls[f"{local.queue_name}-dlq"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", 0))


def requests_per_webhook(target: TargetServer) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    with target._lock:
        received = list(target.received)
    for request in received:
        counts[(request.path, request.header("webhook-id") or "")] += 1
    return counts


# -- the checks ------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What the checks found for one message (problems are guarantee breaks; notes are explained)."""

    message_id: str
    path: str
    status: str | None = None
    attempts: int = 0
    requests: int = 0
    successes: int = 0
    disturbed: bool = False
    # An attempt counted without its ATTEMPT_STARTED, one started without a result, or a terminal
    # status without its terminal event: impossible by construction (status and event are one write).
    history_gap: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    seed: int
    counts: dict[str, int] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    distributions: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, bucket: dict[str, list[str]], reason: str, message_id: str) -> None:
        bucket.setdefault(reason, []).append(message_id)

    def render(self) -> str:
        lines = [f"fault suite, seed {self.seed}"]
        lines.append("  counts: " + ", ".join(f"{name}={value}" for name, value in self.counts.items()))
        for name, value in self.timings.items():
            lines.append(f"  time {name}: {value:.1f}s")
        for name, distribution in self.distributions.items():
            lines.append(f"  {name}: " + ", ".join(f"{key}: {value}" for key, value in distribution.items()))
        lines.append("  faults injected:")
        lines.extend(f"    {value:5d}  {name}" for name, value in self.faults.items())
        for name, value in self.extra.items():
            lines.append(f"  {name}: {value}")
        if self.notes:
            lines.append("  explained by the faults (not failures):")
            lines.extend(f"    {len(ids):5d}  {reason}  e.g. {ids[:3]}" for reason, ids in sorted(self.notes.items()))
        if self.problems:
            lines.append("  PROBLEMS:")
            lines.extend(
                f"    {len(ids):5d}  {reason}  e.g. {ids[:5]}" for reason, ids in sorted(self.problems.items())
            )
        return "\n".join(lines)


def _seconds_between(head: MessageHead) -> float:
    return (head.updated_at - head.accepted_at).total_seconds()


def _seconds_to_first_attempt(head: MessageHead) -> float | None:
    received = [event.at for event in head.events if event.type == EventType.RECEIVED]
    started = [event.at for event in head.events if event.type == EventType.ATTEMPT_STARTED]
    if not received or not started:
        return None
    return (min(started) - received[0]).total_seconds()


def _attempt(event: Event) -> tuple[int, int]:
    return event.run, event.attempt if event.attempt is not None else -1


def _history_gaps(head: MessageHead) -> list[str]:
    """What makes the history disagree with the head (each one a gap the data model rules out)."""
    gaps = []
    events = head.events
    started = [_attempt(event) for event in events if event.type == EventType.ATTEMPT_STARTED]
    results = [_attempt(event) for event in events if event.type in (EventType.ATTEMPT_FAILED, EventType.DELIVERED)]
    if head.attempts != len(started):
        gaps.append(f"{head.attempts} attempts counted, {len(started)} ATTEMPT_STARTED events")
    if len(set(started)) != len(started):
        gaps.append("an attempt started twice")
    if len(set(results)) != len(results):
        gaps.append("an attempt with more than one result")
    if head.is_terminal and any(attempt not in results for attempt in started):
        gaps.append("ATTEMPT_STARTED without a result")
    if any(attempt not in started for attempt in results):
        gaps.append("an attempt result without its ATTEMPT_STARTED")
    if head.status in TERMINAL:
        terminal_events = [event.type for event in events if event.run == head.run and event.type in TERMINAL_EVENTS]
        if terminal_events != [EventType(head.status.value)]:
            gaps.append(f"terminal events {[str(kind) for kind in terminal_events]} for status {head.status}")
    return gaps


def check_message(
    record: SendRecord,
    stored: StoredMessage | None,
    requests: int,
    total_attempts: int,
    disturbed: bool,
) -> Verdict:
    """Every rule one message must satisfy, from its stored head and content and what its target received."""
    verdict = Verdict(record.message_id, record.path, requests=requests, disturbed=disturbed)
    problems, notes = verdict.problems, verdict.notes
    if record.created > 1:
        problems.append("accepted (202) more than once")
    if 202 in record.answers and 200 in record.answers[: record.answers.index(202)]:
        problems.append("answered 202 (stored now) after a 200 duplicate (stored before)")
    if stored is None:
        if record.accepted:
            problems.append("LOST: accepted, but nothing is stored")
        if requests:
            problems.append("delivered although never stored")
        return verdict
    if not record.accepted:
        notes.append("stored, but the client never saw it accepted (it gave up)")
    head = stored.head
    events = head.events  # in the order they were recorded
    verdict.status = head.status.value
    verdict.attempts = head.attempts
    verdict.successes = successes(record.path, requests)
    types = [event.type for event in events]

    # Accepted once, with the content that was sent.
    if types.count(EventType.RECEIVED) != 1:
        problems.append(f"RECEIVED {types.count(EventType.RECEIVED)} times")
    if stored.content.target_url != record.message["targetUrl"]:
        problems.append("stored content differs from what was sent")

    # A complete history: every status change wrote its event in the same write, so every counted
    # attempt has its ATTEMPT_STARTED, every started one its result, every ending its event.
    gaps = _history_gaps(head)
    if gaps:
        verdict.history_gap = True
        problems.extend(f"HISTORY GAP: {gap}" for gap in gaps)

    # Nothing lost: a terminal status.
    if head.status not in TERMINAL:
        # The history says where it stopped (shown in the report for the first few).
        trail = ", ".join(f"{event.type.value}#{event.attempt or ''}" for event in head.events[-8:])
        lease = f"lease {head.lease_until}, attempt lease {head.attempt_lease_until}, due {head.due_at}"
        problems.append(f"LOST: stuck {verdict.status}")
        notes.append(f"stuck at: ... {trail} ({lease}, owner {head.owner}, redrives {head.redrives})")
        return verdict

    if not types or types[0] != EventType.RECEIVED:
        problems.append("history does not start with RECEIVED")
    if EventType.ENQUEUED not in types and EventType.REDRIVEN not in types:
        problems.append("history has neither ENQUEUED nor REDRIVEN")
    if not gaps and types[-1].value != head.status.value:
        problems.append(f"{types[-1]} recorded after the terminal event")

    # At-least-once, but no more deliveries than attempts.
    # The delivery client sends a request again, once, when a reused keep-alive connection turns out
    # to be dead before any answer; a target that resets every connection can see that.
    limit = verdict.attempts * (2 if record.path == "/reset" else 1)
    if requests > limit:
        problems.append(f"target got more requests than attempts ({requests} > {verdict.attempts})")
    elif requests > verdict.attempts:
        notes.append("more requests than attempts at a resetting target (a dead keep-alive connection resent)")
    if head.status == Status.DELIVERED and verdict.successes < 1:
        problems.append("DELIVERED but the target never answered 2xx")
    if verdict.successes > 1:
        notes.append("delivered more than once (at-least-once; every extra delivery is a counted attempt)")

    # The outcome its target calls for.
    expected = expectation(record.path, total_attempts)
    failed_events = [event for event in events if event.type == EventType.ATTEMPT_FAILED]
    # A request that the target answered too late for the (short) total timeout failed under load.
    timeouts = sum(1 for event in failed_events if event.details.get("error") in ("TargetTimeout", "TargetUnreachable"))
    # An attempt whose holder outlived its lease (a starved machine: no fault touched it) was taken
    # over by the next claim and recorded as interrupted: one more attempt, at-least-once by design.
    interrupted = sum(1 for event in failed_events if event.details.get("error") == INTERRUPTED_ERROR)
    if verdict.status != expected.status:
        if disturbed:
            notes.append(f"{verdict.status} instead of {expected.status} after a delivery-side fault")
            if verdict.successes:
                notes.append("FAILED although the target took a delivery (a fault cut the recording)")
        else:
            problems.append(f"{verdict.status}, expected {expected.status} for {record.path}")
    elif verdict.attempts != expected.attempts:
        if disturbed:
            notes.append("attempts differ from the target's script after a delivery-side fault")
        elif 0 < verdict.attempts - expected.attempts <= timeouts:
            # A request that timed out on a starved machine is retried, whatever the target answers
            # next (its 2xx, or /missing's 404 that ends it FAILED, not retried).
            notes.append("extra attempts after timeouts under load")
        elif 0 < verdict.attempts - expected.attempts <= interrupted:
            notes.append("extra attempts after a lease ran out under load (recorded as interrupted)")
        else:
            problems.append(f"{verdict.attempts} attempts, expected {expected.attempts} for {record.path}")
    if expected.status == "FAILED" and verdict.status == "FAILED" and not disturbed:
        reason = head.last_error or ""
        wanted = "not retried" if record.path == "/missing" else "retries exhausted"
        if wanted not in reason:
            problems.append(f"FAILED for '{reason[:60]}', expected '{wanted}'")
    return verdict


def build_report(
    seed: int,
    records: list[SendRecord],
    stored: dict[str, StoredMessage],
    stored_ids: set[str],
    target: TargetServer,
    injector: FaultInjector,
    restart: RestartRecord | None,
    sender_id: str,
    total_attempts: int,
) -> tuple[Report, list[Verdict]]:
    report = Report(seed)
    requests = requests_per_webhook(target)
    # Faults inside the delivery steps (and the restart) may change a message's outcome; faults in
    # the ingest steps may only delay it (the client retries, the reconciler re-drives).
    disturbed_ids = injector.touched(DELIVERY_FUNCTIONS | frozenset({""}))
    if restart is not None:
        disturbed_ids |= set(restart.stopped_runs)
    verdicts = []
    for record in records:
        verdict = check_message(
            record,
            stored.get(record.message_id),
            requests[(record.path, f"{sender_id}:{record.message_id}")],
            total_attempts,
            record.message_id in disturbed_ids,
        )
        verdicts.append(verdict)
        for problem in verdict.problems:
            report.add(report.problems, problem, record.message_id)
        for note in verdict.notes:
            report.add(report.notes, note, record.message_id)

    sent_ids = {record.message_id for record in records}
    for message_id in sorted(stored_ids - sent_ids):
        report.add(report.problems, "stored message that was never sent", message_id)

    lost = [v.message_id for v in verdicts if any(p.startswith("LOST") for p in v.problems)]
    over = [v for v in verdicts if v.successes > 1]
    report.counts = {
        "sent": len(records),
        "accepted": sum(1 for record in records if record.accepted),
        "delivered": sum(1 for v in verdicts if v.status == "DELIVERED"),
        "failed": sum(1 for v in verdicts if v.status == "FAILED"),
        "lost": len(lost),
        "duplicated": sum(1 for record in records if record.created > 1),
        "history_gaps": sum(1 for v in verdicts if v.history_gap),
        "over_delivered": len(over),
        "extra_deliveries": sum(v.successes - 1 for v in over),
        "disturbed": sum(1 for v in verdicts if v.disturbed),
    }
    answers: Counter[str] = Counter(str(answer) for record in records for answer in record.answers)
    report.distributions["send answers"] = dict(sorted(answers.items()))
    report.distributions["sends per message"] = dict(sorted(Counter(str(len(r.answers)) for r in records).items()))
    delivered = [v for v in verdicts if v.status == "DELIVERED"]
    report.distributions["2xx deliveries per DELIVERED message"] = dict(
        sorted(Counter(str(v.successes) for v in delivered).items())
    )
    report.distributions["requests per message, by target"] = {
        path: dict(sorted(Counter(v.requests for v in verdicts if v.path == path).items())) for path, _ in TARGET_MIX
    }
    report.distributions["outcome by target"] = {
        path: dict(sorted(Counter(str(v.status) for v in verdicts if v.path == path).items())) for path, _ in TARGET_MIX
    }
    latencies = sorted(
        (_seconds_between(message.head), record.message_id)
        for record in records
        if (message := stored.get(record.message_id))
    )
    if latencies:
        report.distributions["seconds from accepted to terminal"] = {
            "p50": round(latencies[len(latencies) // 2][0], 1),
            "p90": round(latencies[int(len(latencies) * 0.9)][0], 1),
            "p99": round(latencies[int(len(latencies) * 0.99)][0], 1),
            "max": round(latencies[-1][0], 1),
            "slowest": [message_id for _, message_id in latencies[-5:]],
        }
    waits = sorted(
        wait
        for record in records
        if (message := stored.get(record.message_id)) and (wait := _seconds_to_first_attempt(message.head)) is not None
    )
    if waits:
        report.distributions["seconds from accepted to first attempt"] = {
            "p50": round(waits[len(waits) // 2], 1),
            "p90": round(waits[int(len(waits) * 0.9)], 1),
            "max": round(waits[-1], 1),
        }
    report.faults = injector.summary()
    if restart is not None:
        report.extra["restart"] = (
            f"after {restart.at_sent} sends; {len(restart.stopped_runs)} delivery runs stopped; "
            f"{restart.seconds:.1f}s down"
        )
    return report, verdicts
