"""A message's whole retry schedule, attempt by attempt: the inline first attempt, the fast lane, the slow lane.

The single source of the delivery schedule: computed from the lanes' effective policies (the
definition files in statemachines/, whose DeliveryRetryable retriers hold the defaults, with
`relay.delivery` applied: stacks/definitions.retry_schedule, the same policy the stack and `relay
dev` substitute into the definitions they run), and used by the stack's settings (the attempt
budget, the leases, the horizon the TTL must outlast, and `lane_waits`, what the attempting
functions know of it: functions/domain/config.LaneWaits), by the README's schedule table (`python
-m stacks.schedule` prints it; tests/unit/test_retry_schedule.py checks the README holds it), by
the tests that bound the horizon, and by the bench's pricing of the retries
(bench/cost_model.retry_schedule_cost).

Times are measured from the first attempt and count only the waits: each attempt's own duration
(up to the deliver timeout) and the hand-offs between lanes come on top, so every bound here is
a lower bound of the real time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from functions.contract.lanes import DeliveryLane, Lane
from functions.domain.config import LaneWaits
from stacks.definitions import DELIVERY_LANES, RetrySchedule, retry_schedule


@dataclass(frozen=True)
class ScheduledAttempt:
    number: int  # 1-based, over the message's whole schedule
    lane: Lane
    wait_seconds: float  # the nominal wait before it (0: at once)
    jittered: bool  # FULL jitter: the wait is drawn uniformly from [0, wait_seconds]
    min_seconds: float  # since the first attempt, every jittered wait at 0
    expected_seconds: float  # ... every jittered wait at its mean (half)
    max_seconds: float  # ... every wait in full


@dataclass(frozen=True)
class DeliverySchedule:
    inline: bool  # `relay.delivery.firstAttempt: inline` (the dispatcher's attempt comes first)
    fast: RetrySchedule
    slow: RetrySchedule
    attempts: tuple[ScheduledAttempt, ...]

    def lane_attempts(self, lane: Lane) -> int:
        return sum(1 for attempt in self.attempts if attempt.lane == lane)

    def lane(self, lane: DeliveryLane) -> RetrySchedule:
        """One lane's DeliveryRetryable retrier in time."""
        return self.fast if lane == DeliveryLane.FAST else self.slow

    @property
    def max_attempts(self) -> int:
        """Every attempt a run makes when each one fails: the inline one (if any), then each lane's."""
        return len(self.attempts)

    @property
    def lane_waits(self) -> LaneWaits:
        """What the attempting functions know of the schedule (whole seconds, rounded up), to compare a
        target's Retry-After with the next attempt's wait: the stack and relay dev set it alike."""
        return LaneWaits(
            fast=tuple(math.ceil(wait) for wait in self.fast.waits),
            slow=tuple(math.ceil(wait) for wait in self.slow.waits),
            slow_initial=self.slow.initial_wait_seconds,
        )

    @property
    def horizon(self) -> ScheduledAttempt:
        """The last attempt: after it a retryable failure is FAILED."""
        return self.attempts[-1]


def delivery_schedule(policy: dict[str, Any] | None = None, inline: bool = True) -> DeliverySchedule:
    """The schedule under `policy` (`relay.delivery`'s `fastLane`/`slowLane`; None: the files' defaults)."""
    policy = policy or {}
    fast = retry_schedule(DELIVERY_LANES[DeliveryLane.FAST], policy.get(DeliveryLane.FAST))
    slow = retry_schedule(DELIVERY_LANES[DeliveryLane.SLOW], policy.get(DeliveryLane.SLOW))
    # (lane, nominal wait before the attempt, jittered)
    steps: list[tuple[Lane, float, bool]] = [(Lane.INLINE, 0.0, False)] if inline else []
    # The fast-lane run starts at once (after the inline attempt, or when the dispatcher claims it).
    steps += [(Lane.FAST, 0.0, False)] + [(Lane.FAST, wait, fast.full_jitter) for wait in fast.waits]
    # Its handoff starts the slow lane at once; the slow lane's Wait state is never jittered.
    steps += [(Lane.SLOW, float(slow.initial_wait_seconds), False)]
    steps += [(Lane.SLOW, wait, slow.full_jitter) for wait in slow.waits]
    attempts: list[ScheduledAttempt] = []
    least = expected = most = 0.0
    for number, (lane, wait, jittered) in enumerate(steps, start=1):
        least += 0.0 if jittered else wait
        expected += wait / 2 if jittered else wait
        most += wait
        attempts.append(ScheduledAttempt(number, lane, wait, jittered, least, expected, most))
    return DeliverySchedule(inline=inline, fast=fast, slow=slow, attempts=tuple(attempts))


def duration_text(seconds: float) -> str:
    """`0 s`, `2.5 s`, `25 min`, `3 h 25 min`, `26 h 10 min`: whole minutes from a minute on."""
    if seconds < 60:
        return f"{seconds:g} s"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


def markdown_table(schedule: DeliverySchedule) -> str:
    """The README's schedule table: one row per attempt, its wait and the cumulative time."""
    rows = [
        "| attempt | lane | wait before it | since the first attempt: min | expected | max |",
        "|---|---|---|---|---|---|",
    ]
    for attempt in schedule.attempts:
        if attempt.wait_seconds == 0:
            wait = "at once"
        elif attempt.jittered:
            wait = f"up to {duration_text(attempt.wait_seconds)} (FULL jitter)"
        else:
            wait = duration_text(attempt.wait_seconds)
        rows.append(
            f"| {attempt.number} | {attempt.lane} | {wait} | {duration_text(attempt.min_seconds)} | "
            f"{duration_text(attempt.expected_seconds)} | {duration_text(attempt.max_seconds)} |"
        )
    return "\n".join(rows)


def main() -> None:
    """Print the table for this checkout's effective policy (cdk.json's `relay.delivery`)."""
    from functions.domain.config import FirstAttempt
    from stacks.project_config import delivery_policy, first_attempt

    schedule = delivery_schedule(delivery_policy(), inline=first_attempt() == FirstAttempt.INLINE.value)
    print(markdown_table(schedule))
    horizon = schedule.horizon
    print(
        f"\n{len(schedule.attempts)} attempts ({schedule.lane_attempts(Lane.SLOW)} in the slow lane); horizon "
        f"{horizon.min_seconds:g} / {horizon.expected_seconds:g} / {horizon.max_seconds:g} s (min / expected / max)"
    )


if __name__ == "__main__":
    main()
