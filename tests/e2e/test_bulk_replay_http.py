"""Bulk replay through `relay dev` over real HTTP, as a new user would check it (issue 11, item 5)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from functions.contract.settings_names import ToolVariable
from relay.client import RelayClient
from relay.local.targets import TargetServer
from tests.conftest import make_message
from tests.e2e.conftest import RELAY_HOME, ROOT, RelayDev
from tests.support import wait_for


@pytest.fixture
def own_target() -> Iterator[TargetServer]:
    """A target with an origin of its own, so the filter by origin selects this test's messages only."""
    with TargetServer() as server:
        yield server


def relay_cli(relay: RelayDev, *arguments: str) -> tuple[int, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "relay.cli", *arguments, "--url", relay.url, "--token", relay.dev_token, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", ToolVariable.HOME: str(RELAY_HOME)},
    )
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else done.stderr


def test_ten_failed_messages_replayed_with_one_command_after_the_target_recovers(
    relay_dev_process: RelayDev, own_target: TargetServer, target: TargetServer
) -> None:
    client = RelayClient(relay_dev_process.url, token=relay_dev_process.dev_token)
    # Given 10 messages FAILED against a target that refuses them (400: not retried)
    messages = [make_message(senderId="dev", targetUrl=f"{own_target.url}/switch/outage/400") for _ in range(10)]
    # and one FAILED message to another origin, which the filter must leave alone
    elsewhere = make_message(senderId="dev", targetUrl=f"{target.url}/missing")
    for message in [*messages, elsewhere]:
        assert client.send(message).status == 202
    for message in [*messages, elsewhere]:
        assert wait_for(client, message["messageId"])["status"] == "FAILED"

    # When the target recovers and one `relay replay --status FAILED --origin URL` runs
    own_target.heal("outage")
    code, job = relay_cli(relay_dev_process, "replay", "--status", "FAILED", "--origin", own_target.url, "--wait")

    # Then the job matched and replayed all 10 and finished
    assert code == 0, job
    assert (job["state"], job["matched"], job["replayed"], job["skipped"], job["failed"]) == ("SUCCEEDED", 10, 10, 0, 0)
    # And all 10 end DELIVERED, each with a REPLAYED event of that job between its failure and delivery
    for message in messages:
        record = wait_for(client, message["messageId"], ("DELIVERED",))
        history = [event["type"] for event in record["events"]]
        assert history.index("FAILED") < history.index("REPLAYED") < history.index("DELIVERED")
        [replayed] = [event for event in record["events"] if event["type"] == "REPLAYED"]
        assert (replayed["jobId"], replayed["previousStatus"]) == (job["jobId"], "FAILED")
    # And the message to the other origin was not replayed
    assert client.status(elsewhere["messageId"]).body["status"] == "FAILED"
    # And `relay replay --job` shows the same job; a second run matches nothing
    code, shown = relay_cli(relay_dev_process, "replay", "--job", job["jobId"])
    assert code == 0 and shown["replayed"] == 10
    again = client.replay_many({"status": "FAILED", "origin": own_target.url})
    assert again.status == 202 and (again.body["matched"], again.body["state"]) == (0, "SUCCEEDED")


def test_a_bad_filter_is_refused_naming_the_field(relay_dev_process: RelayDev) -> None:
    client = RelayClient(relay_dev_process.url, token=relay_dev_process.dev_token)
    answer = client.replay_many({"status": "DELIVERED", "since": "yesterday", "colour": "red"})
    assert answer.status == 400
    paths = {detail["path"] for detail in answer.body["error"]["details"]}
    assert paths == {"$.status", "$.since", "$.colour"}
    missing = client.replay_job("0" * 32)
    assert (missing.status, missing.body["error"]["code"]) == (404, "REPLAY_NOT_FOUND")


def test_five_bulk_replays_at_once_replay_each_failed_message_once(
    relay_dev_process: RelayDev, own_target: TargetServer
) -> None:
    client = RelayClient(relay_dev_process.url, token=relay_dev_process.dev_token)
    # Given 10 messages FAILED against a target that keeps refusing them (400: not retried)
    messages = [make_message(senderId="dev", targetUrl=f"{own_target.url}/switch/never/400") for _ in range(10)]
    for message in messages:
        assert client.send(message).status == 202
    for message in messages:
        assert wait_for(client, message["messageId"])["status"] == "FAILED"

    # When five bulk replays of them are started at once (each replay fails again at once)
    def start(_: int) -> str:
        answer = client.replay_many({"status": "FAILED", "origin": own_target.url})
        assert answer.status == 202, answer.body
        return str(answer.body["jobId"])

    with ThreadPoolExecutor(5) as pool:
        job_ids = list(pool.map(start, range(5)))
    jobs = []
    for job_id in job_ids:
        deadline = time.monotonic() + 60
        while (job := client.replay_job(job_id).body)["state"] == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.2)
        jobs.append(job)

    # Then each message was replayed once: one REPLAYED event, FAILED again, two requests to the target
    for message in messages:
        record = wait_for(client, message["messageId"], ("FAILED",))
        assert [event["type"] for event in record["events"]].count("REPLAYED") == 1, record["events"]
    assert len(own_target.requests_to("/switch/never/400")) == 20
    # And the jobs replayed 10 between them and counted the rest skipped
    assert {job["state"] for job in jobs} == {"SUCCEEDED"}
    assert sum(job["replayed"] for job in jobs) == 10
    assert all(job["matched"] == job["replayed"] + job["skipped"] + job["failed"] for job in jobs)
