"""A message's runs as `relay trace` and `GET /messages/{id}` show them: type, ARN and a console link.

The console routes, after `https://<region>.console.aws.amazon.com/states/home?region=<region>` (the
README's "Tracing" section records them):
- STANDARD: `#/v2/executions/details/<arn>`
- EXPRESS:  `#/express-executions/details/<arn>?startDate=<epoch ms>`
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from functions.domain.clock import parse_iso
from functions.domain.model import Event, EventType
from functions.services.runs import EXPRESS_MAX_SECONDS, ExecutionType, Workflow, console_link, message_runs

REGION = "eu-west-1"
INGEST = f"arn:aws:states:{REGION}:123456789012:express:RelayIngestMachine-1a2b:3f9c-name:7e1d-id"
FAST = f"arn:aws:states:{REGION}:123456789012:express:RelayFastLane-9z8y:order-42-r0-fast-ab12cd34-0f1e2d3c:5b6a-id"
SLOW = f"arn:aws:states:{REGION}:123456789012:execution:RelaySlowLane-7x6w:order-42-r0-slow-ab12cd34-a3"
REPLAY_FAST = FAST.replace("-r0-", "-r1-")
STARTED = "2026-11-30T20:00:00.250Z"


def event(kind: EventType, at: str, run: int = 0, slot: int = 0, **details: Any) -> Event:
    return Event(kind, parse_iso(at), run, slot, details)


def history() -> list[Event]:
    """A message that failed in both lanes, was replayed, and was delivered by the replay's fast lane."""
    return [
        event(EventType.RECEIVED, STARTED, executionArn=INGEST),
        event(EventType.ENQUEUED, "2026-11-30T20:00:00.300Z"),
        event(EventType.ATTEMPT_STARTED, "2026-11-30T20:00:01.000Z", slot=1, lane="fast", executionArn=FAST),
        event(EventType.ATTEMPT_FAILED, "2026-11-30T20:00:01.200Z", slot=1),
        event(EventType.MOVED_TO_SLOW_LANE, "2026-11-30T20:00:40.000Z", slot=1, executionArn=SLOW),
        event(EventType.ATTEMPT_STARTED, "2026-11-30T21:00:40.000Z", slot=2, lane="slow", executionArn=SLOW),
        event(EventType.FAILED, "2026-11-30T21:00:41.000Z", slot=2),
        event(EventType.REPLAYED, "2026-11-30T22:00:00.000Z", run=1, slot=2),
        event(
            EventType.ATTEMPT_STARTED, "2026-11-30T22:00:01.000Z", run=1, slot=3, lane="fast", executionArn=REPLAY_FAST
        ),
    ]


def test_every_run_is_listed_once_oldest_first_with_its_workflow_type_and_message_run() -> None:
    # Given the history of a message that went through every workflow and a replay
    # When its runs are read
    runs = [run.to_dict() for run in message_runs(reversed(history()))]
    # Then each execution appears once, in the order it started, named by workflow and type
    assert [(r["workflow"], r["type"], r["run"], r["executionArn"]) for r in runs] == [
        ("ingest", "EXPRESS", 0, INGEST),
        ("fastLane", "EXPRESS", 0, FAST),
        ("slowLane", "STANDARD", 0, SLOW),
        ("fastLane", "EXPRESS", 1, REPLAY_FAST),
    ]
    # And each run starts at the first event it recorded
    assert runs[2]["startedAt"] == "2026-11-30T20:00:40.000Z"


def test_a_standard_run_links_to_its_execution_details_as_before() -> None:
    # Given the slow lane's run
    # When its link is built
    link = console_link(SLOW, ExecutionType.STANDARD, STARTED)
    # Then it is the console's Standard route with the ARN percent-encoded
    assert link == (
        f"https://{REGION}.console.aws.amazon.com/states/home?region={REGION}"
        f"#/v2/executions/details/{SLOW.replace(':', '%3A')}"
    )


def test_an_express_run_links_to_the_express_route_with_a_window_that_covers_its_start() -> None:
    # Given the ingest run, which recorded its first event at STARTED
    # When its link is built
    link = console_link(INGEST, ExecutionType.EXPRESS, STARTED)
    # Then it opens the Express execution page for that ARN
    prefix = f"https://{REGION}.console.aws.amazon.com/states/home?region={REGION}#/express-executions/details/"
    assert link.startswith(prefix + INGEST + "?startDate=")
    # And the window opens before the run could have started (an Express run lasts at most 300 s)
    start_ms = int(parse_qs(urlsplit(link.split("#", 1)[1]).query)["startDate"][0])
    recorded = datetime(2026, 11, 30, 20, 0, 0, 250_000, tzinfo=UTC)
    assert start_ms == int(recorded.timestamp() * 1000) - EXPRESS_MAX_SECONDS * 1000


def test_the_type_comes_from_the_arn_and_otherwise_from_the_machine() -> None:
    # Given an Express ARN as AWS writes it, and a fast-lane run named `execution:` by the local emulator
    local_fast = "arn:aws:states:us-east-1:123456789012:execution:relay-delivery-fast:order-42-r0-fast-1"
    events = [event(EventType.ATTEMPT_STARTED, STARTED, slot=1, lane="fast", executionArn=local_fast)]
    # When the runs are read
    (run,) = message_runs(events)
    # Then the fast lane is EXPRESS either way, and its link uses the Express route
    assert (run.workflow, run.execution_type) == (Workflow.FAST_LANE, ExecutionType.EXPRESS)
    assert "#/express-executions/details/" in run.console_url


def test_other_partitions_link_to_their_own_console() -> None:
    # Given a run in AWS China
    arn = SLOW.replace("arn:aws:", "arn:aws-cn:").replace(REGION, "cn-north-1")
    # Then the link goes to that partition's console
    assert console_link(arn, ExecutionType.STANDARD, STARTED).startswith("https://cn-north-1.console.amazonaws.cn/")


def test_a_message_without_recorded_runs_has_none() -> None:
    # Given a message whose events name no execution (accepted before runs were recorded, or replayed)
    events = [event(EventType.RECEIVED, STARTED), event(EventType.ENQUEUED, STARTED)]
    # Then it lists no runs rather than guessing
    assert message_runs(events) == []


def test_each_listed_run_matches_the_published_api_schema() -> None:
    # Given the Execution schema of schemas/openapi.json (what GET /messages/{id} promises)
    import json
    from pathlib import Path

    from jsonschema import Draft202012Validator

    document = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "openapi.json").read_text("utf-8"))
    schema = {**document["components"]["schemas"]["Execution"], "components": document["components"]}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    # When the runs of a full history are listed
    # Then every one is valid against it
    for run in message_runs(history()):
        assert list(validator.iter_errors(run.to_dict())) == []
