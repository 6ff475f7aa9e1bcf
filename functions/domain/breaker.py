"""A target's circuit breaker as values: its state, the policy and the transitions (when it opens,
when a probe is due, which success closes it). Pure: the store is
functions/adapters/stores/target_health_store.py, the service functions/services/targeting/target_health.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from functions.domain.clock import iso
from functions.domain.model import from_epoch_ms

if TYPE_CHECKING:
    from functions.domain.config import Settings

# How long a warm function trusts what it read of a target's health.
CACHE_SECONDS = 5.0
# An attempt that started this long after its target opened went ahead knowing it was open (every
# warm function's cache was read after the open by then, an eventually consistent read's lag
# included): its success closes the target. One that started earlier may have gone ahead on a
# cache read before the open, and its success says nothing about the target now.
KNOWN_OPEN_AFTER_SECONDS = int(CACHE_SECONDS) + 1


class BreakerState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


@dataclass(frozen=True)
class BreakerPolicy:
    failure_threshold: int = 20
    probe_after_seconds: int = 60
    max_probe_after_seconds: int = 3600

    @classmethod
    def from_settings(cls, settings: Settings) -> BreakerPolicy:
        return cls(
            settings.breaker_failure_threshold,
            settings.breaker_probe_after_seconds,
            settings.breaker_max_probe_after_seconds,
        )

    def probe_delay(self, failed_probes: int) -> int:
        """The wait before the next probe: doubling with every failed probe, capped."""
        return int(min(self.max_probe_after_seconds, self.probe_after_seconds * 2 ** min(failed_probes, 30)))


@dataclass(frozen=True)
class TargetHealth:
    sender_id: str
    origin: str
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: int | None = None
    next_probe_at: int | None = None
    probe_message: str | None = None
    probes: int = 0
    # Closed with paused messages the reconciler still re-drives.
    resuming: bool = False

    def blocks(self, message_id: str) -> bool:
        """Whether an attempt of `message_id` must not go: OPEN, or HALF_OPEN and not the probe."""
        if self.state == BreakerState.OPEN:
            return True
        return self.state == BreakerState.HALF_OPEN and message_id != self.probe_message

    def probe_due(self, now: int) -> bool:
        return self.state != BreakerState.CLOSED and (self.next_probe_at or 0) <= now

    def after_failure(self, policy: BreakerPolicy, message_id: str, now: int) -> TargetHealth | None:
        """The OPEN health a failed attempt leads to (its count already added), or None (no change)."""
        if self.state == BreakerState.CLOSED and self.failures >= policy.failure_threshold:
            return replace(
                self, state=BreakerState.OPEN, opened_at=now, next_probe_at=now + policy.probe_delay(0), probes=0
            )
        if self.state == BreakerState.HALF_OPEN and message_id == self.probe_message:
            probes = self.probes + 1
            return replace(
                self,
                state=BreakerState.OPEN,
                next_probe_at=now + policy.probe_delay(probes),
                probes=probes,
                probe_message=None,
            )
        return None

    def closed_by(self, message_id: str, started_at: int) -> bool:
        """Whether the success of `message_id`'s attempt that started at `started_at` (epoch seconds)
        closes this target: the probe's (HALF_OPEN, it is the probe, started after the open) or one
        started KNOWN_OPEN_AFTER_SECONDS after the open. The store's close is conditional on the same."""
        if self.state == BreakerState.CLOSED or self.opened_at is None or started_at < self.opened_at:
            return False
        probe = self.state == BreakerState.HALF_OPEN and message_id == self.probe_message
        return probe or started_at >= self.opened_at + KNOWN_OPEN_AFTER_SECONDS

    def to_dict(self) -> dict[str, Any]:
        view: dict[str, Any] = {"origin": self.origin, "state": self.state.value, "consecutiveFailures": self.failures}
        if self.opened_at is not None:
            view["openedAt"] = iso(from_epoch_ms(self.opened_at * 1000))
        if self.next_probe_at is not None and self.state != BreakerState.CLOSED:
            view["nextProbeAt"] = iso(from_epoch_ms(self.next_probe_at * 1000))
        if self.probes:
            view["failedProbes"] = self.probes
        return view
