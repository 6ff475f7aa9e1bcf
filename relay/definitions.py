"""Loading `statemachines/*.asl.json` for CDK and for the local runtime alike.

The files are valid, runnable ASL with the documented default retry policy written in. A
deployment may override the delivery policy in `cdk.json` (context `relay.delivery`), and the
same function applies those overrides for `relay dev`, so both run the same definition.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATEMACHINE_DIR = Path(__file__).resolve().parents[1] / "statemachines"
DELIVERY_RETRY_ERROR = "DeliveryRetryable"
# A target at its limit (functions/shared/targets.py): retried with its own count, no attempt spent.
DELIVERY_THROTTLED_ERROR = "DeliveryThrottled"
# `relay.delivery` in cdk.json: each lane's definition file (the stack and relay dev apply its policy).
DELIVERY_LANES = {"fastLane": "delivery_fast.asl.json", "slowLane": "delivery_slow.asl.json"}

_POLICY_FIELDS = {
    "intervalSeconds": "IntervalSeconds",
    "backoffRate": "BackoffRate",
    "maxAttempts": "MaxAttempts",
    "maxDelaySeconds": "MaxDelaySeconds",
    "jitterStrategy": "JitterStrategy",
}


def machine_name(file_name: str) -> str:
    """The local name of the machine a definition file deploys as (`delivery_fast.asl.json` -> relay-delivery-fast)."""
    return "relay-" + file_name.removesuffix(".asl.json").replace("_", "-")


def read_definition(file_name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((STATEMACHINE_DIR / file_name).read_text(encoding="utf-8"))
    return document


def apply_delivery_policy(document: dict[str, Any], policy: dict[str, Any] | None) -> dict[str, Any]:
    """Set the Deliver task's DeliveryRetryable retrier (and the slow lane's first wait) from `policy`."""
    if not policy:
        return document
    unknown = set(policy) - set(_POLICY_FIELDS) - {"initialWaitSeconds"}
    if unknown:
        raise ValueError(f"unknown delivery policy settings: {sorted(unknown)}")
    for state in document["States"].values():
        for retrier in state.get("Retry", []):
            if DELIVERY_RETRY_ERROR in retrier["ErrorEquals"]:
                for name, asl_name in _POLICY_FIELDS.items():
                    if name in policy:
                        retrier[asl_name] = policy[name]
        if state.get("Type") == "Wait" and "Seconds" in state and "initialWaitSeconds" in policy:
            state["Seconds"] = int(policy["initialWaitSeconds"])
    return document


def render_definition(
    file_name: str, substitutions: dict[str, str] | None = None, policy: dict[str, Any] | None = None
) -> str:
    """The definition text with the policy applied and `${Placeholder}` tokens replaced.

    CDK passes tokens through `definition_substitutions` instead (substitutions=None keeps them).
    """
    text = json.dumps(apply_delivery_policy(read_definition(file_name), policy), indent=2)
    for placeholder, value in (substitutions or {}).items():
        text = text.replace("${" + placeholder + "}", value)
    if substitutions is not None and "${" in text:
        raise ValueError(f"{file_name} has placeholders without a value")
    return text


@dataclass(frozen=True)
class RetrySchedule:
    """What a lane's DeliveryRetryable retrier means in time.

    `waits` are the nominal waits `w` before each retry (IntervalSeconds x BackoffRate^n, capped at
    MaxDelaySeconds). With `JitterStrategy: FULL` Step Functions draws each wait uniformly from
    [0, w]; with NONE it waits exactly w. The slow lane's initial Wait state is never jittered.
    """

    attempts: int
    initial_wait_seconds: int
    waits: tuple[float, ...]
    full_jitter: bool = False

    def least_wait(self, wait: float) -> float:
        return 0.0 if self.full_jitter else wait

    def expected_wait(self, wait: float) -> float:
        return wait / 2 if self.full_jitter else wait

    @property
    def min_horizon_seconds(self) -> float:
        return self.initial_wait_seconds + sum(self.least_wait(wait) for wait in self.waits)

    @property
    def expected_horizon_seconds(self) -> float:
        return self.initial_wait_seconds + sum(self.expected_wait(wait) for wait in self.waits)

    @property
    def max_horizon_seconds(self) -> float:
        return self.initial_wait_seconds + sum(self.waits)


def retry_schedule(
    file_name: str, policy: dict[str, Any] | None = None, error: str = DELIVERY_RETRY_ERROR
) -> RetrySchedule:
    """What the lane's retrier of `error` means in time (the deployment's policy applied)."""
    document = apply_delivery_policy(read_definition(file_name), policy)
    initial_wait = sum(int(s.get("Seconds", 0)) for s in document["States"].values() if s.get("Type") == "Wait")
    for state in document["States"].values():
        for retrier in state.get("Retry", []):
            if error in retrier["ErrorEquals"]:
                interval = float(retrier.get("IntervalSeconds", 1))
                rate = float(retrier.get("BackoffRate", 2.0))
                cap = float(retrier.get("MaxDelaySeconds", float("inf")))
                retries = int(retrier.get("MaxAttempts", 3))
                # Cap as the waits grow, so large attempt counts or rates cannot overflow.
                waits: list[float] = []
                wait = interval
                for _ in range(retries):
                    waits.append(min(wait, cap))
                    wait = min(wait * rate, cap)
                return RetrySchedule(
                    attempts=retries + 1,
                    initial_wait_seconds=initial_wait,
                    waits=tuple(waits),
                    # ASL's default is NONE.
                    full_jitter=retrier.get("JitterStrategy", "NONE") == "FULL",
                )
    raise ValueError(f"{file_name} has no {error} retrier")


def lane_waits_environment(policies: dict[str, dict[str, Any] | None]) -> dict[str, str]:
    """What the attempting functions know of the lanes' waits (functions/shared/config.py), to
    compare a target's Retry-After with the next attempt's wait: the stack and relay dev set it alike."""
    fast = retry_schedule(DELIVERY_LANES["fastLane"], policies.get("fastLane"))
    slow = retry_schedule(DELIVERY_LANES["slowLane"], policies.get("slowLane"))
    return {
        "RELAY_FAST_LANE_WAITS": _waits(fast),
        "RELAY_SLOW_LANE_WAITS": _waits(slow),
        "RELAY_SLOW_LANE_INITIAL_WAIT_SECONDS": str(slow.initial_wait_seconds),
    }


def _waits(schedule: RetrySchedule) -> str:
    return ",".join(str(math.ceil(wait)) for wait in schedule.waits)
