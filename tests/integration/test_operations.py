"""Operating Relay: auth, tenant isolation, status and history, listing, replay, cancel, reconciler.

Runs `relay dev` in-process (real handlers, real state machines on moto) over real HTTP.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from functions.adapters import aws
from functions.adapters.messages.items import sender_shard
from functions.adapters.stores.senders import SenderRepository
from functions.domain.model import MessageKey
from relay import cli
from relay.admin import SenderAdmin
from relay.client import RelayClient
from relay.local.runtime import LocalRelay
from relay.local.targets import TargetServer
from tests.conftest import make_message
from tests.support import event_types, quick_reconciling_relay, wait_for, wait_until_terminal


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    with quick_reconciling_relay() as running:
        yield running


@pytest.fixture(scope="module")
def admin(relay: LocalRelay) -> SenderAdmin:
    assert relay.local is not None
    return SenderAdmin(relay.local.table_name)


@pytest.fixture(scope="module")
def alice(relay: LocalRelay, admin: SenderAdmin) -> RelayClient:
    return RelayClient(relay.url, token=admin.create("alice")["token"])


@pytest.fixture(scope="module")
def bob(relay: LocalRelay, admin: SenderAdmin) -> RelayClient:
    return RelayClient(relay.url, token=admin.create("bob")["token"])


def assert_console_links(runs: list[dict[str, Any]]) -> None:
    """Each link opens its run: Express runs by the console's Express route, Standard ones by theirs."""
    console = "https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/"
    for run in runs:
        if run["type"] == "EXPRESS":
            assert run["consoleUrl"].startswith(f"{console}express-executions/details/{run['executionArn']}?startDate=")
        else:
            assert run["consoleUrl"] == f"{console}v2/executions/details/{quote(run['executionArn'], safe='')}"


# -- auth -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "rly_wrong", "not-even-a-token"])
def test_missing_or_wrong_token_is_401_and_nothing_is_stored(
    relay: LocalRelay, alice: RelayClient, target: TargetServer, token: str | None
) -> None:
    message = make_message(senderId="alice", targetUrl=f"{target.url}/ok")
    answer = RelayClient(relay.url, token=token).send(message)
    assert answer.status == 401
    assert answer.body["error"]["code"] == "UNAUTHORIZED"
    assert alice.status(message["messageId"]).status == 404


def test_disabled_sender_is_403_and_nothing_is_stored(
    relay: LocalRelay, admin: SenderAdmin, target: TargetServer
) -> None:
    created = admin.create("carol")
    carol = RelayClient(relay.url, token=created["token"])
    admin.set_status("carol", enabled=False)
    message = make_message(senderId="carol", targetUrl=f"{target.url}/ok")
    answer = carol.send(message)
    assert (answer.status, answer.body["error"]["code"]) == (403, "FORBIDDEN")
    admin.set_status("carol", enabled=True)
    assert carol.status(message["messageId"]).status == 404


def test_a_created_sender_is_let_in_and_one_without_a_working_key_is_403(
    relay: LocalRelay, admin: SenderAdmin, target: TargetServer
) -> None:
    # Given a sender created with no flags, as `relay senders create` does
    fresh = RelayClient(relay.url, token=admin.create("fresh")["token"])
    # Then every kind of call lets it in (its API key is in the default plan)
    assert fresh.send(make_message(senderId="fresh", targetUrl=f"{target.url}/ok")).status == 202
    assert fresh.list().status == 200 and fresh.targets().status == 200
    # And a sender left without a key (a record and a token only, as a creation without a usage
    # plan used to leave it) is refused by API Gateway's key check, as on AWS
    senders = SenderRepository(admin.table_name)
    senders.create("keyless")
    keyless = RelayClient(relay.url, token=senders.add_token("keyless"))
    answer = keyless.send(make_message(senderId="keyless", targetUrl=f"{target.url}/ok"))
    assert (answer.status, answer.body["error"]["code"]) == (403, "FORBIDDEN")
    assert keyless.list().status == 403
    # And so is one whose key was taken out of every usage plan
    record = senders.get("fresh")
    assert record is not None
    for plan in aws.client("apigateway").get_usage_plans(keyId=record["apiKeyId"])["items"]:
        aws.client("apigateway").delete_usage_plan_key(usagePlanId=plan["id"], keyId=record["apiKeyId"])
    assert fresh.list().status == 403


def test_body_sender_must_be_the_token_sender(alice: RelayClient, target: TargetServer) -> None:
    message = make_message(senderId="bob", targetUrl=f"{target.url}/ok")
    answer = alice.send(message)
    assert answer.status == 403
    assert answer.body["error"]["details"][0]["path"] == "$.senderId"


def test_rotated_token_keeps_old_one_for_the_grace_period(relay: LocalRelay, admin: SenderAdmin) -> None:
    old = admin.create("dave")["token"]
    rotated = admin.rotate_token("dave", grace_hours=1)
    assert RelayClient(relay.url, token=old).list("PENDING").status == 200
    assert RelayClient(relay.url, token=rotated["token"]).list("PENDING").status == 200
    # A rotation with no grace retires the old tokens at once
    newest = admin.rotate_token("dave", grace_hours=0)
    assert RelayClient(relay.url, token=old).list("PENDING").status == 401
    assert RelayClient(relay.url, token=newest["token"]).list("PENDING").status == 200


def test_per_sender_throttling_answers_429(relay: LocalRelay, admin: SenderAdmin) -> None:
    slow = RelayClient(relay.url, token=admin.create("erin", rate_per_second=0.5, burst=2)["token"])
    statuses = [slow.list("PENDING").status for _ in range(5)]
    assert statuses[:2] == [200, 200]
    assert 429 in statuses[2:]


# -- isolation --------------------------------------------------------------------------------------


def test_another_senders_message_is_404_for_every_action(
    alice: RelayClient, bob: RelayClient, target: TargetServer
) -> None:
    message = make_message(senderId="alice", targetUrl=f"{target.url}/missing")
    assert alice.send(message).status == 202
    wait_for(alice, message["messageId"])
    for answer in (
        bob.status(message["messageId"]),
        bob.replay(message["messageId"]),
        bob.cancel(message["messageId"]),
    ):
        assert (answer.status, answer.body["error"]["code"]) == (404, "MESSAGE_NOT_FOUND")
    listed = bob.list("FAILED").body["items"]
    assert message["messageId"] not in [item["messageId"] for item in listed]
    # The owner still sees it
    assert message["messageId"] in [item["messageId"] for item in alice.list("FAILED").body["items"]]


# -- status, history, list ---------------------------------------------------------------------------


def test_status_shows_the_whole_timeline_and_the_runs(alice: RelayClient, target: TargetServer) -> None:
    # Given a message that fails its inline attempt and both of the fast lane's, then is delivered
    message = make_message(senderId="alice", targetUrl=f"{target.url}/flaky/3")
    assert alice.send(message).status == 202
    record = wait_for(alice, message["messageId"])
    assert record["status"] == "DELIVERED" and record["attempts"] == 4
    assert event_types(record) == [
        "RECEIVED",
        "ENQUEUED",
        "ATTEMPT_STARTED",  # inline, in the dispatcher
        "ATTEMPT_FAILED",
        "ATTEMPT_STARTED",  # the fast lane's run
        "ATTEMPT_FAILED",
        "ATTEMPT_STARTED",
        "ATTEMPT_FAILED",
        "MOVED_TO_SLOW_LANE",
        "ATTEMPT_STARTED",
        "DELIVERED",
    ]
    assert {"acceptedAt", "updatedAt", "expiresAt", "deliveredAt"} <= set(record)
    # And every run is listed: the ingest run, the fast lane's, the slow lane's, each with its type
    # (the dispatcher's inline attempt is no run)
    runs = record["executions"]
    assert [(run["workflow"], run["type"], run["run"]) for run in runs] == [
        ("ingest", "EXPRESS", 0),
        ("fastLane", "EXPRESS", 0),
        ("slowLane", "STANDARD", 0),
    ]
    assert ":express:relay-ingest:" in runs[0]["executionArn"]
    assert all(message["messageId"] in run["executionArn"] for run in runs[1:])
    assert_console_links(runs)


def test_relay_trace_gives_each_run_its_type_arn_and_link(
    relay: LocalRelay, admin: SenderAdmin, target: TargetServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a message delivered after a retry, and the CLI pointed at relay dev
    token = admin.create("tracer")["token"]
    tracer = RelayClient(relay.url, token=token)
    message = make_message(senderId="tracer", targetUrl=f"{target.url}/flaky/1")
    assert tracer.send(message).status == 202
    record = wait_for(tracer, message["messageId"])
    flags = ["--url", relay.url, "--token", token]
    # When `relay trace ID --json` runs
    assert cli.main(["trace", message["messageId"], "--json", *flags]) == 0
    runs = json.loads(capsys.readouterr().out)["executions"]
    # Then it gives every run (ingest, fast lane) with its type, ARN and a link that opens it
    assert runs == record["executions"]
    assert [(run["workflow"], run["type"]) for run in runs] == [("ingest", "EXPRESS"), ("fastLane", "EXPRESS")]
    assert_console_links(runs)
    # And the text form prints each run's type, ARN and link
    assert cli.main(["trace", message["messageId"], *flags]) == 0
    printed = capsys.readouterr().out
    for run in runs:
        assert run["executionArn"] in printed and run["consoleUrl"] in printed
    assert "run 0 ingest" in printed and "EXPRESS" in printed


def test_list_is_newest_first_and_paginates(alice: RelayClient, target: TargetServer) -> None:
    ids = []
    for _ in range(5):
        message = make_message(senderId="alice", targetUrl=f"{target.url}/missing")
        assert alice.send(message).status == 202
        ids.append(message["messageId"])
        time.sleep(0.01)
    failed_at = {message_id: wait_for(alice, message_id)["events"][-1]["at"] for message_id in ids}
    seen: list[str] = []
    cursor = None
    while True:
        page = alice.list("FAILED", limit=2, cursor=cursor).body
        assert len(page["items"]) <= 2
        seen.extend(item["messageId"] for item in page["items"])
        cursor = page["nextCursor"]
        if not cursor:
            break
    # Then every one is listed once, the most recent failure first (they fail in parallel, so not
    # necessarily in the order they were accepted)
    ours = [message_id for message_id in seen if message_id in ids]
    assert sorted(ours) == sorted(ids)
    assert [failed_at[m] for m in ours] == sorted((failed_at[m] for m in ours), reverse=True)


def test_a_filtered_page_is_full_whenever_that_many_messages_exist(
    relay: LocalRelay, admin: SenderAdmin, target: TargetServer
) -> None:
    # Given a sender with 4 delivered messages and 3 newer ones that failed (on several of its
    # bySender shards)
    lister = RelayClient(relay.url, token=admin.create("lister")["token"])
    delivered = [make_message(senderId="lister", targetUrl=f"{target.url}/ok") for _ in range(4)]
    failed = [make_message(senderId="lister", targetUrl=f"{target.url}/missing") for _ in range(3)]
    for message in delivered + failed:
        assert lister.send(message).status == 202
        wait_until_terminal(lister, message)
    assert len({sender_shard(MessageKey("lister", m["messageId"])) for m in delivered + failed}) > 1
    # When it lists DELIVERED three at a time
    first = lister.list("DELIVERED", limit=3).body
    # Then the first page holds three (not one: the failed ones are read past), newest first, and
    # the next page the fourth
    newest_first = [message["messageId"] for message in reversed(delivered)]
    assert [item["messageId"] for item in first["items"]] == newest_first[:3] and first["nextCursor"]
    second = lister.list("DELIVERED", limit=3, cursor=first["nextCursor"]).body
    assert [item["messageId"] for item in second["items"]] == newest_first[3:]
    # And without a status it lists every message, newest first, whatever its status
    every = lister.request("GET", "/messages?limit=10").body
    assert [item["messageId"] for item in every["items"]] == [m["messageId"] for m in reversed(delivered + failed)]
    assert {item["status"] for item in every["items"]} == {"DELIVERED", "FAILED"} and every["nextCursor"] is None


def test_list_rejects_bad_queries_naming_the_field(alice: RelayClient, bob: RelayClient) -> None:
    answer = alice.request("GET", "/messages?status=LOST")
    assert answer.status == 400 and answer.body["error"]["details"][0]["path"] == "$.status"
    answer = alice.list("FAILED", limit=1000)
    assert answer.status == 400 and answer.body["error"]["details"][0]["path"] == "$.limit"
    # A cursor with empty keys (not one a listing gave) is refused naming it, not sent to DynamoDB
    empty = {"pk": "", "sk": "", "gsi1pk": "SENDER#alice#STATUS#FAILED", "gsi1sk": ""}
    forged = base64.urlsafe_b64encode(json.dumps(empty).encode()).decode().rstrip("=")
    answer = alice.list("FAILED", cursor=forged)
    assert answer.status == 400 and answer.body["error"]["details"][0]["path"] == "$.cursor"
    # A cursor of another listing (or sender) is refused, not followed
    page = alice.list("FAILED", limit=1).body
    if page["nextCursor"]:
        answer = bob.list("FAILED", cursor=page["nextCursor"])
        assert answer.status == 400 and answer.body["error"]["details"][0]["path"] == "$.cursor"


# -- replay and cancel ------------------------------------------------------------------------------


def test_replay_of_a_failed_message_after_the_target_recovers(alice: RelayClient, target: TargetServer) -> None:
    # Given a message that failed because its target was down
    message = make_message(senderId="alice", targetUrl=f"{target.url}/switch/replay-me")
    assert alice.send(message).status == 202
    failed = wait_for(alice, message["messageId"])
    assert failed["status"] == "FAILED"
    # When the target recovers and the message is replayed
    target.heal("replay-me")
    answer = alice.replay(message["messageId"])
    assert answer.status == 202 and answer.body["status"] == "PENDING"
    # Then it is delivered, with REPLAYED in its history after the failure
    record = wait_for(alice, message["messageId"], ("DELIVERED",))
    history = event_types(record)
    assert history.index("FAILED") < history.index("REPLAYED") < history.index("DELIVERED")
    # And the replay was delivered by the dispatcher's inline attempt, so it started no run: the
    # first delivery's runs are the ones listed, each with a link that opens it
    replayed = [event for event in record["events"] if event["type"] == "ATTEMPT_STARTED"][-1]
    assert replayed["lane"] == "inline"
    runs = record["executions"]
    assert [(run["run"], run["workflow"]) for run in runs] == [(0, "ingest"), (0, "fastLane"), (0, "slowLane")]
    assert_console_links(runs)
    # And a message that is not finished cannot be replayed
    pending = make_message(senderId="alice", targetUrl=f"{target.url}/slow/1500")
    assert alice.send(pending).status == 202
    answer = alice.replay(pending["messageId"])
    assert (answer.status, answer.body["error"]["code"]) == (409, "MESSAGE_NOT_FINISHED")


def test_cancel_stops_a_message_that_is_being_retried(alice: RelayClient, target: TargetServer) -> None:
    # Given a message whose target fails slowly, so it is still being attempted
    message = make_message(senderId="alice", targetUrl=f"{target.url}/slow/700/503")
    assert alice.send(message).status == 202
    wait_for(alice, message["messageId"], ("DELIVERING", "RETRYING"))
    # When it is cancelled
    answer = alice.cancel(message["messageId"])
    assert answer.status == 200 and answer.body["status"] == "CANCELLED"
    # Then no attempt starts after the cancellation, and it stays CANCELLED
    time.sleep(2)
    record = alice.status(message["messageId"]).body
    assert record["status"] == "CANCELLED"
    history = event_types(record)
    assert "ATTEMPT_STARTED" not in history[history.index("CANCELLED") :]
    # And cancelling a finished message is refused
    answer = alice.cancel(message["messageId"])
    assert (answer.status, answer.body["error"]["code"]) == (409, "MESSAGE_ALREADY_FINISHED")


# -- reconciler -------------------------------------------------------------------------------------


def test_message_stored_while_the_queue_was_down_is_delivered_by_the_reconciler(
    alice: RelayClient, target: TargetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the delivery queue refuses every send
    real_client = aws.client

    class QueueDown:
        def __init__(self, real: Any) -> None:
            self.real = real

        def __getattr__(self, name: str) -> Any:
            if name == "send_message":
                from botocore.exceptions import ClientError

                def refuse(**_: Any) -> Any:
                    raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, "SendMessage")

                return refuse
            return getattr(self.real, name)

    monkeypatch.setattr(
        aws, "client", lambda service: QueueDown(real_client(service)) if service == "sqs" else real_client(service)
    )
    message = make_message(senderId="alice", targetUrl=f"{target.url}/ok")
    # When a message is posted, the caller is told it failed, but it is stored
    answer = alice.send(message)
    assert answer.status == 500
    assert alice.status(message["messageId"]).body["status"] == "PENDING"
    # And once the queue is back, with no client action
    monkeypatch.undo()
    record = wait_for(alice, message["messageId"], timeout=30)
    # Then the reconciler re-drove it and it was delivered
    assert record["status"] == "DELIVERED"
    history = event_types(record)
    assert "ENQUEUE_FAILED" in history and "REDRIVEN" in history
