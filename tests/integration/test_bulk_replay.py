"""The bulk replay job on the embedded AWS: the API function, the real replay ASL on moto, IAM enforced.

Messages are put in CANCELLED through the repository's own cancel (a real transition with its index
entry), so the job's paging and counts are checked without waiting for deliveries.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from functions.shared import replays
from functions.shared.config import get_settings
from functions.shared.model import Event, EventType, MessageKey
from functions.shared.queue import DeliveryQueue
from functions.shared.replay_repository import ReplayRepository
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
    # Then it answers 202 with the job and the count matched
    assert answer["statusCode"] == 202, answer
    started = json.loads(answer["body"])
    assert (started["matched"], started["state"]) == (120, "RUNNING")
    assert started["filter"]["origin"] == "https://hooks.example.com"
    # And the replay machine replays them in three pages (50, 50, 20) and ends SUCCEEDED
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
    assert stored is not None and stored["page"] == 3
    # And each matched message has a new run, PENDING, with a REPLAYED event naming the job
    for key in matching:
        head = repository.get_head(key)
        assert head is not None and (head.status.value, head.run) == ("PENDING", 1)
        assert (head.events[-1].type, head.events[-1].details["jobId"]) == (EventType.REPLAYED, started["jobId"])
    # And the other origin's messages are untouched
    assert {repository.get_head(key).status.value for key in others} == {"CANCELLED"}  # type: ignore[union-attr]

    # When the first page runs again (a retried step), it finds nothing left and counts nothing twice
    job_input = {"senderId": SENDER, "jobId": started["jobId"], "filter": started["filter"], "page": 0, "cursor": None}
    again = replays.replay_page(repository, DeliveryQueue(get_settings().queue_url), get_settings(), job_input)
    assert again["counts"] == {"replayed": 0, "skipped": 0, "failed": 0}
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
    # When a page runs
    result = replays.replay_page(
        repository,
        DeliveryQueue(get_settings().queue_url),
        get_settings(),
        {"senderId": SENDER, "jobId": "f" * 32, "filter": job_filter.to_dict(), "page": 0, "cursor": None},
    )
    # Then the third is replayed, the expired one skipped, and the job is done
    assert result["counts"] == {"replayed": 1, "skipped": 1, "failed": 0} and result["cursor"] is None
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
