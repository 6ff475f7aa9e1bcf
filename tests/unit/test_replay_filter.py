"""The bulk replay filter (schemas/replay.schema.json): defaults, bounds and errors naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from functions.shared.exceptions import MessageInvalid
from functions.shared.model import MessageKey, Status
from functions.shared.replays import (
    DEFAULT_WINDOW,
    MAX_MESSAGES_PER_JOB,
    ReplayFilter,
    count_matches,
    origin_of,
    parse_filter,
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


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080"),
        ("http://Example.com:80/", "http://example.com"),
        ("https://example.com:8443", "https://example.com:8443"),
        ("https://[::1]:443/a", "https://[::1]"),
    ],
)
def test_origin_of(url: str, origin: str) -> None:
    assert origin_of(url) == origin


def test_cli_durations_and_times() -> None:
    assert parse_moment("2h", NOW) == "2026-03-01T10:00:00.000Z"
    assert parse_moment("1.5d", NOW) == "2026-02-28T00:00:00.000Z"
    assert parse_moment("2026-03-01T10:00:00Z") == "2026-03-01T10:00:00Z"
    with pytest.raises(Exception, match="time zone"):
        parse_moment("2026-03-01T10:00:00")


class _WideWindow:
    """A replay repository whose window holds far more FAILED messages than a job may search."""

    def __init__(self) -> None:
        self.pages = 0

    def status_window(self, *_: object) -> tuple[list[MessageKey], dict[str, str]]:
        self.pages += 1
        return [MessageKey("s", f"m{self.pages}-{n}") for n in range(1000)], {"more": "yes"}

    def get_messages(self, keys: list[MessageKey]) -> list[object]:
        return []  # none of them goes to the filter's origin


def test_an_origin_filter_over_a_window_too_wide_to_search_is_refused_naming_since() -> None:
    # Given a window of FAILED messages none of which goes to the origin, beyond what a job searches
    repository = _WideWindow()
    job_filter = parse_filter('{"status": "FAILED", "origin": "https://hooks.example.com"}', NOW)
    # When the API counts the matches / Then it stops and asks for a narrower window
    with pytest.raises(MessageInvalid) as refused:
        count_matches(repository, "s", job_filter)  # type: ignore[arg-type]
    assert [detail.path for detail in refused.value.details] == ["$.since"]
    assert repository.pages == MAX_MESSAGES_PER_JOB // 1000 + 1
