"""A deployment's own retry policy (`cdk synth -c relay='{"delivery": ...}'`) reaches both lanes."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from infra_support import Synthesized, state_machines, step_environment, synthesize

from functions.contract.settings_names import Setting
from stacks.definitions import render_definition, retry_schedule

# One retry more than the file's, within what an EXPRESS run fits (stacks/settings.RelaySettings.fast_lane_run).
FAST_POLICY = {"intervalSeconds": 2, "maxAttempts": 3, "backoffRate": 1.5, "maxDelaySeconds": 20}
SLOW_POLICY = {
    "intervalSeconds": 120,
    "maxAttempts": 10,
    "backoffRate": 3,
    "maxDelaySeconds": 7200,
    "jitterStrategy": "NONE",
    "initialWaitSeconds": 600,
}
LANES = {
    "fast": ("delivery_fast.asl.json", FAST_POLICY),
    "slow": ("delivery_slow.asl.json", SLOW_POLICY),
}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    # Given `-c relay=<JSON text>` overriding both lanes' policy (the CLI passes context as text)
    relay = json.dumps({"delivery": {"fastLane": FAST_POLICY, "slowLane": SLOW_POLICY}})
    # When the app is synthesized once for this module
    return synthesize(tmp_path_factory.mktemp("cdk.out"), context={"relay": relay})


def definition(synth: Synthesized, lane: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(state_machines(synth)[lane][1]["Properties"]["DefinitionString"])
    return document


def delivery_retrier(document: dict[str, Any]) -> dict[str, Any]:
    (retrier,) = [r for r in document["States"]["Deliver"]["Retry"] if r["ErrorEquals"] == ["DeliveryRetryable"]]
    return retrier


@pytest.mark.parametrize("lane", LANES)
def test_each_lane_is_rendered_with_the_override(synth: Synthesized, lane: str) -> None:
    # Given a lane's file and its overriding policy
    file_name, policy = LANES[lane]
    # Then the deployed definition is what render_definition makes of them (as relay dev runs it)
    assert state_machines(synth)[lane][1]["Properties"]["DefinitionString"] == render_definition(
        file_name, None, policy
    )


def test_the_fast_lanes_delivery_retrier_follows_the_override(synth: Synthesized) -> None:
    # Given the deployed fast lane
    retrier = delivery_retrier(definition(synth, "fast"))
    # Then its DeliveryRetryable retrier has the overriding values (jitter kept from the file)
    assert retrier == {
        "ErrorEquals": ["DeliveryRetryable"],
        "IntervalSeconds": 2,
        "MaxAttempts": 3,
        "BackoffRate": 1.5,
        "MaxDelaySeconds": 20,
        "JitterStrategy": "FULL",
    }


def test_the_slow_lanes_retrier_and_first_wait_follow_the_override(synth: Synthesized) -> None:
    # Given the deployed slow lane
    document = definition(synth, "slow")
    # Then its DeliveryRetryable retrier and its initial wait have the overriding values
    assert delivery_retrier(document) == {
        "ErrorEquals": ["DeliveryRetryable"],
        "IntervalSeconds": 120,
        "MaxAttempts": 10,
        "BackoffRate": 3,
        "MaxDelaySeconds": 7200,
        "JitterStrategy": "NONE",
    }
    assert document["States"]["WaitBeforeSlowLane"]["Seconds"] == 600


@pytest.mark.parametrize("lane", LANES)
def test_other_retriers_keep_the_files_values(synth: Synthesized, lane: str) -> None:
    # Given the lane as the file has it, and as deployed
    file_name, _ = LANES[lane]
    original = json.loads(render_definition(file_name))
    deployed = definition(synth, lane)
    # Then only the DeliveryRetryable retrier changed: Lambda and storage retries stay as written
    for name, state in original["States"].items():
        for before, after in zip(state.get("Retry", []), deployed["States"][name].get("Retry", []), strict=True):
            if before["ErrorEquals"] != ["DeliveryRetryable"]:
                assert after == before


def test_the_slow_lane_lease_follows_the_override(synth: Synthesized) -> None:
    # Given the slow lane's schedule under the override (waits 120, 360, 1080, 3240, then 7200 s)
    schedule = retry_schedule("delivery_slow.asl.json", SLOW_POLICY)
    throttled = retry_schedule("delivery_slow.asl.json", SLOW_POLICY, "DeliveryThrottled")
    waits = 600 + 120 + 360 + 1080 + 3240 + 6 * 7200
    assert int(schedule.max_horizon_seconds) == waits
    # (and the lane's waits for a target at its limit: its own retrier, 1 s a step)
    expected = math.ceil(waits + sum(throttled.waits)) + 11 * (15 + 10) + throttled.attempts + 3600
    # plus a Retry-After wait at its cap (an hour) for each attempt of a run (inline, fast lane, slow lane)
    expected += 3600 * (1 + retry_schedule("delivery_fast.asl.json", FAST_POLICY).attempts + schedule.attempts)
    # Then the functions that take or hand over the lease carry it
    for step in ("handoff", "dispatcher", "reconciler"):
        assert step_environment(synth, step)[Setting.SLOW_LANE_LEASE_SECONDS] == str(expected)
    assert synth.error is None, synth.error
