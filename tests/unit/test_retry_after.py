"""Retry-After: how long the next attempt waits, and when a lane defers it to a Wait state;
and the message fields that carry a message's own retry budget and timeout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.http_client import parse_retry_after
from functions.contract.lanes import Lane
from functions.domain.config import get_settings
from functions.domain.exceptions import MessageInvalid
from functions.domain.validation import content_hash, validate_message
from functions.services.delivery import next_retry_wait, retry_delay
from tests.conftest import make_message

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Thu, 01 Jan 2026 00:02:00 GMT", now=NOW.timestamp()) == 120
    assert parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now=NOW.timestamp()) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None


def test_delay_is_capped_by_the_setting_and_the_expiry() -> None:
    far = NOW + timedelta(days=30)
    assert retry_delay(120, 3600, far, NOW) == 120
    assert retry_delay(86_400, 3600, far, NOW) == 3600
    assert retry_delay(600, 3600, NOW + timedelta(seconds=90), NOW) == 90
    assert retry_delay(None, 3600, far, NOW) is None


def test_next_wait_of_each_lane() -> None:
    base: dict[str, Any] = dict(get_settings().__dict__)
    base.update(fast_lane_waits=(5, 10), slow_lane_waits=(60,), slow_lane_initial_wait_seconds=300)
    settings = type(get_settings())(**base)
    # Given the fast lane's waits 5, 10 and the slow lane's first wait 300, then 60
    assert next_retry_wait(settings, Lane.INLINE, 0) == 5
    assert next_retry_wait(settings, Lane.FAST, 1) == 10
    # After the fast lane's last retry the slow lane's first wait comes; after the slow lane's, nothing
    assert next_retry_wait(settings, Lane.FAST, 2) == 300
    assert next_retry_wait(settings, Lane.SLOW, 0) == 60
    assert next_retry_wait(settings, Lane.SLOW, 1) is None


def invalid_paths(**fields: Any) -> dict[str, str]:
    with pytest.raises(MessageInvalid) as raised:
        validate_message(make_message(**fields), get_settings())
    return {detail.path: detail.message for detail in raised.value.details}


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"retry": {"maxAttempts": 0}}, "$.retry.maxAttempts"),
        ({"retry": {"maxAttempts": "2"}}, "$.retry.maxAttempts"),
        ({"retry": {}}, "$.retry.maxAttempts"),
        ({"retry": {"maxAttempts": 2, "backoff": 1}}, "$.retry.backoff"),
        ({"timeoutSeconds": 0}, "$.timeoutSeconds"),
        ({"timeoutSeconds": 1.5}, "$.timeoutSeconds"),
    ],
)
def test_bad_retry_budget_or_timeout_names_the_field(fields: dict[str, Any], path: str) -> None:
    assert path in invalid_paths(**fields)


def test_budget_and_timeout_are_bounded_by_the_deployment() -> None:
    base: dict[str, Any] = dict(get_settings().__dict__)
    base.update(max_attempts=7, total_timeout_seconds=15.0)
    settings = type(get_settings())(**base)
    with pytest.raises(MessageInvalid) as raised:
        validate_message(make_message(retry={"maxAttempts": 8}, timeoutSeconds=20), settings)
    paths = {detail.path: detail.message for detail in raised.value.details}
    assert "at most 7 attempts" in paths["$.retry.maxAttempts"]
    assert "the limit is 15 seconds" in paths["$.timeoutSeconds"]
    valid = validate_message(make_message(retry={"maxAttempts": 7}, timeoutSeconds=15), settings)
    assert valid.message["retry"] == {"maxAttempts": 7} and valid.message["timeoutSeconds"] == 15


def test_budget_and_timeout_are_part_of_the_message_fingerprint() -> None:
    message = {"targetUrl": "https://example.com/", "method": "POST", "body": "x"}
    plain = content_hash(message)
    assert content_hash({**message, "retry": {"maxAttempts": 2}}) != plain
    assert content_hash({**message, "timeoutSeconds": 5}) != plain
    assert content_hash(dict(message)) == plain
