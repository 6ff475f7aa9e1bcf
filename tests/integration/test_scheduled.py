"""Delayed messages and cron schedules through `relay dev`'s runtime (LocalRelay), as a user sees them.

No timing is asserted beyond order: a delayed message never reaches its target before its due time
(behaviour); how close after it arrives is measured by `relay demo` / bench, not here.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from functions.domain.clock import parse_iso
from relay.client import RelayClient
from relay.local.runtime import LocalRelay
from relay.local.targets import TargetServer
from tests.conftest import make_message
from tests.support import NO_BREAKER, delivery_relay, wait_for


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelay]:
    with delivery_relay(NO_BREAKER, schedule_every_seconds=0.5) as running:
        yield running


def test_a_short_delay_is_scheduled_meanwhile_and_never_sent_early(client: RelayClient, target: TargetServer) -> None:
    # Given a message with delaySeconds 3
    message = make_message(senderId="dev", targetUrl=f"{target.url}/ok", delaySeconds=3)
    # When it is accepted
    sent_at = datetime.now(UTC)
    answer = client.send(message)
    # Then the 202 says SCHEDULED with its due time, 3 s after the request at the earliest (counted
    # from when validation read it: acceptedAt, stamped by the later store step, may be later still
    # on a busy machine), and the message is SCHEDULED meanwhile
    assert answer.status == 202, answer.body
    assert answer.body["status"] == "SCHEDULED"
    due = parse_iso(answer.body["notBefore"])
    assert due >= sent_at + timedelta(seconds=3)
    record = client.status(message["messageId"]).body
    assert (record["status"], record["notBefore"]) == ("SCHEDULED", answer.body["notBefore"])
    # And it is delivered, the target getting it no earlier than its due time
    delivered = wait_for(client, message["messageId"], ("DELIVERED",), timeout=30)
    [request] = [r for r in target.requests_to("/ok") if r.header("webhook-id") == f"dev:{message['messageId']}"]
    assert datetime.fromtimestamp(request.at, UTC) >= due
    assert parse_iso(delivered["deliveredAt"]) >= due
    # And, delivered at its first attempt, it leaves the reconciler nothing to look at
    from functions.adapters.repository import MessageRepository
    from functions.domain.config import get_settings
    from functions.domain.model import MessageKey

    head = MessageRepository(get_settings().table_name).get_head(MessageKey("dev", message["messageId"]))
    assert head is not None and head.due_at is None


def test_a_far_due_time_can_be_listed_and_cancelled_and_is_never_sent(
    client: RelayClient, target: TargetServer
) -> None:
    # Given a message due in three days
    not_before = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    message = make_message(senderId="dev", targetUrl=f"{target.url}/ok", notBefore=not_before.isoformat())
    answer = client.send(message)
    # Then it is accepted SCHEDULED, and expires after its due time
    assert (answer.status, answer.body["status"]) == (202, "SCHEDULED")
    assert parse_iso(answer.body["expiresAt"]) > not_before
    # And it is listed among the SCHEDULED messages
    listed = client.list(status="SCHEDULED", limit=100).body["items"]
    assert message["messageId"] in [item["messageId"] for item in listed]
    # When it is cancelled
    assert client.cancel(message["messageId"]).body["status"] == "CANCELLED"
    # Then it stays CANCELLED and its target never gets it
    time.sleep(1.5)  # a few scheduler ticks
    assert client.status(message["messageId"]).body["status"] == "CANCELLED"
    assert not [r for r in target.requests_to("/ok") if r.header("webhook-id") == f"dev:{message['messageId']}"]


def test_both_delay_fields_are_refused_naming_each(client: RelayClient) -> None:
    message = make_message(senderId="dev", delaySeconds=5, notBefore="2030-01-01T00:00:00Z")
    answer = client.send(message)
    assert answer.status == 400
    assert {d["path"] for d in answer.body["error"]["details"]} >= {"$.delaySeconds", "$.notBefore"}


def test_a_minutely_schedule_fires_one_message_per_minute_until_deleted(
    relay: LocalRelay, client: RelayClient, target: TargetServer
) -> None:
    from functions.adapters.queue import DeliveryQueue
    from functions.adapters.stores.schedule_repository import ScheduleRepository
    from functions.domain.config import get_settings
    from functions.services.scheduling.scheduler import sweep

    # Given a schedule firing every minute
    name = f"tick-{time.time_ns() % 10**9}"
    schedule = {"cron": "* * * * *", "message": {"targetUrl": f"{target.url}/ok", "body": {"tick": True}}}
    answer = client.put_schedule(name, schedule)
    assert answer.status == 200, answer.body
    assert answer.body["timezone"] == "UTC" and answer.body["paused"] is False
    assert client.schedule(name).body["nextRunAt"] == answer.body["nextRunAt"]
    assert name in [item["name"] for item in client.schedules().body["items"]]
    # When the scheduler sweeps at times three minutes ahead (an injected clock), twice each
    settings = get_settings()
    repository, queue = ScheduleRepository(settings.table_name), DeliveryQueue(settings.queue_url)
    later = datetime.now(UTC) + timedelta(minutes=3)
    for now in (later, later, later + timedelta(minutes=1)):
        sweep(repository, queue, settings, now=now)
    # Then each firing is one distinct message with its derived id, listed by GET /messages
    listed = [item["messageId"] for item in client.list(limit=100).body["items"]]
    firings = sorted({m for m in listed if m.startswith(f"schedule-{name}-")})
    assert len(firings) >= 4
    assert len(firings) == len(set(firings))
    # And they are one a minute: consecutive minutes, none skipped, none twice (the scheduler's
    # cursor skips delayed messages already handed, never a schedule)
    minutes = sorted(datetime.strptime(firing.rsplit("-", 1)[1], "%Y%m%dT%H%MZ") for firing in firings)
    assert [later - earlier for earlier, later in itertools.pairwise(minutes)] == [timedelta(minutes=1)] * (
        len(minutes) - 1
    )
    # When the schedule is deleted
    assert client.delete_schedule(name).status == 200
    # Then no firing is created any more, and the firings still waiting are cancelled
    sweep(repository, queue, settings, now=later + timedelta(minutes=10))
    after = [item["messageId"] for item in client.list(limit=100).body["items"]]
    assert sorted({m for m in after if m.startswith(f"schedule-{name}-")}) == firings
    records = [client.status(firing).body for firing in firings]
    soon = datetime.now(UTC) + timedelta(minutes=2)
    waiting = [r["status"] for r in records if "notBefore" in r and parse_iso(r["notBefore"]) > soon]
    assert waiting and set(waiting) == {"CANCELLED"}
    assert client.schedule(name).status == 404


def test_the_cli_sends_with_a_delay_and_manages_a_schedule(
    relay: LocalRelay, target: TargetServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from relay import cli

    flags = ["--url", relay.url, "--token", relay.dev_token]
    # Given `relay send --delay 10m`
    sent_at = datetime.now(UTC)
    assert cli.main(["send", "--target-url", f"{target.url}/ok", "--delay", "10m", "--json", *flags]) == 0
    sent = json.loads(capsys.readouterr().out)
    # Then the message is SCHEDULED ten minutes after the request at the earliest (the delay counts
    # from validation; acceptedAt, stamped by the later store step, may be a little later)
    assert sent["status"] == "SCHEDULED"
    assert parse_iso(sent["notBefore"]) >= sent_at + timedelta(minutes=10)
    assert parse_iso(sent["notBefore"]) - parse_iso(sent["acceptedAt"]) > timedelta(minutes=9)
    # Given `relay schedules set` with a cron in a zone (its target as --url, the API's base URL as
    # --api-url), then list, show, pause, resume and delete
    name = f"cli-{time.time_ns() % 10**9}"
    flags = ["--api-url", relay.url, "--token", relay.dev_token]
    set_flags = ["--cron", "*/5 * * * *", "--timezone", "Europe/Berlin", "--url", f"{target.url}/ok"]
    assert cli.main(["schedules", "set", name, *set_flags, *flags]) == 0
    assert f"{name}: '*/5 * * * *' (Europe/Berlin), next " in capsys.readouterr().out
    assert cli.main(["schedules", "list", *flags]) == 0 and name in capsys.readouterr().out
    assert cli.main(["schedules", "pause", name, *flags]) == 0 and "paused" in capsys.readouterr().out
    assert cli.main(["schedules", "resume", name, *flags]) == 0 and "next" in capsys.readouterr().out
    assert cli.main(["schedules", "delete", name, *flags]) == 0
    capsys.readouterr()
    # Then it is gone
    assert cli.main(["schedules", "show", name, *flags]) == 1
    assert "SCHEDULE_NOT_FOUND" in capsys.readouterr().out
