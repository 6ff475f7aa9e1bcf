"""The delivery retry schedule (stacks/schedule.py): its horizon, its attempts, and the README's table of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.common import PRICES_PATH
from bench.cost_model import load_prices, retry_schedule_cost
from functions.contract.lanes import Lane
from stacks.schedule import delivery_schedule, duration_text, markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"
DAY_SECONDS = 24 * 3600
# The schedule before issue 10 (5/10/20 s fast-lane waits; 16 slow-lane retries up to 6 h, FULL jitter).
PREVIOUS_SLOW_LANE_ATTEMPTS = 1 + 16


def test_the_default_schedule_keeps_trying_for_a_day_in_every_case() -> None:
    # Given the lanes' default policies and the dispatcher's inline first attempt
    schedule = delivery_schedule()
    # Then even the shortest draw of every jittered wait leaves a day between the first and last attempt
    # (the slow lane does not jitter, so its waits are exact: 26 h 10 min)
    horizon = schedule.horizon
    assert horizon.min_seconds >= DAY_SECONDS
    assert horizon.expected_seconds >= DAY_SECONDS
    assert horizon.min_seconds == 300 + 300 + 900 + 2700 + 8100 + 24300 + 2 * 28800
    # And the slow lane needs fewer attempts for it than before
    assert schedule.lane_attempts(Lane.SLOW) < PREVIOUS_SLOW_LANE_ATTEMPTS - 1
    assert [schedule.lane_attempts(lane) for lane in (Lane.INLINE, Lane.FAST, Lane.SLOW)] == [1, 3, 8]


def test_the_fast_lanes_waits_stay_a_few_seconds_of_express_duration() -> None:
    # Given the fast lane's default policy
    fast = delivery_schedule().fast
    # Then it waits about 1 and 4 s (FULL jitter), 2.5 s expected and 5 s at most
    assert fast.waits == (1.0, 4.0) and fast.full_jitter
    assert fast.expected_horizon_seconds == 2.5
    assert fast.max_horizon_seconds == 5.0


def test_full_jitter_bounds_each_wait_between_nothing_and_its_interval() -> None:
    # Given a slow lane with FULL jitter (a deployment's override)
    schedule = delivery_schedule({"slowLane": {"jitterStrategy": "FULL"}})
    horizon = schedule.horizon
    # Then only the Wait state is certain; the retries' waits count half when expected
    assert horizon.min_seconds == 300
    assert horizon.max_seconds == 300 + 93_900 + 5
    assert horizon.expected_seconds == 300 + 93_900 / 2 + 2.5
    # And the expected horizon is then under a day: the default does not jitter for that reason
    assert horizon.expected_seconds < DAY_SECONDS


def test_the_first_attempt_in_a_state_machine_has_one_attempt_less() -> None:
    # Given firstAttempt: stateMachine (no inline attempt)
    schedule = delivery_schedule(inline=False)
    # Then the fast lane's first Deliver is attempt 1, and the waits (so the horizon) are the same
    assert schedule.attempts[0].lane == Lane.FAST and len(schedule.attempts) == len(delivery_schedule().attempts) - 1
    assert schedule.horizon.max_seconds == delivery_schedule().horizon.max_seconds


def test_overrides_change_the_schedule_the_same_way_they_change_the_definitions() -> None:
    # Given a shorter slow lane
    schedule = delivery_schedule({"slowLane": {"initialWaitSeconds": 60, "intervalSeconds": 30, "maxAttempts": 2}})
    # Then its attempts follow the override (the file's BackoffRate 3 kept)
    slow = [attempt for attempt in schedule.attempts if attempt.lane == Lane.SLOW]
    assert [attempt.wait_seconds for attempt in slow] == [60, 30, 90]
    assert slow[-1].min_seconds == 60 + 30 + 90


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (2.5, "2.5 s"), (300, "5 min"), (302.5, "5 min"), (3600, "1 h"), (94_200, "26 h 10 min")],
)
def test_durations_read_as_people_write_them(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_the_readme_shows_the_default_schedule() -> None:
    # Given the table stacks/schedule.py makes of the default policies (`python -m stacks.schedule`)
    table = markdown_table(delivery_schedule())
    # Then the README's "Retry schedule and horizon" holds it as it is
    assert table in README.read_text(encoding="utf-8")


def test_the_schedules_step_functions_price_per_million() -> None:
    # Given the default schedule and the bench's prices
    schedule = delivery_schedule()
    cost = retry_schedule_cost(schedule.fast, schedule.slow, load_prices(PRICES_PATH))
    # Then a retried message pays one Express request and 2.5 s of Express duration (64 MB) on average
    assert cost.fast_wait_expected_usd_per_million == pytest.approx(2.5 * 64 / 1024 * 0.00001667 * 1e6)
    assert cost.retried_usd_per_million == pytest.approx(1.00 + 2.6046875)
    # And a slow-lane message 10 transitions: Wait, Deliver, 7 retries, MarkFailed
    assert cost.slow_transitions == 10
    assert cost.slow_transitions_usd_per_million == pytest.approx(250.0)
