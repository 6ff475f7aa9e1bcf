"""What several suites need to drive a relay, one way: waiting for a message's status; the web
console's browser (Chromium) and the relay it is tested against.

A terminal status is written a moment before its terminal event is appended, so waiting for a
terminal status also waits for that event: a test then reads a complete history.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from functions.contract.settings_names import Setting
from relay.client import RelayClient

if TYPE_CHECKING:
    from functions.domain.config import Settings
    from relay.local.runtime import LocalRelay
    from relay.local.targets import ReceivedRequest, TargetServer

TERMINAL = ("DELIVERED", "FAILED", "CANCELLED")

# Delivery policy of the delivery suites: short waits keep them quick; the counts are configured ones.
SHORT_POLICY = {
    "fastLane": {"intervalSeconds": 1, "maxAttempts": 2, "backoffRate": 2.0},
    "slowLane": {"initialWaitSeconds": 2, "intervalSeconds": 2, "maxAttempts": 2},
}
# The dispatcher's inline first attempt (delivery.firstAttempt: inline), then each lane's.
INLINE_ATTEMPTS = 1
FAST_ATTEMPTS = 1 + SHORT_POLICY["fastLane"]["maxAttempts"]
SLOW_ATTEMPTS = 1 + SHORT_POLICY["slowLane"]["maxAttempts"]
# A target's circuit opens after this many failed attempts, probed a second later (at most two).
QUICK_BREAKER_THRESHOLD = 3
QUICK_BREAKER = {
    Setting.BREAKER_FAILURE_THRESHOLD: str(QUICK_BREAKER_THRESHOLD),
    Setting.BREAKER_PROBE_AFTER_SECONDS: "1",
    Setting.BREAKER_MAX_PROBE_AFTER_SECONDS: "2",
}
# For suites whose tests share one target and fail on purpose: an attempt gives up after a second,
# and the circuit breaker (its own suites) never opens the target to pause later tests.
NO_BREAKER = {Setting.TOTAL_TIMEOUT_SECONDS: "1", Setting.BREAKER_FAILURE_THRESHOLD: "10000"}


def delivery_relay(environment: dict[str, str] | None = None, **options: Any) -> LocalRelay:
    """A `LocalRelay` (not started) as the delivery suites run it: SHORT_POLICY, waits scaled by 0.01."""
    from relay.local.runtime import LocalRelay

    return LocalRelay(port=0, time_scale=0.01, policy=SHORT_POLICY, environment=dict(environment or {}), **options)


def validation_settings() -> Settings:
    """The settings the validator's suites (unit and fuzz) check messages against: the defaults but
    for these limits, written here so a change of a default does not move the tests' edges."""
    from dataclasses import replace

    from functions.domain.config import get_settings

    return replace(
        get_settings(),
        ttl_days=30,
        max_body_bytes=65_536,
        max_header_count=32,
        max_header_bytes=8_192,
        max_future_skew_seconds=300,
        allow_private_targets=False,
    )


def wait_for(
    client: RelayClient, message_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 60
) -> dict[str, Any]:
    """The message's record once its status is one of `statuses` (with its event, when terminal)."""
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        answer = client.status(message_id)
        body = answer.body
        status = body.get("status") if answer.ok else None
        if status in statuses and (status not in TERMINAL or body["events"][-1]["type"] == status):
            return dict(body)
        time.sleep(0.05)
    raise AssertionError(f"{message_id} never reached {statuses} in {timeout}s: {body}")


def event_types(record: dict[str, Any]) -> list[str]:
    """The types of a message's events (GET /messages/{id}), oldest first."""
    return [event["type"] for event in record["events"]]


def send_accepted(client: RelayClient, **fields: Any) -> dict[str, Any]:
    """Send a message of `relay dev`'s development sender with `fields`; it must be accepted (202).
    Gives the message as sent."""
    from tests.conftest import make_message

    message = make_message(**{"senderId": "dev", **fields})
    answer = client.send(message)
    assert answer.status == 202, answer.body
    return message


def wait_until_terminal(client: RelayClient, message: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    """`wait_for` a message (as sent) to end DELIVERED, FAILED or CANCELLED."""
    return wait_for(client, str(message["messageId"]), TERMINAL, timeout)


def wait_requests(server: TargetServer, path: str, count: int = 1, timeout: float = 30) -> list[ReceivedRequest]:
    """The requests `server` received on `path`, once there are at least `count` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = server.requests_to(path)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{path} got {len(server.requests_to(path))} requests, not {count}")


# A batch waiting on a trickling target (issue 20): messages to a target that holds each request
# this long before it answers, far longer than a delivery to a healthy target takes. The queue
# pollers' test shows a healthy message sent right after them is not held up; bench/dev_isolation.py
# measures by how much it is.
TRICKLE_MESSAGES = 10
TRICKLE_ANSWER_MS = 4000


def send_trickling_batch(client: RelayClient, target_url: str, count: int = TRICKLE_MESSAGES) -> list[dict[str, Any]]:
    """`count` messages of the development sender to `target_url`'s /slow/TRICKLE_ANSWER_MS, each
    accepted (202); gives them as sent."""
    return [send_accepted(client, targetUrl=f"{target_url}/slow/{TRICKLE_ANSWER_MS}") for _ in range(count)]


def delivery_executions(local: Any, message_id: str) -> list[str]:
    """The ARNs of the fast- and slow-lane runs started for a message, in moto's `relay dev`."""
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    from relay.local.emulator import ACCOUNT_ID, REGION

    backend = stepfunctions_parser_backends[ACCOUNT_ID][REGION]
    found = []
    for name in ("relay-delivery-fast", "relay-delivery-slow"):
        for execution in backend.describe_state_machine(local.state_machine_arns[name]).executions:
            if (execution.input_data or {}).get("messageId") == message_id:
                found.append(str(execution.exec_arn))
    return found


def expire_stored_message(sender_id: str, message_id: str, status: str | None = None) -> None:
    """Move a stored message's expiry into the past (as if its TTL had passed; DynamoDB keeps the
    item a while), optionally forcing its status."""
    _write_head(sender_id, message_id, ttl=946684800, **({"s": status} if status is not None else {}))


def force_stored_status(sender_id: str, message_id: str, status: str) -> None:
    """Set a stored message's status as if its life had led there (its events are left alone)."""
    _write_head(sender_id, message_id, s=status)


def _write_head(sender_id: str, message_id: str, **attributes: str | int) -> None:
    """The one place tests write the head's layout (functions/adapters/repository.py: `s` status,
    `ttl` expiry in epoch seconds)."""
    import boto3

    from functions.adapters.messages.items import HEAD_SORT_KEY
    from functions.domain.config import get_settings
    from functions.domain.model import MessageKey

    names = {f"#{name}": name for name in attributes}
    values = {
        f":{name}": {"N": str(value)} if isinstance(value, int) else {"S": value} for name, value in attributes.items()
    }
    boto3.client("dynamodb", region_name="us-east-1").update_item(
        TableName=get_settings().table_name,
        Key={"pk": {"S": MessageKey(sender_id, message_id).partition_key}, "sk": {"S": HEAD_SORT_KEY}},
        UpdateExpression="SET " + ", ".join(f"#{name} = :{name}" for name in attributes),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )


def stored_due_entry(sender_id: str, message_id: str) -> tuple[str, int]:
    """The message's `due` index entry as stored (`dueShard`, `dueAt`); ("", 0) when it has none."""
    import boto3

    from functions.adapters.messages.items import HEAD_SORT_KEY
    from functions.domain.config import get_settings
    from functions.domain.model import MessageKey

    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=get_settings().table_name,
        Key={"pk": {"S": MessageKey(sender_id, message_id).partition_key}, "sk": {"S": HEAD_SORT_KEY}},
        ConsistentRead=True,
    )["Item"]
    if "dueShard" not in item:
        return ("", 0)
    return (item["dueShard"]["S"], int(item["dueAt"]["N"]))


# A relay whose reconciler re-drives after one second (every half second): a backlog or a stuck
# message outlasts many re-drive windows within a test. One retry per lane.
ONE_RETRY_POLICY = {
    "fastLane": {"intervalSeconds": 1, "maxAttempts": 1},
    "slowLane": {"initialWaitSeconds": 1, "intervalSeconds": 1, "maxAttempts": 1},
}


def quick_reconciling_relay() -> Any:
    """A `LocalRelay` (not started) with ONE_RETRY_POLICY and a one-second re-drive window."""
    from functions.contract.settings_names import Setting
    from relay.local.runtime import LocalRelay

    return LocalRelay(
        port=0,
        time_scale=0.01,
        policy=ONE_RETRY_POLICY,
        reconcile_every_seconds=0.5,
        environment={Setting.REDRIVE_AFTER_SECONDS: "1"},
    )


# -- The web console in headless Chromium (tests/browser, `make screenshots`) ----------------------

# A Chromium or Chrome binary to drive instead of the one on the PATH.
CHROMIUM_VARIABLE = "RELAY_CHROMIUM"
_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")
GET_CHROMIUM = (
    "Install Debian's package: `sudo apt-get install -y chromium` (.ci/run does this when it runs as "
    f"root), or set {CHROMIUM_VARIABLE} to a Chromium or Chrome binary. Playwright (pip install -e "
    "'.[dev]') drives it; Playwright's own browser download is not used."
)
# The breaker of the console's relay: a target opens after 3 failed attempts and is never probed
# within a test, so an OPEN circuit stays OPEN until the test resumes it.
CONSOLE_BREAKER = {
    Setting.BREAKER_FAILURE_THRESHOLD: "3",
    Setting.BREAKER_PROBE_AFTER_SECONDS: "3600",
    Setting.BREAKER_MAX_PROBE_AFTER_SECONDS: "3600",
}


class ChromiumMissing(RuntimeError):
    """No Chromium to drive: the message says how to get one."""


def chromium_executable() -> str:
    """The Chromium to launch: $RELAY_CHROMIUM, else the first of the usual names on the PATH."""
    import os
    import shutil
    from pathlib import Path

    configured = os.environ.get(CHROMIUM_VARIABLE)
    if configured:
        if Path(configured).is_file():
            return configured
        raise ChromiumMissing(f"{CHROMIUM_VARIABLE}={configured} is not a file. {GET_CHROMIUM}")
    for name in _CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    names = ", ".join(_CHROMIUM_NAMES)
    raise ChromiumMissing(
        f"The web console's browser tests need Chromium; none is on the PATH ({names}). {GET_CHROMIUM}"
    )


def console_relay() -> Any:
    """A `LocalRelay` (not started) for the console: quick retries, CONSOLE_BREAKER's circuit."""
    from relay.local.runtime import LocalRelay

    return LocalRelay(port=0, time_scale=0.01, environment=dict(CONSOLE_BREAKER))


def dev_message(target_url: str, **fields: Any) -> dict[str, Any]:
    """A message of `relay dev`'s development sender to `target_url`, with a fresh id."""
    import uuid
    from datetime import UTC, datetime

    from relay.local.runtime import DEV_SENDER

    message: dict[str, Any] = {
        "messageId": f"console-{uuid.uuid4().hex[:10]}",
        "senderId": DEV_SENDER,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "targetUrl": target_url,
        "body": {"order": 42},
    }
    message.update(fields)
    return message


def wait_for_circuit(client: RelayClient, origin: str, state: str, timeout: float = 60) -> dict[str, Any]:
    """The target's health once its circuit is in `state` (CLOSED, OPEN, HALF_OPEN)."""
    deadline = time.monotonic() + timeout
    health: Any = None
    while time.monotonic() < deadline:
        health = client.target_health(origin).body
        if isinstance(health, dict) and health.get("state") == state:
            return dict(health)
        time.sleep(0.1)
    raise AssertionError(f"{origin} never became {state} in {timeout}s: {health}")


class MemoryFlowStore:
    """A target repository's flow items in memory, with the conditions of its writes
    (functions/adapters/stores/target_store.py), so unit tests drive FlowControl on a clock of their own.
    Absent attributes read as 0, as `Bucket` stores them; every call is counted in `calls`."""

    def __init__(self, *targets: Any) -> None:
        self.targets = {target.origin: target for target in targets}
        self.buckets: dict[int, Any] = {}
        self.slots: dict[int, tuple[int, str]] = {}
        self.calls: list[str] = []

    def get_with_default(self, sender_id: str, origin: str) -> tuple[Any, Any]:
        self.calls.append("get_with_default")
        return self.targets.get(origin), self.targets.get("*")

    def _bucket(self, index: int) -> Any:
        from functions.domain.flow import Bucket

        return self.buckets.get(index, Bucket())

    def take_token(self, sender_id: str, origin: str, index: int, take: Any) -> tuple[bool, Any]:
        from dataclasses import replace

        self.calls.append("take_token")
        bucket = self._bucket(index)
        if take.from_full:
            taken, full_at = bucket.full_at_us <= take.now_us, take.now_us + take.interval_us
        else:
            taken = take.now_us <= bucket.full_at_us <= take.latest_full_at_us
            full_at = bucket.full_at_us + take.interval_us
        if take.most_marks_us is not None and bucket.marks_us > take.most_marks_us:
            taken = False
        if not taken:
            return False, bucket
        self.buckets[index] = replace(bucket, full_at_us=full_at, marks_us=bucket.marks_us - take.spent_mark_us)
        return True, self.buckets[index]

    def give_back(self, sender_id: str, origin: str, index: int, interval_us: int) -> None:
        from dataclasses import replace

        self.calls.append("give_back")
        bucket = self._bucket(index)
        self.buckets[index] = replace(bucket, full_at_us=bucket.full_at_us - interval_us)

    def enqueue(self, sender_id: str, origin: str, index: int, plan: Any, now_us: int) -> tuple[bool, Any]:
        from dataclasses import replace

        self.calls.append("enqueue")
        bucket = self._bucket(index)
        if plan.after_tail != (bucket.queue_us >= plan.after_us):
            return False, bucket
        queue = bucket.queue_us + plan.interval_us if plan.after_tail else plan.turn_us
        self.buckets[index] = replace(bucket, queue_us=queue)
        return True, self.buckets[index]

    def mark_retry(self, sender_id: str, origin: str, index: int, mark: Any) -> tuple[bool, Any]:
        from dataclasses import replace

        self.calls.append("mark_retry")
        bucket = self._bucket(index)
        live = mark.now_us <= bucket.marks_us <= mark.most_marks_us
        if not (live if mark.live else bucket.marks_us <= mark.now_us):
            return False, bucket
        marks = bucket.marks_us + mark.mark_us if mark.live else mark.now_us + mark.mark_us
        self.buckets[index] = replace(bucket, marks_us=marks)
        return True, self.buckets[index]

    def take_slot(
        self, sender_id: str, origin: str, slot: int, holder: str, now_ms: int, until_ms: int
    ) -> tuple[bool, int]:
        self.calls.append("take_slot")
        until, _ = self.slots.get(slot, (0, ""))
        if until > now_ms:
            return False, until
        self.slots[slot] = (until_ms, holder)
        return True, until_ms

    def release_slot(self, sender_id: str, origin: str, slot: int, holder: str) -> bool:
        self.calls.append("release_slot")
        if self.slots.get(slot, (0, ""))[1] != holder:
            return False
        del self.slots[slot]
        return True


@contextmanager
def reconciler_paused(relay: Any) -> Iterator[None]:
    """No scheduled reconciler round of a running `LocalRelay` starts in this block (a round in
    progress ends first): a test that runs its own round sees only that round's doing."""
    from relay.local.workers import ScheduledWorker

    if relay.reconciler is not None:
        relay.reconciler.stop()
    try:
        yield
    finally:
        relay.reconciler = ScheduledWorker(relay.local, "relay-reconciler", relay.reconcile_every_seconds).start()


# -- The scheduler's hand-off in seconds (tests/integration/test_scheduler_handoff.py) -------------


def compress_queue_lead(monkeypatch: Any, seconds: int) -> None:
    """QUEUE_LEAD_SECONDS set to `seconds` in every loaded Relay module that holds it (the rule, the
    due time ingest stores, the scheduler's), as bench/cost_run.py does: a message due a few seconds
    after acceptance then waits in the scheduler's shards, as one due in hours does when deployed."""
    import sys

    import functions.services.ingest
    import functions.services.scheduling.scheduler  # noqa: F401  (loaded, so patched too)

    for name, module in list(sys.modules.items()):
        if name.startswith("functions.") and hasattr(module, "QUEUE_LEAD_SECONDS"):
            monkeypatch.setattr(module, "QUEUE_LEAD_SECONDS", seconds)
        if name.startswith("functions.") and hasattr(module, "SCHEDULER_ENTRY_MARGIN_SECONDS"):
            monkeypatch.setattr(module, "SCHEDULER_ENTRY_MARGIN_SECONDS", 0)  # (a minute: compressed away)


class QueueSends:
    """Every delivery-queue send of the relay's functions, by message id (DeliveryQueue.send patched);
    the ids in `lose` are not sent at all, as if their queue copy were lost."""

    def __init__(self, monkeypatch: Any) -> None:
        from functions.adapters.queue import DeliveryQueue

        self.sent: list[str] = []
        self.lose: set[str] = set()
        send = DeliveryQueue.send

        def recording(queue: Any, key: Any, run: int = 0, delay_seconds: int = 0) -> str:
            self.sent.append(key.message_id)
            if key.message_id in self.lose:
                return "lost"
            return str(send(queue, key, run, delay_seconds))

        monkeypatch.setattr(DeliveryQueue, "send", recording)

    def of(self, message_id: str) -> int:
        return self.sent.count(message_id)
