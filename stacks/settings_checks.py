"""How the `relay` context's values are checked and read: the ranges each setting accepts and the
error that names the setting (stacks/settings.py holds the settings themselves).

Split from stacks/settings.py so the knobs and what they mean stay in one short module, and the
parsing rules (which every new knob adds to) in another. Every error names the cdk.json key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from functions.contract.lanes import DeliveryLane
from functions.domain.config import (
    DEFAULT_BREAKER_FAILURE_THRESHOLD,
    DEFAULT_BREAKER_MAX_PROBE_AFTER_SECONDS,
    DEFAULT_BREAKER_PROBE_AFTER_SECONDS,
    FirstAttempt,
)
from stacks.definitions import DELIVERY_LANES
from stacks.tracing import Tracing

CONTEXT_KEY = "relay"

# `relay.targets`: every target's limits unless the sender set its own (PUT /targets; origin "*" for
# a sender-wide default). null = unlimited, which costs nothing per attempt (functions/services/targeting/targets.py).
TARGET_DEFAULTS = {"defaultRatePerSecond": (float, 0.001, 10_000), "defaultMaxConcurrency": (int, 1, 1000)}
# `relay.circuitBreaker` (functions/services/targeting/target_health.py): name -> (default, smallest, largest).
CIRCUIT_BREAKER_SETTINGS: dict[str, tuple[int, int, int]] = {
    "failureThreshold": (DEFAULT_BREAKER_FAILURE_THRESHOLD, 1, 10_000),
    "probeAfterSeconds": (DEFAULT_BREAKER_PROBE_AFTER_SECONDS, 1, 86_400),
    "maxProbeAfterSeconds": (DEFAULT_BREAKER_MAX_PROBE_AFTER_SECONDS, 1, 7 * 86_400),
}

# `relay.delivery.firstAttempt`: who makes a message's first attempt (functions/domain/config.py).
FIRST_ATTEMPT_KEY = "firstAttempt"
# `relay.delivery.maxRetryAfterSeconds`: the cap on a target's Retry-After (default 1 hour), at most a day.
MAX_RETRY_AFTER_KEY = "maxRetryAfterSeconds"
MAX_RETRY_AFTER_LIMIT_SECONDS = 86_400
# `relay.delivery` (DELIVERY_LANES): per-lane overrides of the DeliveryRetryable retrier in the lane's
# definition (stacks/definitions.apply_delivery_policy), the same ones `relay dev` applies.
# Field -> (kind, smallest, largest): the ranges Step Functions accepts for a Retrier (and a Wait).
POLICY_RANGES: dict[str, tuple[type, float, float]] = {
    "intervalSeconds": (int, 1, 99_999_999),
    # Step Functions allows up to 99,999,999; Relay's lanes never need more than this.
    "maxAttempts": (int, 0, 1000),
    "backoffRate": (float, 1.0, 99_999_999),
    "maxDelaySeconds": (int, 1, 31_622_400),
    "initialWaitSeconds": (int, 0, 99_999_999),
}
JITTER_STRATEGIES = ("FULL", "NONE")

# `apiGatewayCloudWatchRole`: what the stack may assume about, or do to, the account's API Gateway
# CloudWatch role (AWS::ApiGateway::Account sets it for the whole account and region).
CLOUD_WATCH_ROLE_NONE = "none"  # leave it alone and log nothing that needs it (deploys anywhere)
CLOUD_WATCH_ROLE_EXISTING = "existing"  # the account has one already: log errors and access, leave it alone
CLOUD_WATCH_ROLE_CREATE = "create"  # create one and make it the account's (replaces any other), then log
CLOUD_WATCH_ROLE_CHOICES = (CLOUD_WATCH_ROLE_NONE, CLOUD_WATCH_ROLE_EXISTING, CLOUD_WATCH_ROLE_CREATE)

# `applicationLogLevel`: the functions' application log level (Lambda's advanced logging controls,
# which Powertools' Logger follows). Lambda gives a JSON line without a "level" key the level INFO,
# and Powertools' EMF metric lines have none: above INFO Lambda would drop every metric, and the
# alarms on them would never fire. So the quietest level allowed is INFO.
APPLICATION_LOG_LEVELS = ("TRACE", "DEBUG", "INFO")
DEFAULT_APPLICATION_LOG_LEVEL = "INFO"


class SettingsError(ValueError):
    """The `relay` context is not valid."""


def check_delivery_policy(section: dict[str, Any]) -> None:
    """Catch a wrong retry policy at synth time (Step Functions would refuse it only at deploy)."""
    first_attempt = section.get(FIRST_ATTEMPT_KEY, FirstAttempt.INLINE)
    if first_attempt not in {choice.value for choice in FirstAttempt}:
        raise SettingsError(
            f"{CONTEXT_KEY}.delivery.{FIRST_ATTEMPT_KEY} must be one of "
            f"{', '.join(choice.value for choice in FirstAttempt)}, got {first_attempt!r}"
        )
    if MAX_RETRY_AFTER_KEY in section:
        cap = section[MAX_RETRY_AFTER_KEY]
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_RETRY_AFTER_LIMIT_SECONDS:
            raise SettingsError(
                f"{CONTEXT_KEY}.delivery.{MAX_RETRY_AFTER_KEY} must be a whole number from 1 to "
                f"{MAX_RETRY_AFTER_LIMIT_SECONDS}, got {cap!r}"
            )
    lanes = {name: policy for name, policy in section.items() if name not in (FIRST_ATTEMPT_KEY, MAX_RETRY_AFTER_KEY)}
    unknown = sorted(set(lanes) - set(DELIVERY_LANES))
    if unknown:
        raise SettingsError(
            f"unknown setting(s) in {CONTEXT_KEY}.delivery: {', '.join(unknown)}; "
            f"known: {', '.join([*DELIVERY_LANES, FIRST_ATTEMPT_KEY, MAX_RETRY_AFTER_KEY])}"
        )
    for lane, policy in lanes.items():
        where = f"{CONTEXT_KEY}.delivery.{lane}"
        if not isinstance(policy, dict):
            raise SettingsError(f"{where} must be an object")
        known = set(POLICY_RANGES) | {"jitterStrategy"}
        extra = sorted(set(policy) - known)
        if extra:
            raise SettingsError(f"unknown setting(s) in {where}: {', '.join(extra)}; known: {', '.join(sorted(known))}")
        for name, value in policy.items():
            if name == "jitterStrategy":
                if value not in JITTER_STRATEGIES:
                    raise SettingsError(f"{where}.jitterStrategy must be one of {', '.join(JITTER_STRATEGIES)}")
                continue
            kind, lowest, highest = POLICY_RANGES[name]
            valid_type = isinstance(value, int | float) if kind is float else isinstance(value, int)
            if isinstance(value, bool) or not valid_type or not lowest <= value <= highest:
                kind_name = "a number" if kind is float else "a whole number"
                raise SettingsError(f"{where}.{name} must be {kind_name} from {lowest:g} to {highest:g}, got {value!r}")
        if "initialWaitSeconds" in policy and lane != DeliveryLane.SLOW:
            raise SettingsError(f"{where}.initialWaitSeconds applies to the slow lane only")


def check_target_defaults(section: dict[str, Any]) -> None:
    unknown = sorted(set(section) - set(TARGET_DEFAULTS))
    if unknown:
        raise SettingsError(
            f"unknown setting(s) in {CONTEXT_KEY}.targets: {', '.join(unknown)}; known: {', '.join(TARGET_DEFAULTS)}"
        )
    for name, (kind, smallest, largest) in TARGET_DEFAULTS.items():
        value = section.get(name)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (kind is int and not isinstance(value, int))
        ):
            raise SettingsError(
                f"{CONTEXT_KEY}.targets.{name} must be a {'whole ' if kind is int else ''}number or null"
            )
        if not smallest <= value <= largest:
            raise SettingsError(f"{CONTEXT_KEY}.targets.{name} must be from {smallest:g} to {largest}, or null")


def check_circuit_breaker(section: dict[str, Any]) -> None:
    where = f"{CONTEXT_KEY}.circuitBreaker"
    extra = sorted(set(section) - set(CIRCUIT_BREAKER_SETTINGS))
    if extra:
        known = ", ".join(sorted(CIRCUIT_BREAKER_SETTINGS))
        raise SettingsError(f"unknown setting(s) in {where}: {', '.join(extra)}; known: {known}")
    for name, value in section.items():
        _, lowest, highest = CIRCUIT_BREAKER_SETTINGS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
            raise SettingsError(f"{where}.{name} must be a whole number from {lowest} to {highest}, got {value!r}")
    probe_after = section.get("probeAfterSeconds", CIRCUIT_BREAKER_SETTINGS["probeAfterSeconds"][0])
    cap = section.get("maxProbeAfterSeconds", CIRCUIT_BREAKER_SETTINGS["maxProbeAfterSeconds"][0])
    if cap < probe_after:
        raise SettingsError(f"{where}.maxProbeAfterSeconds must be at least probeAfterSeconds")


def _tracing(name: str, value: Any) -> Tracing:
    if value not in {mode.value for mode in Tracing}:
        raise SettingsError(
            f"{CONTEXT_KEY}.{name} must be one of {', '.join(repr(mode.value) for mode in Tracing)}, got {value!r}"
        )
    return Tracing(value)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise SettingsError(f"{CONTEXT_KEY}.{name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _rate(name: str, value: Any) -> float:
    """A share from 0 to 1 (X-Ray's FixedRate: 0.05 is 5 %)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise SettingsError(f"{CONTEXT_KEY}.{name} must be a number from 0 to 1 (0.05 is 5 %), got {value!r}")
    return float(value)


def _non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SettingsError(f"{CONTEXT_KEY}.{name} must be a whole number of 0 or more, got {value!r}")
    return value


def _application_log_level(name: str, value: Any) -> str:
    if value not in APPLICATION_LOG_LEVELS:
        raise SettingsError(
            f"{CONTEXT_KEY}.{name} must be one of {', '.join(APPLICATION_LOG_LEVELS)}, got {value!r}: Lambda "
            "counts the functions' metric (EMF) lines as INFO, so a quieter level would drop every metric "
            "and the alarms on them"
        )
    return str(value)


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SettingsError(f"{CONTEXT_KEY}.{name} must be a positive integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{CONTEXT_KEY}.{name} must be a positive integer, got {value!r}") from None
    if number <= 0:
        raise SettingsError(f"{CONTEXT_KEY}.{name} must be a positive integer, got {value!r}")
    return number


# Settings that are not positive integers, and how their cdk.json value is read.
PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "tracing": _tracing,
    "api_gateway_cloud_watch_role": lambda name, value: _choice(name, value, CLOUD_WATCH_ROLE_CHOICES),
    "xray_sampling_rate": _rate,
    "xray_reservoir_per_second": _non_negative_int,
    "application_log_level": _application_log_level,
}
