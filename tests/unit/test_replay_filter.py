"""The bulk replay filter (schemas/replay.schema.json): defaults, bounds and errors naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from functions.adapters.stores.replay_repository import WindowEntry
from functions.contract.settings_names import Setting
from functions.domain.exceptions import MessageInvalid
from functions.domain.model import MessageKey, Status
from functions.services.replays import (
    DEFAULT_WINDOW,
    Paging,
    ReplayFilter,
    ReplayRunResult,
    ReplayStep,
    parse_filter,
    start_job,
)
from relay.cli import parse_moment

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def paths(body: object) -> set[str]:
    with pytest.raises(MessageInvalid) as refused:
        parse_filter(body if isinstance(body, str) else json.dumps(body), NOW)
    return {detail.path for detail in refused.value.details}


def test_defaults_until_now_and_since_a_day_before() -> None:
    # Given only a status, When it is parsed, Then the window is the last 24 hours
    parsed = parse_filter('{"status": "FAILED"}', NOW)
    assert parsed == ReplayFilter(Status.FAILED, NOW - DEFAULT_WINDOW, NOW, None)
    assert timedelta(hours=24) == DEFAULT_WINDOW


def test_until_is_capped_at_the_request_and_origin_normalised() -> None:
    parsed = parse_filter(
        json.dumps(
            {
                "status": "CANCELLED",
                "since": "2026-03-01T10:00:00+01:00",
                "until": "2030-01-01T00:00:00Z",
                "origin": "HTTPS://Hooks.Example.COM:443/orders?x=1",
            }
        ),
        NOW,
    )
    assert parsed.since == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert parsed.until == NOW
    assert parsed.origin == "https://hooks.example.com"
    assert ReplayFilter.from_dict(parsed.to_dict()) == parsed


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, {"$.status"}),
        ({"status": "DELIVERED"}, {"$.status"}),
        ({"status": "FAILED", "since": "2h"}, {"$.since"}),
        ({"status": "FAILED", "until": "2026-03-01T12:00:00"}, {"$.until"}),
        ({"status": "FAILED", "origin": "ftp://host"}, {"$.origin"}),
        ({"status": "FAILED", "colour": "red"}, {"$.colour"}),
        ({"status": "FAILED", "since": "2026-03-01T11:00:00Z", "until": "2026-03-01T10:00:00Z"}, {"$.since"}),
        ("not json", {"$"}),
        ([], {"$"}),
        ('{"status": "FAILED", "since": NaN}', {"$"}),
        ("[" * 100_000, {"$[0]"}),
        ('{"status": "FAILED", "origin": ' + "[" * 65 + "]" * 65 + "}", {"$.origin"}),
        ({"status": "FAILED", "until": "0001-01-01T12:00:00Z"}, {"$.until"}),
        ({"status": "FAILED", "since": "0001-01-01T00:00:00+01:00"}, {"$.since"}),
        ({"status": "FAILED", "until": "9999-12-31T23:00:00-01:00"}, {"$.until"}),
        ({"status": "FAILED", "origin": f"https://{'a' * 254}.example"}, {"$.origin"}),
    ],
)
def test_each_bad_field_is_named(body: object, expected: set[str]) -> None:
    assert paths(body) == expected


def test_cli_durations_and_times() -> None:
    assert parse_moment("2h", NOW) == "2026-03-01T10:00:00.000Z"
    assert parse_moment("1.5d", NOW) == "2026-02-28T00:00:00.000Z"
    assert parse_moment("2026-03-01T10:00:00Z") == "2026-03-01T10:00:00Z"
    with pytest.raises(Exception, match="time zone"):
        parse_moment("2026-03-01T10:00:00")


class _WideWindow:
    """A replay repository whose window holds far more FAILED messages than any old cap (10,000)."""

    def __init__(self) -> None:
        self.pages = 0
        self.jobs: list[tuple[Any, ...]] = []

    def status_window(self, *_: object) -> tuple[list[WindowEntry], dict[str, str]]:
        self.pages += 1
        return [WindowEntry(MessageKey("s", f"m{self.pages}-{n}"), f"1#m{n}") for n in range(1000)], {"more": "yes"}

    def get_messages(self, keys: list[MessageKey]) -> list[object]:
        return []  # none of them goes to the filter's origin

    def create_job(self, *arguments: Any) -> None:
        self.jobs.append(arguments)


class _Workflows:
    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    def start(self, arn: str, name: str, payload: dict[str, Any]) -> None:
        self.started.append(payload)


def test_a_window_of_any_size_is_not_counted_first_but_started_as_a_job() -> None:
    # Given a window of FAILED messages far beyond 10,000, none of its first page to the filter's origin
    repository, workflows = _WideWindow(), _Workflows()
    settings = SimpleNamespace(ttl_seconds=3600, replay_machine_arn="arn:machine")
    body = '{"status": "FAILED", "origin": "https://hooks.example.com"}'
    # When the API starts the job
    started = start_job(repository, workflows, settings, "s", body, NOW, Paging(page_size=1000))  # type: ignore[arg-type]
    # Then it looked at one page only and answered RUNNING with what that page held (nothing yet)
    assert repository.pages == 1
    assert (started["matched"], started["state"]) == (0, "RUNNING")
    # And the job is recorded and its run started with the job's key only (the job item holds the cursor)
    assert [job[3:5] for job in repository.jobs] == [(0, "RUNNING")]
    assert workflows.started == [{"senderId": "s", "jobId": started["jobId"]}]


def test_paging_comes_from_the_schema_unless_the_environment_overrides_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Paging.from_environment() == Paging(50, 40)
    monkeypatch.setenv(Setting.REPLAY_PAGE_SIZE, "7")
    monkeypatch.setenv(Setting.REPLAY_PAGES_PER_RUN, "2")
    assert Paging.from_environment() == Paging(7, 2)


def test_replay_steps_are_read_once_and_answer_the_machines_keys() -> None:
    # Given the replay machine's ReplayPage and RecordFailure inputs
    page = ReplayStep.from_event({"senderId": "s", "jobId": "j"})
    failed = ReplayStep.from_event({"action": "fail", "senderId": "s", "jobId": "j", "error": {"Error": "Boom"}})
    # Then they read as such, and a run answers with what ReplayPage's ResultSelector reads
    assert (page.fail, failed.fail, failed.error) == (False, True, "Boom")
    answer = ReplayRunResult("s", "j", True, 1, {"matched": 1}).to_dict()
    assert {name: answer[name] for name in ("senderId", "jobId", "done")} == {
        "senderId": "s",
        "jobId": "j",
        "done": True,
    }
    with pytest.raises(ValueError, match="jobId"):
        ReplayStep.from_event({"senderId": "s"})
