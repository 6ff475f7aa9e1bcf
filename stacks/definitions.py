"""Loading `statemachines/*.asl.json` for CDK and for the local runtime alike.

The files are valid, runnable ASL with the documented default retry policy written in. A
deployment may override the delivery policy in `cdk.json` (context `relay.delivery`), and the
same function applies those overrides for `relay dev`, so both run the same definition.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from functions.contract.lanes import DeliveryLane
from stacks.paths import STATEMACHINE_DIR

DELIVERY_RETRY_ERROR = "DeliveryRetryable"
# A target at its limit (functions/services/targeting/flow_control.py): retried with its own count, no attempt spent.
DELIVERY_THROTTLED_ERROR = "DeliveryThrottled"
# `relay.delivery` in cdk.json: each lane's definition file (the stack and relay dev apply its policy).
DELIVERY_LANES: dict[str, str] = {
    DeliveryLane.FAST: "delivery_fast.asl.json",
    DeliveryLane.SLOW: "delivery_slow.asl.json",
}

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


def retrier_waits(retrier: dict[str, Any]) -> tuple[float, ...]:
    """The nominal wait before each retry of one ASL retrier (ASL's defaults where a field is absent:
    IntervalSeconds 1, BackoffRate 2.0, MaxAttempts 3, no MaxDelaySeconds). With FULL jitter each is
    the longest the wait may be."""
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
    return tuple(waits)


def retry_schedule(
    file_name: str, policy: dict[str, Any] | None = None, error: str = DELIVERY_RETRY_ERROR
) -> RetrySchedule:
    """What the lane's retrier of `error` means in time (the deployment's policy applied)."""
    document = apply_delivery_policy(read_definition(file_name), policy)
    initial_wait = sum(int(s.get("Seconds", 0)) for s in document["States"].values() if s.get("Type") == "Wait")
    for state in document["States"].values():
        for retrier in state.get("Retry", []):
            if error in retrier["ErrorEquals"]:
                waits = retrier_waits(retrier)
                return RetrySchedule(
                    attempts=len(waits) + 1,
                    initial_wait_seconds=initial_wait,
                    waits=waits,
                    # ASL's default is NONE.
                    full_jitter=retrier.get("JitterStrategy", "NONE") == "FULL",
                )
    raise ValueError(f"{file_name} has no {error} retrier")


@dataclass(frozen=True)
class StateTime:
    """The longest one state of a run may take, and why (`detail`)."""

    name: str
    seconds: float
    detail: str


def _state_time(
    name: str, state: dict[str, Any], task_seconds: Callable[[str, dict[str, Any]], float], caps: dict[str, float]
) -> StateTime:
    """One state's worst case (see longest_run)."""
    kind = state["Type"]
    if kind == "Task":
        retriers = state.get("Retry", [])
        retries = sum(int(retrier.get("MaxAttempts", 3)) for retrier in retriers)
        waits = sum(sum(retrier_waits(retrier)) for retrier in retriers)
        each = task_seconds(name, state)
        tries = retries + 1
        return StateTime(
            name, tries * each + waits, f"{tries} tries of up to {each:g} s and {waits:g} s of retry waits"
        )
    if kind == "Wait":
        if "Seconds" in state:
            return StateTime(name, float(state["Seconds"]), f"waits {state['Seconds']} s")
        path = state.get("SecondsPath")
        if path in caps:
            return StateTime(name, caps[path], f"waits {path}, at most {caps[path]:g} s")
        raise ValueError(f"state {name} waits {path or 'until a timestamp'}, which has no known cap")
    if kind in ("Choice", "Pass", "Succeed", "Fail"):
        return StateTime(name, 0.0, "")
    raise ValueError(f"state {name} is a {kind} state, whose time is not bounded here")


def _successors(state: dict[str, Any]) -> list[str]:
    """Every state a state may go on to: Next, a Choice's branches and Default, every Catch."""
    following = [state["Next"]] if "Next" in state else []
    following += [choice["Next"] for choice in state.get("Choices", [])]
    following += [state["Default"]] if "Default" in state else []
    following += [catcher["Next"] for catcher in state.get("Catch", [])]
    return following


def longest_run(
    document: dict[str, Any],
    task_seconds: Callable[[str, dict[str, Any]], float],
    wait_caps: dict[str, float] | None = None,
) -> tuple[float, tuple[StateTime, ...]]:
    """The longest a run of `document` may take, and the states of that longest path.

    Every path from StartAt is followed (Next, a Choice's branches and Default, every Catch), and
    each state on it takes its worst case: a Task tries once plus every retry of every retrier
    (each retrier keeps its own count), each try lasting `task_seconds(name, state)` (its function's
    timeout), plus every retry wait in full (IntervalSeconds x BackoffRate^n, capped by
    MaxDelaySeconds; FULL jitter waits at most that); a Wait its Seconds, or for a SecondsPath the
    cap `wait_caps` gives that path. Anything that cannot be bounded this way (a loop, a Wait
    without a known cap, a Parallel or Map state) raises ValueError rather than be guessed.
    """
    states: dict[str, dict[str, Any]] = document["States"]
    caps = wait_caps or {}
    longest: dict[str, tuple[float, tuple[StateTime, ...]]] = {}
    visiting: set[str] = set()

    def walk(name: str) -> tuple[float, tuple[StateTime, ...]]:
        if name in longest:
            return longest[name]
        if name in visiting:
            raise ValueError(f"state {name} is part of a loop: its run has no bound")
        visiting.add(name)
        state = states[name]
        here = _state_time(name, state, task_seconds, caps)
        after: tuple[float, tuple[StateTime, ...]] = (0.0, ())
        for following in _successors(state):
            candidate = walk(following)
            if candidate[0] > after[0]:
                after = candidate
        visiting.discard(name)
        longest[name] = (here.seconds + after[0], (here, *after[1]))
        return longest[name]

    total, path = walk(document["StartAt"])
    return total, tuple(step for step in path if step.seconds)
