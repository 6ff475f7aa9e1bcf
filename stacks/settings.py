"""Deployment settings: the `relay` object of the CDK context (cdk.json or `-c relay=...`).

Message limits default to `x-relay-limits` in schemas/message.schema.json, the same defaults the
functions use when an environment variable is absent (functions/domain/config.py), so the schema
stays the single source.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any

from functions.contract.lanes import DeliveryLane, Lane
from functions.contract.settings_names import Setting
from functions.domain.config import (
    DEFAULT_MAX_RETRY_AFTER_SECONDS,
    FirstAttempt,
    message_schema,
)
from functions.domain.validation import ENVELOPE_ALLOWANCE_BYTES
from functions.services.runs import EXPRESS_MAX_SECONDS
from stacks.definitions import (
    DELIVERY_LANES,
    DELIVERY_THROTTLED_ERROR,
    RetrySchedule,
    StateTime,
    longest_run,
    render_definition,
    retry_schedule,
)
from stacks.schedule import DeliverySchedule, delivery_schedule
from stacks.settings_checks import (
    CIRCUIT_BREAKER_SETTINGS,
    CLOUD_WATCH_ROLE_NONE,
    CONTEXT_KEY,
    DEFAULT_APPLICATION_LOG_LEVEL,
    FIRST_ATTEMPT_KEY,
    MAX_RETRY_AFTER_KEY,
    PARSERS,
    SettingsError,
    check_circuit_breaker,
    check_delivery_policy,
    check_target_defaults,
    positive_int,
)
from stacks.tracing import Tracing

if TYPE_CHECKING:  # importing constructs starts jsii; `relay dev` reads these settings without it
    from constructs import Node


# Objects inside the `relay` context that other capabilities read themselves (the delivery retry
# policies: stacks/project_config.delivery_policy); kept as they are, in `RelaySettings.sections`.
SECTIONS = frozenset({"delivery", "targets", "circuitBreaker"})
# A throttled step (DeliveryThrottled) sends nothing: it takes about this long, not an attempt's time.
THROTTLED_STEP_SECONDS = 1

DAY_SECONDS = 86_400

# functions/domain/config.py uses the same defaults when the RELAY_* variables are absent.
DEFAULT_REDRIVE_AFTER_SECONDS = 300
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10
DEFAULT_TOTAL_TIMEOUT_SECONDS = 15
DEFAULT_MAX_RESPONSE_BYTES = 65_536

# A delivery attempt reads at most this much of a target's answer (only a snippet is kept): the
# cap protects the deliver function's memory, not the targets.
MAX_RESPONSE_BYTES_LIMIT = 1_048_576
# The deliver function's timeout is the attempt's total timeout plus this much for its own
# DynamoDB writes; Lambda allows 900 s, and an EXPRESS fast-lane run 300 s (checked by the
# delivery workflow against the retry policy).
DELIVER_OVERHEAD_SECONDS = 10
MAX_TOTAL_TIMEOUT_SECONDS = 120

# The dispatcher attempts one SQS batch in parallel (functions/domain/config.MAX_PARALLEL_DISPATCH
# threads), so a batch takes one attempt; this much more covers its reads, claims and run starts.
DISPATCH_OVERHEAD_SECONDS = 10
# The dispatcher's timeout when it only claims and starts runs (`firstAttempt: stateMachine`).
DISPATCH_ONLY_TIMEOUT_SECONDS = 10
# Lambda's guidance for an SQS consumer: visibility timeout at least six times the function timeout.
VISIBILITY_TO_TIMEOUT_RATIO = 6

# The lane definitions' `${...}` placeholders, each naming the function its Task states invoke
# (stacks/constructs/delivery_workflow.py substitutes them; the fast lane's bound reads them).
DELIVER_PLACEHOLDER = "DeliverFunctionArn"
FAIL_PLACEHOLDER = "FailFunctionArn"
HANDOFF_PLACEHOLDER = "HandoffFunctionArn"
# The finalize (MarkFailed) and handoff (MoveToSlowLane) functions' timeout: a few DynamoDB, SQS and
# Step Functions calls, each at most 2 x (1 s + 3 s) (functions/adapters/aws.py).
LANE_STEP_TIMEOUT_SECONDS = 10

# Delivery leases (functions/domain/config.py): while one is held, the reconciler leaves the message
# alone. An EXPRESS fast-lane run lives at most 300 s, so its lease outlives any run (the dispatcher's
# lease also covers its inline attempt before the run: `fast_lane_lease_seconds`).
STANDARD_MAX_SECONDS = 365 * 86_400
FAST_LANE_LEASE_SECONDS = 360
# The fast lane must end well inside an EXPRESS run's 300 s even when everything goes wrong at once
# (`fast_lane_run`: every retrier of every state exhausted, every try at its function's timeout,
# every wait in full); this much of the 300 s is kept back for what the bound does not count (Step
# Functions' own latency between states, a cold start's init).
EXPRESS_MARGIN_SECONDS = 30
# The slow lane's lease covers its whole retry horizon and every attempt, plus this margin.
SLOW_LANE_LEASE_MARGIN_SECONDS = 3600

# `dispatcherMaxConcurrency`: the dispatcher's event source mapping runs at most this many
# invocations at once (Lambda allows 2 to 1,000). A backlog waiting on its targets then never takes
# the account's Lambda concurrency (1,000 by default) from ingest and the API; relay dev scales its
# queue pollers up to the same number (relay/local/workers.py). 100 dispatchers attempt 1,000
# messages at once (10 per batch), ~1,000 msg/s to targets that answer within a second.
DEFAULT_DISPATCHER_MAX_CONCURRENCY = 100
DISPATCHER_MAX_CONCURRENCY_RANGE = (2, 1000)

# The default usage plan's throttle: each sender's rate (per second) and burst.
DEFAULT_SENDER_RATE_LIMIT = 100
DEFAULT_SENDER_BURST_LIMIT = 200


# `xraySamplingRate`: the share of requests X-Ray traces once a rule's reservoir (a few traces per
# second, whatever the rate) is used up (stacks/constructs/observability.TraceSampling).
DEFAULT_XRAY_SAMPLING_RATE = 0.05
DEFAULT_XRAY_RESERVOIR_PER_SECOND = 1


# Step Functions refuses execution inputs over 256 KiB. The API forwards the request base64-encoded
# (4/3 of its size) and cuts it just over the largest request validate accepts, which is
# ENVELOPE_ALLOWANCE_BYTES more than the body limit (see forwarded_base64_chars).
STEP_FUNCTIONS_PAYLOAD_LIMIT = 256 * 1024
INPUT_OVERHEAD_BYTES = 1024  # requestId, senderId and the JSON around them


def forwarded_base64_chars(max_request_bytes: int) -> int:
    """Length of the base64 text of the smallest request over `max_request_bytes` (a multiple of 4).

    The API forwards at most this much, so an oversized request still reaches validate (which then
    answers 413) and the execution input stays under Step Functions' limit.
    """
    return 4 * -(-(max_request_bytes + 1) // 3)


# The largest maxBodyBytes whose forwarded request still fits an execution input.
MAX_BODY_BYTES_LIMIT = (STEP_FUNCTIONS_PAYLOAD_LIMIT - INPUT_OVERHEAD_BYTES) // 4 * 3 - 1 - ENVELOPE_ALLOWANCE_BYTES


@dataclass(frozen=True)
class RelaySettings:
    """Every knob of a deployment, with its cdk.json name in `CONTEXT_NAMES`."""

    ttl_days: int
    max_body_bytes: int
    max_header_count: int
    max_header_bytes: int
    max_future_skew_seconds: int
    redrive_after_seconds: int = DEFAULT_REDRIVE_AFTER_SECONDS
    # Each sender's own throttle (requests per second, and burst): the default usage plan, which
    # every sender without limits of its own is in (relay/admin.py gives the others a plan each).
    sender_rate_limit: int = DEFAULT_SENDER_RATE_LIMIT
    sender_burst_limit: int = DEFAULT_SENDER_BURST_LIMIT
    # A throttle on all callers together (the stage's method settings); None leaves the account's
    # API Gateway limit as the only one.
    api_throttling_rate_limit: int | None = None
    api_throttling_burst_limit: int | None = None
    # The account's API Gateway CloudWatch role (one per account and region), which execution and
    # access logging to CloudWatch need: see CLOUD_WATCH_ROLE_CHOICES.
    api_gateway_cloud_watch_role: str = CLOUD_WATCH_ROLE_NONE
    # One delivery attempt: connecting (with TLS) and the whole request, and the response read cap.
    connect_timeout_seconds: int = DEFAULT_CONNECT_TIMEOUT_SECONDS
    total_timeout_seconds: int = DEFAULT_TOTAL_TIMEOUT_SECONDS
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    dispatcher_max_concurrency: int = DEFAULT_DISPATCHER_MAX_CONCURRENCY
    tracing: Tracing = Tracing.ERRORS
    # X-Ray sampling of the requests that start a trace (the API, runs started without a trace
    # header): the rate after the reservoir, and the reservoir (traces per second per rule).
    xray_sampling_rate: float = DEFAULT_XRAY_SAMPLING_RATE
    xray_reservoir_per_second: int = DEFAULT_XRAY_RESERVOIR_PER_SECOND
    # What the functions' own logs keep (Lambda's system logs keep WARN and above).
    application_log_level: str = DEFAULT_APPLICATION_LOG_LEVEL
    # The SECTIONS present in the context, unvalidated here.
    sections: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def defaults(cls) -> RelaySettings:
        limits = message_schema()["x-relay-limits"]
        return cls(
            ttl_days=int(limits["ttlDays"]),
            max_body_bytes=int(limits["maxBodyBytes"]),
            max_header_count=int(limits["maxHeaderCount"]),
            max_header_bytes=int(limits["maxHeaderBytes"]),
            max_future_skew_seconds=int(limits["maxFutureSkewSeconds"]),
        )

    @classmethod
    def from_context(cls, node: Node) -> RelaySettings:
        return cls.from_mapping(node.try_get_context(CONTEXT_KEY))

    @classmethod
    def from_mapping(cls, raw: Any) -> RelaySettings:
        """Defaults overridden by `raw` (a mapping, or its JSON text as `-c relay=...` gives it)."""
        if raw is None:
            raw = {}
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as error:
                raise SettingsError(f"context '{CONTEXT_KEY}' is not a JSON object: {error}") from None
        if not isinstance(raw, dict):
            raise SettingsError(f"context '{CONTEXT_KEY}' must be an object, got {type(raw).__name__}")
        known = set(CONTEXT_NAMES.values()) | SECTIONS
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SettingsError(
                f"unknown setting(s) in context '{CONTEXT_KEY}': {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {name: getattr(cls.defaults(), name) for name in CONTEXT_NAMES}
        for name, context_name in CONTEXT_NAMES.items():
            if context_name in raw:
                values[name] = PARSERS.get(name, positive_int)(context_name, raw[context_name])
        sections = {name: raw[name] for name in SECTIONS if name in raw}
        for name, section in sections.items():
            if not isinstance(section, dict):
                raise SettingsError(f"{CONTEXT_KEY}.{name} must be an object")
        check_delivery_policy(sections.get("delivery", {}))
        check_target_defaults(sections.get("targets", {}))
        check_circuit_breaker(sections.get("circuitBreaker", {}))
        settings = cls(**values, sections=sections)
        settings.check()
        return settings

    def check(self) -> None:
        if self.max_body_bytes > MAX_BODY_BYTES_LIMIT:
            raise SettingsError(
                f"{CONTEXT_KEY}.maxBodyBytes is {self.max_body_bytes}; at most {MAX_BODY_BYTES_LIMIT} fits "
                "a Step Functions execution input (256 KiB) once the request is base64-encoded"
            )
        if self.sender_burst_limit < self.sender_rate_limit:
            raise SettingsError(f"{CONTEXT_KEY}.senderBurstLimit must be at least senderRateLimit")
        stage_rate, stage_burst = self.api_throttling_rate_limit, self.api_throttling_burst_limit
        if stage_rate is not None and stage_burst is not None and stage_burst < stage_rate:
            raise SettingsError(f"{CONTEXT_KEY}.apiThrottlingBurstLimit must be at least apiThrottlingRateLimit")
        self._check_dispatcher()
        if self.connect_timeout_seconds > self.total_timeout_seconds:
            raise SettingsError(f"{CONTEXT_KEY}.connectTimeoutSeconds must not exceed totalTimeoutSeconds")
        if self.total_timeout_seconds > MAX_TOTAL_TIMEOUT_SECONDS:
            raise SettingsError(
                f"{CONTEXT_KEY}.totalTimeoutSeconds is {self.total_timeout_seconds}; at most "
                f"{MAX_TOTAL_TIMEOUT_SECONDS} (an attempt runs inside a fast-lane EXPRESS run of at most 300 s)"
            )
        if self.max_response_bytes > MAX_RESPONSE_BYTES_LIMIT:
            raise SettingsError(
                f"{CONTEXT_KEY}.maxResponseBytes is {self.max_response_bytes}; at most {MAX_RESPONSE_BYTES_LIMIT} "
                "(the deliver function holds what it reads in memory)"
            )
        fast_lane, steps = self.fast_lane_run()
        fast_lane_limit = EXPRESS_MAX_SECONDS - EXPRESS_MARGIN_SECONDS
        if fast_lane > fast_lane_limit:
            worst = "; ".join(f"{step.name} {step.seconds:g} s ({step.detail})" for step in steps)
            raise SettingsError(
                f"the fast lane (an EXPRESS run, stopped at {EXPRESS_MAX_SECONDS} s) may take up to "
                f"{fast_lane:g} s: {worst}. It must fit in {fast_lane_limit} s ({EXPRESS_MAX_SECONDS} s less "
                f"{EXPRESS_MARGIN_SECONDS} s of margin): lower {CONTEXT_KEY}.totalTimeoutSeconds (a Deliver try "
                f"may take it plus {DELIVER_OVERHEAD_SECONDS} s) or {CONTEXT_KEY}.delivery.{DeliveryLane.FAST} "
                "(maxAttempts, intervalSeconds, maxDelaySeconds)"
            )
        if self.slow_lane_lease_seconds > STANDARD_MAX_SECONDS:
            raise SettingsError(
                f"the slow lane's retries may take {self.slow_lane_lease_seconds} s, longer than a STANDARD run "
                f"may last ({STANDARD_MAX_SECONDS} s): lower {CONTEXT_KEY}.delivery.{DeliveryLane.SLOW}"
            )
        horizon = self.retry_horizon_seconds
        if self.ttl_days * DAY_SECONDS < horizon:
            raise SettingsError(
                f"{CONTEXT_KEY}.ttlDays is {self.ttl_days}, shorter than the retry horizon: a message may be "
                f"retried for {horizon} s ({horizon / 3600:.1f} h: the delivery schedule's waits in full and each "
                "of its attempts timing out), and it must not expire while it is still being retried: set "
                f"{CONTEXT_KEY}.ttlDays to at least {math.ceil(horizon / DAY_SECONDS)}, or shorten "
                f"{CONTEXT_KEY}.delivery.{DeliveryLane.SLOW}"
            )

    def _check_dispatcher(self) -> None:
        lowest, highest = DISPATCHER_MAX_CONCURRENCY_RANGE
        if not lowest <= self.dispatcher_max_concurrency <= highest:
            raise SettingsError(
                f"{CONTEXT_KEY}.dispatcherMaxConcurrency is {self.dispatcher_max_concurrency}; Lambda's SQS "
                f"event source accepts {lowest} to {highest}"
            )

    @property
    def max_retry_after_seconds(self) -> int:
        """`relay.delivery.maxRetryAfterSeconds`: the longest wait a target's Retry-After may ask for."""
        return int(self.sections.get("delivery", {}).get(MAX_RETRY_AFTER_KEY, DEFAULT_MAX_RETRY_AFTER_SECONDS))

    @cached_property
    def delivery_schedule(self) -> DeliverySchedule:
        """This deployment's retry schedule, attempt by attempt (stacks/schedule.py)."""
        return delivery_schedule(self.sections.get("delivery"), inline=self.first_attempt == FirstAttempt.INLINE)

    @property
    def max_attempts(self) -> int:
        """Every attempt a run makes when each one fails: the inline one (if any), then each lane's.
        A message's own `retry.maxAttempts` may be at most this."""
        return self.delivery_schedule.max_attempts

    def lane_schedule(self, lane: DeliveryLane) -> RetrySchedule:
        """What a lane's DeliveryRetryable retrier (with this deployment's overrides) means in time."""
        return self.delivery_schedule.lane(lane)

    @property
    def fast_lane_run_seconds(self) -> float:
        """The longest a fast-lane run may take (`fast_lane_run`)."""
        return self.fast_lane_run()[0]

    def fast_lane_run(self) -> tuple[float, tuple[StateTime, ...]]:
        """The longest a fast-lane run may take, and the states of that run (stacks/definitions.longest_run).

        Read from the definition the stack deploys (delivery_fast.asl.json with `relay.delivery.fastLane`
        applied), so no retrier can be added or changed without being counted: every path, every retrier
        of every state exhausted, each try lasting its function's timeout (`lane_function_timeouts`),
        every retry wait in full, and the Retry-After wait an inline attempt may hand the run.
        """
        lane = DELIVERY_LANES[DeliveryLane.FAST]
        document = json.loads(render_definition(lane, None, self.lane_policy(DeliveryLane.FAST)))
        timeouts = self.lane_function_timeouts()

        def task_seconds(name: str, state: dict[str, Any]) -> float:
            invoked = re.fullmatch(r"\$\{(\w+)\}", str(state.get("Parameters", {}).get("FunctionName", "")))
            if invoked is None or invoked.group(1) not in timeouts:
                raise SettingsError(f"{lane}: state {name} invokes no function whose timeout the stack sets")
            seconds = float(timeouts[invoked.group(1)])
            return min(seconds, float(state["TimeoutSeconds"])) if "TimeoutSeconds" in state else seconds

        try:
            return longest_run(document, task_seconds, {"$.waitSeconds": self.fast_lane_retry_after_cap})
        except ValueError as error:
            raise SettingsError(f"{lane}: {error}") from None

    @property
    def fast_lane_retry_after_cap(self) -> int:
        """The longest wait (`waitSeconds`, a target's Retry-After) the dispatcher hands a fast-lane run
        after its inline attempt: a longer one goes to the slow lane instead. As the attempting
        functions decide it (functions/domain/config.LaneWaits.next_wait): the fast lane's first retry
        wait, or without one the slow lane's first wait. Without an inline attempt no run is given a wait."""
        if self.first_attempt != FirstAttempt.INLINE:
            return 0
        return self.delivery_schedule.lane_waits.next_wait(Lane.INLINE, 0) or 0

    def lane_function_timeouts(self) -> dict[str, int]:
        """Each lane placeholder's function timeout (seconds), as the stack sets them."""
        return {
            DELIVER_PLACEHOLDER: self.deliver_timeout_seconds,
            FAIL_PLACEHOLDER: LANE_STEP_TIMEOUT_SECONDS,
            HANDOFF_PLACEHOLDER: LANE_STEP_TIMEOUT_SECONDS,
        }

    @property
    def retry_horizon_seconds(self) -> int:
        """How long a message may still be retried after its first attempt: the delivery schedule's
        horizon (stacks/schedule.py, the README's table: every wait in full) with each of its attempts
        lasting the deliver function's timeout. `ttlDays` must outlast it, or a message could expire
        (and TTL delete it) while Relay is still retrying it. A target's Retry-After never pushes an
        attempt past the message's expiry (functions/services/delivery/rules.retry_delay), so it is not counted."""
        schedule = self.delivery_schedule
        return math.ceil(schedule.horizon.max_seconds) + len(schedule.attempts) * self.deliver_timeout_seconds

    def throttle_schedule(self, lane: DeliveryLane) -> RetrySchedule:
        """What a lane's DeliveryThrottled retrier (a target at its limit) means in time (its `waits`;
        the lane's initial Wait is counted once, with the DeliveryRetryable schedule)."""
        return retry_schedule(DELIVERY_LANES[lane], None, DELIVERY_THROTTLED_ERROR)

    @property
    def target_defaults(self) -> tuple[float | None, int | None]:
        """`relay.targets.defaultRatePerSecond` and `defaultMaxConcurrency` (None: unlimited)."""
        section = self.sections.get("targets", {})
        rate, concurrency = section.get("defaultRatePerSecond"), section.get("defaultMaxConcurrency")
        return (float(rate) if rate is not None else None, int(concurrency) if concurrency is not None else None)

    @property
    def slow_lane_lease_seconds(self) -> int:
        """The slow lane's lease: its whole retry horizon, every attempt timing out, and a margin."""
        schedule = self.lane_schedule(DeliveryLane.SLOW)
        throttled = self.throttle_schedule(DeliveryLane.SLOW)
        return (
            math.ceil(schedule.max_horizon_seconds + sum(throttled.waits))
            + schedule.attempts * self.deliver_timeout_seconds
            # Each deferral to a target's Retry-After may wait up to its cap (at most one per attempt).
            + self.max_attempts * self.max_retry_after_seconds
            + throttled.attempts * THROTTLED_STEP_SECONDS
            + SLOW_LANE_LEASE_MARGIN_SECONDS
        )

    def lane_policy(self, lane: DeliveryLane) -> dict[str, Any] | None:
        """`relay.delivery.<lane>` (fastLane or slowLane); None keeps the definition file's policy."""
        if lane not in DELIVERY_LANES:
            raise KeyError(lane)
        policy: dict[str, Any] | None = self.sections.get("delivery", {}).get(lane)
        return policy

    @property
    def first_attempt(self) -> FirstAttempt:
        """`relay.delivery.firstAttempt`: `inline` (default) or `stateMachine`."""
        return FirstAttempt(self.sections.get("delivery", {}).get(FIRST_ATTEMPT_KEY, FirstAttempt.INLINE))

    @property
    def dispatcher_timeout_seconds(self) -> int:
        """The dispatcher's timeout: one attempt (the batch's run in parallel) plus its bookkeeping."""
        if self.first_attempt == FirstAttempt.STATE_MACHINE:
            return DISPATCH_ONLY_TIMEOUT_SECONDS
        return self.deliver_timeout_seconds + DISPATCH_OVERHEAD_SECONDS

    @property
    def delivery_queue_visibility_seconds(self) -> int:
        """Longer than a whole batch may take, so a message is not redelivered while it is attempted."""
        return self.dispatcher_timeout_seconds * VISIBILITY_TO_TIMEOUT_RATIO

    @property
    def fast_lane_lease_seconds(self) -> int:
        """The lease the dispatcher takes: its inline attempt (if any), then the fast-lane run."""
        if self.first_attempt == FirstAttempt.STATE_MACHINE:
            return FAST_LANE_LEASE_SECONDS
        return FAST_LANE_LEASE_SECONDS + self.dispatcher_timeout_seconds

    def dispatcher_environment(self) -> dict[str, str]:
        """What only the dispatcher reads: who makes the first attempt."""
        return {Setting.FIRST_ATTEMPT: self.first_attempt.value}

    @property
    def api_logging(self) -> bool:
        """Whether the stage logs to CloudWatch, which needs the account's API Gateway CloudWatch role."""
        return self.api_gateway_cloud_watch_role != CLOUD_WATCH_ROLE_NONE

    @property
    def deliver_timeout_seconds(self) -> int:
        """The deliver function's timeout: one attempt plus its own bookkeeping."""
        return self.total_timeout_seconds + DELIVER_OVERHEAD_SECONDS

    def function_environment(self) -> dict[str, str]:
        """The variables functions/domain/config.py reads (table and queue are added per function)."""
        return {
            Setting.TTL_DAYS: str(self.ttl_days),
            Setting.MAX_BODY_BYTES: str(self.max_body_bytes),
            Setting.MAX_HEADER_COUNT: str(self.max_header_count),
            Setting.MAX_HEADER_BYTES: str(self.max_header_bytes),
            Setting.MAX_FUTURE_SKEW_SECONDS: str(self.max_future_skew_seconds),
            Setting.REDRIVE_AFTER_SECONDS: str(self.redrive_after_seconds),
            # Private and internal targets are for local development only; on AWS they are always
            # refused (validate checks the URL, deliver every resolved address).
            Setting.ALLOW_PRIVATE_TARGETS: "false",
            # Every request on AWS passes the authorizer; a request without a sender is refused.
            Setting.REQUIRE_SENDER: "true",
            # What a message's own `retry.maxAttempts` and `timeoutSeconds` may be at most.
            Setting.MAX_ATTEMPTS: str(self.max_attempts),
            Setting.TOTAL_TIMEOUT_SECONDS: str(self.total_timeout_seconds),
        }

    def circuit_breaker(self, name: str) -> int:
        """`relay.circuitBreaker.<name>` (CIRCUIT_BREAKER_SETTINGS), or its default."""
        return int(self.sections.get("circuitBreaker", {}).get(name, CIRCUIT_BREAKER_SETTINGS[name][0]))

    def delivery_environment(self) -> dict[str, str]:
        """How one delivery attempt behaves (functions/domain/config.py); lanes and queues are added per function."""
        return {
            Setting.BREAKER_FAILURE_THRESHOLD: str(self.circuit_breaker("failureThreshold")),
            Setting.BREAKER_PROBE_AFTER_SECONDS: str(self.circuit_breaker("probeAfterSeconds")),
            Setting.BREAKER_MAX_PROBE_AFTER_SECONDS: str(self.circuit_breaker("maxProbeAfterSeconds")),
            Setting.CONNECT_TIMEOUT_SECONDS: str(self.connect_timeout_seconds),
            Setting.TOTAL_TIMEOUT_SECONDS: str(self.total_timeout_seconds),
            Setting.MAX_RESPONSE_BYTES: str(self.max_response_bytes),
            Setting.FAST_LANE_LEASE_SECONDS: str(self.fast_lane_lease_seconds),
            Setting.SLOW_LANE_LEASE_SECONDS: str(self.slow_lane_lease_seconds),
            # Retry-After: its cap, and what each lane's next attempt would wait (to compare it with).
            Setting.MAX_RETRY_AFTER_SECONDS: str(self.max_retry_after_seconds),
            **self.delivery_schedule.lane_waits.environment(),
            **self.target_environment(),
        }

    def target_environment(self) -> dict[str, str]:
        """The deployment's default target limits (functions/domain/config.py); absent = unlimited."""
        rate, concurrency = self.target_defaults
        return {
            **({Setting.TARGET_DEFAULT_RATE_PER_SECOND: f"{rate:g}"} if rate is not None else {}),
            **({Setting.TARGET_DEFAULT_MAX_CONCURRENCY: str(concurrency)} if concurrency is not None else {}),
        }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


# Python field name -> cdk.json key (ttl_days -> ttlDays, the spelling of x-relay-limits).
CONTEXT_NAMES: dict[str, str] = {
    setting.name: _camel(setting.name) for setting in fields(RelaySettings) if setting.name != "sections"
}
