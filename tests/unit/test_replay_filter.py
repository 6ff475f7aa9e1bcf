"""The bulk replay filter (schemas/replay.schema.json): defaults, bounds and errors naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from functions.shared.exceptions import MessageInvalid
from functions.shared.model import Status
from functions.shared.replays import DEFAULT_WINDOW, ReplayFilter, origin_of, parse_filter
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
