"""The bulk replay job on the embedded AWS: the API function, the real replay ASL on moto, IAM enforced.

Messages are put in CANCELLED through the repository's own cancel, or in FAILED through its own
finish_failed (real transitions with their index entries), so the job's paging and counts are
checked without waiting for deliveries.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.queue import DeliveryQueue
from functions.adapters.stores.replay_repository import ReplayRepository, WindowEntry
from functions.contract.settings_names import Setting
from functions.domain.config import get_settings
from functions.domain.model import Event, EventType, MessageKey, Status
from functions.services import replays
from relay.local.emulator import LocalAws
from tests.support import expire_stored_message

SENDER = "shop"


def api_event(method: str, path: str, body: dict[str, Any] | None = None, sender: str = SENDER) -> dict[str, Any]:
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "queryStringParameters": None,
        "requestContext": {"requestId": "req-1", "stage": "v1", "authorizer": {"senderId": sender}},
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }


def cancelled_messages(count: int, target_url: str, sender: str = SENDER) -> list[MessageKey]:
    """`count` stored messages to `target_url`, each CANCELLED (one index entry each)."""
    repository = ReplayRepository(get_settings().table_name)
    keys = []
    for index in range(count):
        key = MessageKey(sender, f"m-{target_url.split('//')[1].split('/')[0]}-{index:03d}")
        now = datetime.now(UTC)
        ttl = int(now.timestamp()) + 3600
        message = {"messageId": key.message_id, "senderId": sender, "targetUrl": target_url, "timestamp": "x"}
        assert repository.put_content(key, message, f"hash-{key.message_id}", ttl)
        assert repository.create_head(key, f"hash-{key.message_id}", "req", now, ttl, Event(EventType.RECEIVED, now))
        head = repository.get_head(key)
        assert head is not None
        assert repository.cancel(head, Event(EventType.CANCELLED, now, 0, 0)) is not None
        keys.append(key)
    return keys


def wait_for_job(local: LocalAws, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = local.invoke("relay-api", api_event("GET", f"/replays/{job_id}"))
        job = json.loads(answer["body"])
        if job["state"] != "RUNNING":
            return dict(job)
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still running: {job}")


def test_a_job_replays_every_match_page_by_page_and_counts_it(local_aws: LocalAws) -> None:
    # Given 120 CANCELLED messages to one origin and 5 to another
    matching = cancelled_messages(120, "https://hooks.example.com/orders")
    others = cancelled_messages(5, "https://other.example.com/orders")
    # When a bulk replay of CANCELLED messages to the first origin is asked for
    answer = local_aws.invoke(
        "relay-api",
        api_event("POST", "/messages/replay", {"status": "CANCELLED", "origin": "HTTPS://Hooks.Example.com:443/x"}),
    )
    # Then it answers 202 with the job and what the window's first page held (nothing counted first)
    assert answer["statusCode"] == 202, answer
    started = json.loads(answer["body"])
    assert (started["matched"], started["state"]) == (50, "RUNNING")
    assert started["filter"]["origin"] == "https://hooks.example.com"
    # And the replay machine replays them page by page (the window's 125: 50, 50, 25) and ends
    # SUCCEEDED with every match counted
    job = wait_for_job(local_aws, started["jobId"])
    assert (job["state"], job["matched"], job["replayed"], job["skipped"], job["failed"]) == (
        "SUCCEEDED",
        120,
        120,
        0,
        0,
    )
    repository = ReplayRepository(get_settings().table_name)
    stored = repository.get_job(SENDER, started["jobId"])
    assert stored is not None and stored["page"] == 3 and "cursor" not in stored
    # And each matched message has a new run, PENDING, with a REPLAYED event naming the job
    for key in matching:
        head = repository.get_head(key)
        assert head is not None and (head.status.value, head.run) == ("PENDING", 1)
        assert (head.events[-1].type, head.events[-1].details["jobId"]) == (EventType.REPLAYED, started["jobId"])
    # And the other origin's messages are untouched
    assert {repository.get_head(key).status.value for key in others} == {"CANCELLED"}  # type: ignore[union-attr]

    # When a run of the job comes again (a retried step), it reads that the job is over and counts nothing twice
    job_input = {"senderId": SENDER, "jobId": started["jobId"]}
    again = replays.replay_run(
        repository, DeliveryQueue(get_settings().queue_url), get_settings(), replays.ReplayStep.from_event(job_input)
    )
    assert (again.done, again.pages, again.counts["replayed"]) == (True, 0, 0)
    assert repository.get_job(SENDER, started["jobId"])["page"] == 3  # type: ignore[index]


def test_a_message_that_moved_on_is_skipped_and_other_senders_see_nothing(local_aws: LocalAws) -> None:
    # Given three CANCELLED messages: one replayed by hand before the job's page reaches it (it
    # leaves the index), one that expired meanwhile (still listed, no longer replayable)
    first, expired, third = cancelled_messages(3, "https://late.example.com/")
    assert local_aws.invoke("relay-api", api_event("POST", f"/messages/{first.message_id}/replay"))["statusCode"] == 202
    expire_stored_message(SENDER, expired.message_id)
    repository = ReplayRepository(get_settings().table_name)
    job_filter = replays.ReplayFilter.from_dict(
        {"status": "CANCELLED", "since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}
    )
    repository.create_job(SENDER, "f" * 32, job_filter.to_dict(), 2, "RUNNING", datetime.now(UTC), 2**31)
    # When a run of the job runs
    result = replays.replay_run(
        repository, DeliveryQueue(get_settings().queue_url), get_settings(), replays.ReplayStep(SENDER, "f" * 32)
    )
    # Then the third is replayed, the expired one skipped, and the job is done
    assert result.counts == {"matched": 2, "replayed": 1, "skipped": 1, "failed": 0} and result.done
    assert repository.get_head(third).run == 1  # type: ignore[union-attr]
    # And another sender cannot see the job
    other = local_aws.invoke("relay-api", api_event("GET", f"/replays/{'f' * 32}", sender="intruder"))
    assert (other["statusCode"], json.loads(other["body"])["error"]["code"]) == (404, "REPLAY_NOT_FOUND")
    assert (
        json.loads(local_aws.invoke("relay-api", api_event("GET", f"/replays/{'f' * 32}"))["body"])["state"]
        == "SUCCEEDED"
    )


def test_nothing_matched_finishes_at_once_without_a_run(local_aws: LocalAws) -> None:
    answer = local_aws.invoke("relay-api", api_event("POST", "/messages/replay", {"status": "FAILED"}))
    body = json.loads(answer["body"])
    assert (answer["statusCode"], body["matched"], body["state"]) == (202, 0, "SUCCEEDED")


# -- any size: a job pages through its window in runs, resuming from the job item --------------------


@pytest.fixture
def small_pages() -> Iterator[LocalAws]:
    """The embedded AWS with pages of 7 messages and runs of 2 pages (the deployed defaults: 50 and 40)."""
    environment = {Setting.REQUIRE_SENDER: "false", Setting.REPLAY_PAGE_SIZE: "7", Setting.REPLAY_PAGES_PER_RUN: "2"}
    with LocalAws(time_scale=0.001, environment=environment) as local:
        yield local


def replay_runs(local: LocalAws, job_id: str) -> int:
    """How many runs (ReplayPage invocations) the job's execution made."""
    sfn = local_client("stepfunctions")
    [execution] = [
        item
        for arn in local.state_machine_arns.values()
        for item in sfn.list_executions(stateMachineArn=arn)["executions"]
        if item["name"] == job_id
    ]
    history = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
    return sum(
        1
        for event in history
        if event["type"] == "TaskStateEntered" and event["stateEnteredEventDetails"]["name"] == "ReplayPage"
    )


def local_client(service: str) -> Any:
    import boto3

    return boto3.client(service, region_name="us-east-1")


def test_a_job_larger_than_a_run_continues_run_after_run_and_matched_grows(small_pages: LocalAws) -> None:
    # Given 30 CANCELLED messages, with pages of 7 and runs of 2 pages (five pages: three runs)
    keys = cancelled_messages(30, "https://many.example.com/in")
    # When a bulk replay of them is asked for
    answer = small_pages.invoke("relay-api", api_event("POST", "/messages/replay", {"status": "CANCELLED"}))
    started = json.loads(answer["body"])
    # Then the answer's `matched` is what the first page held, and the job is RUNNING
    assert (answer["statusCode"], started["matched"], started["state"]) == (202, 7, "RUNNING")
    # And while it runs, the job's `matched` only grows; it ends SUCCEEDED with all 30 matched and replayed
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = json.loads(small_pages.invoke("relay-api", api_event("GET", f"/replays/{started['jobId']}"))["body"])
        seen.append(job["matched"])
        if job["state"] != "RUNNING":
            break
        time.sleep(0.05)
    assert seen == sorted(seen) and seen[0] >= 7
    assert (job["state"], job["matched"], job["replayed"], job["skipped"], job["failed"]) == (
        "SUCCEEDED",
        30,
        30,
        0,
        0,
    )
    # And it took five pages in three runs of the machine, each resuming from the job item
    repository = ReplayRepository(get_settings().table_name)
    stored = repository.get_job(SENDER, started["jobId"])
    assert stored is not None and stored["page"] == 5 and "cursor" not in stored
    assert replay_runs(small_pages, started["jobId"]) == 3
    # And every message has exactly one REPLAYED event of the job
    for key in keys:
        head = repository.get_head(key)
        assert head is not None and [
            event.details.get("jobId") for event in head.events[1:] if event.type == EventType.REPLAYED
        ] == [started["jobId"]]


def test_a_run_that_stops_short_resumes_where_the_job_item_stands(local_aws: LocalAws) -> None:
    # Given a job over 12 CANCELLED messages, run with pages of 5 and one page a run
    cancelled_messages(12, "https://resume.example.com/")
    repository = ReplayRepository(get_settings().table_name)
    job_filter = replays.ReplayFilter(Status.CANCELLED, datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC), None)
    repository.create_job(SENDER, "e" * 32, job_filter.to_dict(), 0, "RUNNING", datetime.now(UTC), 2**31)
    queue, settings, job = (
        DeliveryQueue(get_settings().queue_url),
        get_settings(),
        replays.ReplayStep(SENDER, "e" * 32),
    )
    paging = replays.Paging(page_size=5, pages_per_run=1)
    # When runs come one after the other (the input never says where the job stands)
    answers = [replays.replay_run(repository, queue, settings, job, paging) for _ in range(3)]
    # Then each run took the next page and the third ended the job
    assert [(a.done, a.pages, a.counts["replayed"]) for a in answers] == [
        (False, 1, 5),
        (False, 1, 5),
        (True, 1, 2),
    ]
    # And a run whose invocation is short of time stops after one page even when more are allowed
    cancelled_messages(12, "https://short.example.com/")
    later = replays.ReplayFilter(Status.CANCELLED, datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC), None)
    repository.create_job(SENDER, "d" * 32, later.to_dict(), 0, "RUNNING", datetime.now(UTC), 2**31)
    roomy = replays.Paging(page_size=5, pages_per_run=100)
    short = replays.replay_run(repository, queue, settings, replace(job, job_id="d" * 32), roomy, lambda: 1_000)
    assert (short.done, short.pages) == (False, 1)
    rest = replays.replay_run(repository, queue, settings, replace(job, job_id="d" * 32), roomy, lambda: 60_000)
    assert (rest.done, rest.pages, rest.counts["replayed"]) == (True, 2, 7)
    assert repository.get_job(SENDER, "d" * 32)["matched"] == 12  # type: ignore[index]


# -- concurrent jobs over one window replay each message once -------------------------------------


def failed_messages(count: int, target_url: str, sender: str = SENDER) -> list[MessageKey]:
    """`count` stored messages to `target_url`, each FAILED (one index entry each)."""
    repository = ReplayRepository(get_settings().table_name)
    keys = []
    for index in range(count):
        key = MessageKey(sender, f"f-{index:03d}")
        now = datetime.now(UTC)
        ttl = int(now.timestamp()) + 3600
        message = {"messageId": key.message_id, "senderId": sender, "targetUrl": target_url, "timestamp": "x"}
        assert repository.put_content(key, message, f"hash-{key.message_id}", ttl)
        assert repository.create_head(key, f"hash-{key.message_id}", "req", now, ttl, Event(EventType.RECEIVED, now))
        fail_again(repository, key)
        keys.append(key)
    return keys


def fail_again(repository: ReplayRepository, key: MessageKey) -> None:
    """The message's run ends FAILED now (a target that refuses it for good, at once)."""
    head = repository.get_head(key)
    assert head is not None
    failed = Event(EventType.FAILED, datetime.now(UTC), head.run, head.attempts, {"reason": "HTTP 400"})
    assert repository.finish_failed(head, "HTTP 400: not retried", [failed]) is not None


class RefusingTarget(DeliveryQueue):
    """The delivery queue of a target that refuses every replayed message at once: each replay's
    new run ends FAILED again before the next job looks at the message."""

    def __init__(self, repository: ReplayRepository) -> None:
        super().__init__(get_settings().queue_url)
        self.repository = repository

    def send(self, key: MessageKey, run: int = 0) -> str:
        time.sleep(0.002)  # the attempt takes a moment: its failure is in a later millisecond
        fail_again(self.repository, key)
        return "refused"


class ReadTogether(ReplayRepository):
    """Every job reads its window page before any of them replays (the widest race)."""

    def __init__(self, table_name: str, jobs: int) -> None:
        super().__init__(table_name)
        self.barrier = threading.Barrier(jobs, timeout=30)

    def status_window(self, *arguments: Any, **keywords: Any) -> tuple[list[WindowEntry], dict[str, Any] | None]:
        page = super().status_window(*arguments, **keywords)
        self.barrier.wait()
        return page


def test_five_jobs_at_once_over_the_same_failed_messages_replay_each_once(local_aws: LocalAws) -> None:
    # Given 10 FAILED messages to a target that refuses every replay at once
    keys = failed_messages(10, "https://refuses.example.com/")
    repository = ReadTogether(get_settings().table_name, jobs=5)
    target = RefusingTarget(repository)
    # And five bulk replay jobs over the same window, whose runs all read the window before any replays
    now = datetime.now(UTC)
    job_filter = replays.ReplayFilter(Status.FAILED, now - timedelta(hours=1), now, None)
    job_ids = [f"{index:032x}" for index in range(1, 6)]
    for job_id in job_ids:
        repository.create_job(SENDER, job_id, job_filter.to_dict(), 0, "RUNNING", now, 2**31)
    # When the five runs go at once
    answers: dict[str, replays.ReplayRunResult] = {}

    def run(job_id: str) -> None:
        answers[job_id] = replays.replay_run(repository, target, get_settings(), replays.ReplayStep(SENDER, job_id))

    threads = [threading.Thread(target=run, args=(job_id,)) for job_id in job_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(answers) == job_ids and all(answer.done for answer in answers.values())
    # Then each message was replayed exactly once: one REPLAYED event, its run 1, FAILED again
    for key in keys:
        head = repository.get_head(key)
        assert head is not None
        assert [event.type for event in head.events].count(EventType.REPLAYED) == 1, key
        assert (head.run, head.status.value) == (1, "FAILED")
    # And each job matched all 10; together they replayed 10 and counted the other 40 skipped
    jobs = [replays.get_job(repository, SENDER, job_id) for job_id in job_ids]
    assert [job["matched"] for job in jobs] == [10] * 5
    assert (sum(job["replayed"] for job in jobs), sum(job["skipped"] for job in jobs)) == (10, 40)
    assert {(job["state"], job["failed"]) for job in jobs} == {("SUCCEEDED", 0)}


@pytest.fixture
def paged_by_25() -> Iterator[LocalAws]:
    """The embedded AWS with pages of 25 messages and runs of 10 pages."""
    environment = {Setting.REQUIRE_SENDER: "false", Setting.REPLAY_PAGE_SIZE: "25", Setting.REPLAY_PAGES_PER_RUN: "10"}
    with LocalAws(time_scale=0.001, environment=environment) as local:
        yield local


@pytest.mark.slow
def test_a_job_of_a_thousand_runs_to_the_end_run_after_run(paged_by_25: LocalAws) -> None:
    # Given 1,010 CANCELLED messages (41 pages of 25, runs of 10 pages: five runs)
    keys = cancelled_messages(1010, "https://thousand.example.com/")
    # When one bulk replay of them is asked for
    answer = paged_by_25.invoke("relay-api", api_event("POST", "/messages/replay", {"status": "CANCELLED"}))
    started = json.loads(answer["body"])
    assert (answer["statusCode"], started["matched"], started["state"]) == (202, 25, "RUNNING")
    # Then the job ends SUCCEEDED with every one of them matched and replayed, in five runs
    job = wait_for_job(paged_by_25, started["jobId"], timeout=300)
    assert (job["state"], job["matched"], job["replayed"], job["skipped"], job["failed"]) == (
        "SUCCEEDED",
        1010,
        1010,
        0,
        0,
    )
    assert replay_runs(paged_by_25, started["jobId"]) == 5
    repository = ReplayRepository(get_settings().table_name)
    assert {repository.get_head(key).run for key in keys[::37]} == {1}  # type: ignore[union-attr]
