"""Delayed messages' and cron schedules' time rules, and the delay fields' validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.domain.config import get_settings
from functions.domain.exceptions import MessageInvalid
from functions.domain.scheduling import (
    QUEUE_LEAD_SECONDS,
    SCHEDULER_ENTRY_MARGIN_SECONDS,
    Cron,
    cron_problem,
    firing_id,
    queue_delay,
    timezone_problem,
    waits_in_scheduler,
)
from functions.domain.validation import validate_message
from tests.conftest import make_message

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _problems(**fields: Any) -> dict[str, str]:
    with pytest.raises(MessageInvalid) as raised:
        validate_message(make_message(timestamp="2026-03-01T12:00:00Z", **fields), get_settings(), now=NOW)
    return {detail.path: detail.message for detail in raised.value.details}


# -- cron -----------------------------------------------------------------------------------------


def test_a_daily_berlin_cron_keeps_its_local_hour_across_the_spring_dst_change() -> None:
    # Given 09:00 every day in Europe/Berlin (UTC+1 in winter, UTC+2 from 29 March 2026)
    cron = Cron("0 9 * * *", "Europe/Berlin")
    # When the next firings are computed across the change
    first = cron.next_after(datetime(2026, 3, 28, 9, 30, tzinfo=UTC))
    second = cron.next_after(first)
    # Then they are 09:00 local on both sides: 08:00 UTC, then 07:00 UTC
    assert first == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    assert cron.next_after(datetime(2026, 3, 27, 12, 0, tzinfo=UTC)) == datetime(2026, 3, 28, 8, 0, tzinfo=UTC)
    assert second == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)


def test_a_berlin_cron_in_the_skipped_hour_fires_once_that_day() -> None:
    # Given 02:30 every day in Europe/Berlin (the clock jumps from 02:00 to 03:00 on 29 March 2026)
    cron = Cron("30 2 * * *", "Europe/Berlin")
    # When the firings around the change are computed
    firings, moment = [], datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    for _ in range(3):
        moment = cron.next_after(moment)
        firings.append(moment)
    # Then every firing is a distinct, later instant (no firing twice, none going back)
    assert firings == sorted(set(firings))
    assert firings[0] == datetime(2026, 3, 28, 1, 30, tzinfo=UTC)
    assert firings[-1] == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)


def test_an_every_minute_cron_fires_on_each_minute_and_ids_differ_per_minute() -> None:
    cron = Cron("* * * * *")
    first = cron.next_after(datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC))
    second = cron.next_after(first)
    assert (first, second) == (datetime(2026, 3, 1, 12, 1, tzinfo=UTC), datetime(2026, 3, 1, 12, 2, tzinfo=UTC))
    assert firing_id("tick", first) == "schedule-tick-20260301T1201Z"
    assert firing_id("tick", first) != firing_id("tick", second)


@pytest.mark.parametrize("expression", ["* * * *", "61 * * * *", "* * * * * *", "not cron at all", "0 0 30 2 *"])
def test_a_cron_expression_that_is_not_five_valid_fields_is_named(expression: str) -> None:
    assert cron_problem(expression) is not None


def test_time_zones_are_checked_by_name() -> None:
    assert timezone_problem("Europe/Berlin") is None
    assert timezone_problem("Mars/Olympus") is not None


# -- the queue's delay and the scheduler's lead ------------------------------------------------------


def test_a_near_due_time_rides_the_queue_delay_and_a_far_one_waits_in_the_scheduler() -> None:
    accepted = NOW.timestamp()
    # (with a minute's margin past the lead: a scheduler entry is due a minute after acceptance at the earliest)
    assert not waits_in_scheduler(int(accepted) + QUEUE_LEAD_SECONDS + SCHEDULER_ENTRY_MARGIN_SECONDS, accepted)
    assert waits_in_scheduler(int(accepted) + QUEUE_LEAD_SECONDS + SCHEDULER_ENTRY_MARGIN_SECONDS + 1, accepted)
    assert QUEUE_LEAD_SECONDS + SCHEDULER_ENTRY_MARGIN_SECONDS < 900  # what rides the queue fits its delay
    assert queue_delay(int(accepted) + 8, accepted + 0.4) == 8  # rounded up: never early
    assert queue_delay(int(accepted) + 5_000, accepted) == 900  # SQS's ceiling
    assert queue_delay(int(accepted) - 5, accepted) == 0


# -- validation -----------------------------------------------------------------------------------


def test_delay_seconds_becomes_one_absolute_due_time() -> None:
    valid = validate_message(make_message(timestamp="2026-03-01T12:00:00Z", delaySeconds=8), get_settings(), now=NOW)
    assert valid.message["notBefore"] == "2026-03-01T12:00:08Z"
    assert "delaySeconds" not in valid.message


def test_not_before_keeps_its_instant_in_utc_and_a_past_time_means_now() -> None:
    settings = get_settings()
    later = validate_message(
        make_message(timestamp="2026-03-01T12:00:00Z", notBefore="2026-03-01T14:00:00+01:00"), settings, now=NOW
    )
    assert later.message["notBefore"] == "2026-03-01T13:00:00Z"
    past = validate_message(
        make_message(timestamp="2026-03-01T12:00:00Z", notBefore="2026-03-01T11:00:00Z"), settings, now=NOW
    )
    assert "notBefore" not in past.message


def test_the_same_message_with_a_delay_has_the_same_fingerprint() -> None:
    message = make_message(timestamp="2026-03-01T12:00:00Z", delaySeconds=60)
    first = validate_message(message, get_settings(), now=NOW)
    second = validate_message(message, get_settings(), now=NOW + timedelta(seconds=3))
    assert first.content_hash == second.content_hash


def test_both_delay_fields_are_refused_naming_each() -> None:
    problems = _problems(delaySeconds=10, notBefore="2026-03-01T13:00:00Z")
    assert set(problems) >= {"$.delaySeconds", "$.notBefore"}


@pytest.mark.parametrize("delay", [-1, 31_536_001, 1.5, "10"])
def test_a_negative_too_long_or_non_integer_delay_is_named(delay: Any) -> None:
    assert "$.delaySeconds" in _problems(delaySeconds=delay)


@pytest.mark.parametrize(
    "not_before", ["2027-03-02T12:00:00Z", "2026-03-01T13:00:00", "tomorrow", "2026-03-01 13:00:00Z"]
)
def test_a_not_before_beyond_a_year_or_without_a_zone_is_named(not_before: str) -> None:
    assert "$.notBefore" in _problems(notBefore=not_before)


def test_a_delay_of_exactly_a_year_is_accepted() -> None:
    valid = validate_message(
        make_message(timestamp="2026-03-01T12:00:00Z", delaySeconds=31_536_000), get_settings(), now=NOW
    )
    assert valid.message["notBefore"] == "2027-03-01T12:00:00Z"


@pytest.mark.parametrize(("raw", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400)])
def test_the_cli_reads_a_delay_with_its_unit(raw: str, seconds: int) -> None:
    from relay.cli.schedules import parse_delay

    assert parse_delay(raw) == seconds


@pytest.mark.parametrize("raw", ["", "ten minutes", "-5m", "5w"])
def test_the_cli_refuses_a_delay_it_cannot_read(raw: str) -> None:
    import argparse

    from relay.cli.schedules import parse_delay

    with pytest.raises(argparse.ArgumentTypeError):
        parse_delay(raw)
