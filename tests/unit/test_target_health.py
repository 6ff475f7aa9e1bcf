"""The circuit breaker's state machine and its warm-function cache (functions/services/targeting/target_health.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from functions.domain.breaker import CACHE_SECONDS, KNOWN_OPEN_AFTER_SECONDS, BreakerPolicy, BreakerState, TargetHealth
from functions.services.targeting.target_health import TargetBreaker

POLICY = BreakerPolicy(failure_threshold=3, probe_after_seconds=10, max_probe_after_seconds=60)
NOW = 1_000_000


def test_closed_target_opens_at_the_threshold_only() -> None:
    # Given a closed target with failures below and at the threshold
    below = TargetHealth("s", "https://t", failures=2)
    at = replace(below, failures=3)
    # Then below it nothing changes; at it the target opens, its first probe after probeAfterSeconds
    assert below.after_failure(POLICY, "m", NOW) is None
    opened = at.after_failure(POLICY, "m", NOW)
    assert opened is not None
    assert (opened.state, opened.opened_at, opened.next_probe_at, opened.probes) == (
        BreakerState.OPEN,
        NOW,
        NOW + 10,
        0,
    )


def test_open_target_blocks_every_message_and_half_open_all_but_the_probe() -> None:
    opened = TargetHealth("s", "https://t", state=BreakerState.OPEN, next_probe_at=NOW + 10)
    probing = replace(opened, state=BreakerState.HALF_OPEN, probe_message="probe")
    assert opened.blocks("any")
    assert probing.blocks("other") and not probing.blocks("probe")
    assert not TargetHealth("s", "https://t", failures=99).blocks("any")


def test_probe_is_due_after_the_backoff_only_when_not_closed() -> None:
    opened = TargetHealth("s", "https://t", state=BreakerState.OPEN, next_probe_at=NOW + 10)
    assert not opened.probe_due(NOW + 9) and opened.probe_due(NOW + 10)
    assert not TargetHealth("s", "https://t", next_probe_at=NOW).probe_due(NOW)


def test_a_failed_probe_reopens_with_a_doubling_capped_backoff() -> None:
    # Given a probe on its way
    probing = TargetHealth("s", "https://t", state=BreakerState.HALF_OPEN, probe_message="p", failures=5)
    delays = []
    for _ in range(5):
        # When the probe fails
        reopened = probing.after_failure(POLICY, "p", NOW)
        assert reopened is not None and reopened.state == BreakerState.OPEN and reopened.probe_message is None
        delays.append(int(reopened.next_probe_at or 0) - NOW)
        probing = replace(reopened, state=BreakerState.HALF_OPEN, probe_message="p")
    # Then each next probe waits twice as long, up to the cap
    assert delays == [20, 40, 60, 60, 60]


def test_a_failure_of_another_message_while_probing_or_open_changes_nothing() -> None:
    probing = TargetHealth("s", "https://t", state=BreakerState.HALF_OPEN, probe_message="p", failures=9)
    assert probing.after_failure(POLICY, "straggler", NOW) is None
    assert replace(probing, state=BreakerState.OPEN).after_failure(POLICY, "p", NOW) is None


class FakeStore:
    """Counts the reads and writes the breaker makes."""

    def __init__(self) -> None:
        self.health: dict[tuple[str, str], TargetHealth] = {}
        self.calls: list[str] = []

    def get(self, sender_id: str, origin: str, consistent: bool = False) -> TargetHealth:
        self.calls.append("get")
        return self.health.get((sender_id, origin), TargetHealth(sender_id, origin))

    def add_failure(self, sender_id: str, origin: str) -> TargetHealth:
        self.calls.append("add")
        current = self.health.get((sender_id, origin), TargetHealth(sender_id, origin))
        counted = replace(current, failures=current.failures + 1)
        self.health[(sender_id, origin)] = counted
        return counted

    def open(self, opened: TargetHealth, seen: TargetHealth) -> bool:
        self.calls.append("open")
        self.health[(opened.sender_id, opened.origin)] = opened
        return True

    def reset_failures(self, sender_id: str, origin: str) -> bool:
        self.calls.append("reset")
        self.health[(sender_id, origin)] = TargetHealth(sender_id, origin)
        return True

    def close(self, sender_id: str, origin: str, message_id: str, started_at: int, resuming: bool) -> bool:
        """Conditional, like the real store's: only a success that may close it (TargetHealth.closed_by)."""
        self.calls.append("close")
        if not self.get(sender_id, origin).closed_by(message_id, started_at):
            return False
        self.health[(sender_id, origin)] = TargetHealth(sender_id, origin, resuming=resuming)
        return True

    def start_probe(self, health: TargetHealth, message_id: str, now: int, deadline: int) -> bool:
        current = self.health[(health.sender_id, health.origin)]
        if current.state == BreakerState.CLOSED or (current.next_probe_at or 0) > now:
            return False
        probing = replace(current, state=BreakerState.HALF_OPEN, probe_message=message_id, next_probe_at=deadline)
        self.health[(health.sender_id, health.origin)] = probing
        return True


def breaker(store: FakeStore, clock: list[float], wall: list[float] | None = None) -> TargetBreaker:
    fake: Any = store
    if wall is None:
        return TargetBreaker(fake, POLICY, clock=lambda: clock[0])
    return TargetBreaker(fake, POLICY, clock=lambda: clock[0], wall_clock=lambda: wall[0])


def test_healthy_target_costs_one_read_per_cache_age_and_no_write_on_success() -> None:
    # Given a healthy target and a warm function
    store, clock = FakeStore(), [0.0]
    warm = breaker(store, clock)
    # When many messages go to it and succeed within the cache's age
    for _ in range(100):
        assert warm.blocking("s", "https://t", "m") is None
        assert warm.succeeded("s", "https://t", "m", NOW) is False
    # Then the health was read once and never written
    assert store.calls == ["get"]
    # And read again only once the cache is older than its age
    clock[0] += CACHE_SECONDS
    warm.blocking("s", "https://t", "m")
    assert store.calls == ["get", "get"]


def open_by_failures(warm: TargetBreaker) -> None:
    for _ in range(POLICY.failure_threshold):
        warm.failed("s", "https://t", "m")


def test_failures_are_counted_open_the_target_and_the_probes_success_closes_it() -> None:
    store, clock, wall = FakeStore(), [0.0], [float(NOW)]
    warm = breaker(store, clock, wall)
    # When attempts fail up to the threshold (one ADD each)
    open_by_failures(warm)
    # Then the target is OPEN since now and blocks at once in this function (a fresh read confirms it)
    assert store.calls.count("add") == 3 and "open" in store.calls
    blocked = warm.blocking("s", "https://t", "m")
    assert blocked is not None and (blocked.state, blocked.opened_at) == (BreakerState.OPEN, NOW)
    # When the reconciler sends a probe and its attempt gets through
    assert store.start_probe(blocked, "probe", NOW + 10, NOW + 20)
    assert warm.blocking("s", "https://t", "probe") is None
    assert warm.succeeded("s", "https://t", "probe", NOW + 10) is True
    # Then it is CLOSED, listed for its paused messages to be re-driven
    assert store.health[("s", "https://t")].state == BreakerState.CLOSED
    assert store.health[("s", "https://t")].resuming


def test_a_success_after_some_failures_resets_the_count_once() -> None:
    store, clock = FakeStore(), [0.0]
    warm = breaker(store, clock)
    warm.failed("s", "https://t", "m")
    assert warm.succeeded("s", "https://t", "m", NOW) is False
    assert warm.succeeded("s", "https://t", "m", NOW) is False
    assert store.calls == ["add", "reset"]


@pytest.mark.parametrize(
    ("state", "message_id", "started_at", "closes"),
    [
        # started before the open: stale, whatever it is
        (BreakerState.OPEN, "m", NOW - 1, False),
        (BreakerState.HALF_OPEN, "probe", NOW - 1, False),
        # the probe, started after the open
        (BreakerState.HALF_OPEN, "probe", NOW + 60, True),
        # another message, started soon after the open (on a warm function's cache from before it)
        (BreakerState.OPEN, "m", NOW, False),
        (BreakerState.HALF_OPEN, "m", NOW + KNOWN_OPEN_AFTER_SECONDS - 1, False),
        # another message, started when every warm function knew the target was open
        (BreakerState.OPEN, "m", NOW + KNOWN_OPEN_AFTER_SECONDS, True),
        (BreakerState.HALF_OPEN, "m", NOW + 60, True),
        # a CLOSED target has nothing to close
        (BreakerState.CLOSED, "m", NOW + 60, False),
    ],
)
def test_only_a_success_that_started_after_the_open_was_known_or_the_probes_closes_it(
    state: BreakerState, message_id: str, started_at: int, closes: bool
) -> None:
    # Given a target opened at NOW (HALF_OPEN: with "probe" on its way)
    health = TargetHealth("s", "https://t", state=state, opened_at=NOW, probe_message="probe", failures=20)
    # Then a success closes it only if it says the target answers now
    assert health.closed_by(message_id, started_at) is closes


def test_a_success_of_an_attempt_started_before_the_open_does_not_close_it() -> None:
    # Given a warm function that saw a failure, and a target another function has opened since (at NOW)
    store, clock = FakeStore(), [0.0]
    warm = breaker(store, clock)
    warm.failed("s", "https://t", "m")
    opened = TargetHealth("s", "https://t", state=BreakerState.OPEN, failures=20, opened_at=NOW, next_probe_at=NOW + 10)
    store.health[("s", "https://t")] = opened
    store.reset_failures = lambda sender_id, origin: False  # type: ignore[method-assign]  # not CLOSED
    # When an attempt this function started before the open gets through
    closed = warm.succeeded("s", "https://t", "in-flight", NOW - 2)
    # Then the target stays OPEN (nothing reset), and this function now knows it is open
    assert not closed and store.health[("s", "https://t")] == opened
    assert warm.blocking("s", "https://t", "next") == opened
    # When the probe's attempt, started after the open, gets through
    assert store.start_probe(opened, "probe", NOW + 10, NOW + 20)
    assert warm.succeeded("s", "https://t", "probe", NOW + 10) is True
    # Then it closes
    assert store.health[("s", "https://t")].state == BreakerState.CLOSED


def test_a_success_with_no_known_start_closes_nothing() -> None:
    store, clock = FakeStore(), [0.0]
    opened = TargetHealth("s", "https://t", state=BreakerState.HALF_OPEN, opened_at=NOW, probe_message="probe")
    store.health[("s", "https://t")] = opened
    assert breaker(store, clock).succeeded("s", "https://t", "probe", None) is False
    assert store.health[("s", "https://t")] == opened and "close" not in store.calls
