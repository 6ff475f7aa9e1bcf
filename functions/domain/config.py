"""Runtime settings of every Lambda, read once from the environment.

Defaults of the message limits come from `schemas/message.schema.json` (`x-relay-limits`), so the
schema stays the single source; a deployment overrides them through `cdk.json` context, which
the stack turns into these environment variables.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from functions.contract.lanes import Lane
from functions.contract.settings_names import Setting

# In the repository and in the Lambda asset alike, `schemas/` sits beside the `functions/` package.
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
MESSAGE_SCHEMA_PATH = SCHEMA_DIR / "message.schema.json"


@lru_cache(maxsize=1)
def message_schema() -> dict[str, Any]:
    with MESSAGE_SCHEMA_PATH.open(encoding="utf-8") as schema_file:
        schema: dict[str, Any] = json.load(schema_file)
    return schema


@lru_cache(maxsize=1)
def replay_schema() -> dict[str, Any]:
    """schemas/replay.schema.json: a bulk replay's filter and its paging limits (`x-relay-replay`)."""
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / "replay.schema.json").read_text(encoding="utf-8"))
    return schema


class FirstAttempt(StrEnum):
    """Who makes a message's first delivery attempt (`relay.delivery.firstAttempt` in cdk.json).

    INLINE: the dispatcher itself, so a message delivered at once costs no state machine run; a
    fast-lane run starts only when that attempt fails retryably. STATE_MACHINE: every delivery is a
    fast-lane run from its first attempt on (the shape before Issue 10).
    """

    INLINE = "inline"
    STATE_MACHINE = "stateMachine"


# The dispatcher attempts the messages of one SQS batch in parallel, one thread each; the stack
# keeps its batch size within this, so a batch takes one attempt's time (stacks/settings.py).
MAX_PARALLEL_DISPATCH = 10
# The cap on a target's Retry-After unless `relay.delivery.maxRetryAfterSeconds` says otherwise.
DEFAULT_MAX_RETRY_AFTER_SECONDS = 3600


def _schema_default(name: str) -> int:
    return int(message_schema()["x-relay-limits"][name])


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _env_optional(name: str, kind: type[float] | type[int]) -> float | int | None:
    raw = os.environ.get(name)
    return kind(raw) if raw not in (None, "") else None


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


# `relay.circuitBreaker` in cdk.json (stacks/settings.py) reaches the functions as Setting.BREAKER_*.
DEFAULT_BREAKER_FAILURE_THRESHOLD = 20
DEFAULT_BREAKER_PROBE_AFTER_SECONDS = 60
DEFAULT_BREAKER_MAX_PROBE_AFTER_SECONDS = 3600


@dataclass(frozen=True)
class LaneWaits:
    """What the attempting functions know of the retry schedule (stacks/schedule.py computes it from
    the lanes' definitions and sets it as `environment()`): each lane's DeliveryRetryable waits before
    jitter (the n-th retry waits at most the n-th, in whole seconds) and the slow lane's first wait."""

    fast: tuple[int, ...] = ()
    slow: tuple[int, ...] = ()
    slow_initial: int = 0

    def next_wait(self, lane: str, retry_count: int) -> int | None:
        """The longest the lane's next attempt would wait on its own (before jitter); None when the lane
        has no next attempt. After the inline attempt the fast lane starts at once, waiting only what a
        Retry-After asks up to its first retry wait; after the fast lane's last one, the slow lane's
        first wait comes."""
        if lane == Lane.INLINE:
            return self.fast[0] if self.fast else self.slow_initial
        if lane == Lane.SLOW:
            return self.slow[retry_count] if retry_count < len(self.slow) else None
        return self.fast[retry_count] if retry_count < len(self.fast) else self.slow_initial

    def environment(self) -> dict[str, str]:
        return {
            Setting.FAST_LANE_WAITS: ",".join(map(str, self.fast)),
            Setting.SLOW_LANE_WAITS: ",".join(map(str, self.slow)),
            Setting.SLOW_LANE_INITIAL_WAIT_SECONDS: str(self.slow_initial),
        }


@dataclass(frozen=True)
class Settings:
    table_name: str
    queue_url: str
    ttl_days: int
    max_body_bytes: int
    max_header_count: int
    max_header_bytes: int
    max_future_skew_seconds: int
    allow_private_targets: bool
    # Refuse an ingest request that carries no authenticated sender (always on in a deployment).
    require_sender: bool
    # How long a stored message may wait for its first delivery run before the reconciler
    # treats it as stuck and re-drives it.
    redrive_after_seconds: int
    # Delivery
    fast_lane_arn: str
    slow_lane_arn: str
    failed_queue_url: str
    dead_letter_queue_url: str
    connect_timeout_seconds: float
    total_timeout_seconds: float
    max_response_bytes: int
    fast_lane_lease_seconds: int
    slow_lane_lease_seconds: int
    first_attempt: FirstAttempt = FirstAttempt.INLINE
    # Retry-After: the longest wait a target's header may ask for (`relay.delivery.maxRetryAfterSeconds`).
    max_retry_after_seconds: int = DEFAULT_MAX_RETRY_AFTER_SECONDS
    # Every attempt a run may make (inline, fast lane and slow lane together); 0 when not known.
    max_attempts: int = 0
    # Each lane's DeliveryRetryable waits before jitter (the n-th retry waits at most the n-th),
    # and the slow lane's first wait: what the next attempt would wait, to compare Retry-After with.
    fast_lane_waits: tuple[int, ...] = ()
    slow_lane_waits: tuple[int, ...] = ()
    slow_lane_initial_wait_seconds: int = 0
    # The bulk replay job's state machine (POST /messages/replay starts it).
    replay_machine_arn: str = ""
    # Every target's limits unless it (or its sender's `*`) has its own: `relay.targets` in cdk.json
    # (functions/services/targeting/flow_control.py); None = unlimited, which costs nothing per attempt.
    target_default_rate_per_second: float | None = None
    target_default_max_concurrency: int | None = None
    # Circuit breaker per target (functions/services/targeting/target_health.py): this many consecutive failed
    # attempts open a target; the first probe goes after `probe_after_seconds`, doubling on each
    # failed probe up to `max_probe_after_seconds`.
    breaker_failure_threshold: int = DEFAULT_BREAKER_FAILURE_THRESHOLD
    breaker_probe_after_seconds: int = DEFAULT_BREAKER_PROBE_AFTER_SECONDS
    breaker_max_probe_after_seconds: int = DEFAULT_BREAKER_MAX_PROBE_AFTER_SECONDS
    # Where operational notifications also go on AWS (an EventBridge bus, source `relay`); "" = none.
    event_bus_name: str = ""

    @property
    def ttl_seconds(self) -> int:
        return self.ttl_days * 86_400

    @property
    def lane_waits(self) -> LaneWaits:
        return LaneWaits(self.fast_lane_waits, self.slow_lane_waits, self.slow_lane_initial_wait_seconds)


def _env_ints(name: str) -> tuple[int, ...]:
    raw = os.environ.get(name) or ""
    return tuple(int(part) for part in raw.split(",") if part.strip())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings(
        table_name=os.environ.get(Setting.TABLE_NAME, "relay"),
        queue_url=os.environ.get(Setting.QUEUE_URL, ""),
        ttl_days=_env_int(Setting.TTL_DAYS, _schema_default("ttlDays")),
        max_body_bytes=_env_int(Setting.MAX_BODY_BYTES, _schema_default("maxBodyBytes")),
        max_header_count=_env_int(Setting.MAX_HEADER_COUNT, _schema_default("maxHeaderCount")),
        max_header_bytes=_env_int(Setting.MAX_HEADER_BYTES, _schema_default("maxHeaderBytes")),
        max_future_skew_seconds=_env_int(Setting.MAX_FUTURE_SKEW_SECONDS, _schema_default("maxFutureSkewSeconds")),
        allow_private_targets=_env_bool(Setting.ALLOW_PRIVATE_TARGETS, False),
        require_sender=_env_bool(Setting.REQUIRE_SENDER, False),
        redrive_after_seconds=_env_int(Setting.REDRIVE_AFTER_SECONDS, 300),
        fast_lane_arn=os.environ.get(Setting.FAST_LANE_ARN, ""),
        slow_lane_arn=os.environ.get(Setting.SLOW_LANE_ARN, ""),
        failed_queue_url=os.environ.get(Setting.FAILED_QUEUE_URL, ""),
        dead_letter_queue_url=os.environ.get(Setting.DEAD_LETTER_QUEUE_URL, ""),
        connect_timeout_seconds=float(os.environ.get(Setting.CONNECT_TIMEOUT_SECONDS) or 10),
        total_timeout_seconds=float(os.environ.get(Setting.TOTAL_TIMEOUT_SECONDS) or 15),
        max_response_bytes=_env_int(Setting.MAX_RESPONSE_BYTES, 65_536),
        # An Express run lives at most 5 minutes; the lease outlives it so a crashed run is noticed.
        fast_lane_lease_seconds=_env_int(Setting.FAST_LANE_LEASE_SECONDS, 360),
        slow_lane_lease_seconds=_env_int(Setting.SLOW_LANE_LEASE_SECONDS, 200_000),
        first_attempt=FirstAttempt(os.environ.get(Setting.FIRST_ATTEMPT) or FirstAttempt.INLINE),
        max_retry_after_seconds=_env_int(Setting.MAX_RETRY_AFTER_SECONDS, DEFAULT_MAX_RETRY_AFTER_SECONDS),
        max_attempts=_env_int(Setting.MAX_ATTEMPTS, 0),
        fast_lane_waits=_env_ints(Setting.FAST_LANE_WAITS),
        slow_lane_waits=_env_ints(Setting.SLOW_LANE_WAITS),
        slow_lane_initial_wait_seconds=_env_int(Setting.SLOW_LANE_INITIAL_WAIT_SECONDS, 0),
        replay_machine_arn=os.environ.get(Setting.REPLAY_MACHINE_ARN, ""),
        event_bus_name=os.environ.get(Setting.EVENT_BUS_NAME, ""),
        target_default_rate_per_second=_env_optional(Setting.TARGET_DEFAULT_RATE_PER_SECOND, float),
        target_default_max_concurrency=_env_optional(Setting.TARGET_DEFAULT_MAX_CONCURRENCY, int),  # type: ignore[arg-type]
        breaker_failure_threshold=_env_int(Setting.BREAKER_FAILURE_THRESHOLD, DEFAULT_BREAKER_FAILURE_THRESHOLD),
        breaker_probe_after_seconds=_env_int(Setting.BREAKER_PROBE_AFTER_SECONDS, DEFAULT_BREAKER_PROBE_AFTER_SECONDS),
        breaker_max_probe_after_seconds=_env_int(
            Setting.BREAKER_MAX_PROBE_AFTER_SECONDS, DEFAULT_BREAKER_MAX_PROBE_AFTER_SECONDS
        ),
    )
