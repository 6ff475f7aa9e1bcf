"""`relay dev`: how long a healthy message waits when it is sent right behind a batch held by a
trickling target (issue 20).

Why: issue 20's done-when (GOAL below) asks for a time, and tests assert no times:
tests/integration/test_queue_pollers.py shows only the order (the healthy message is delivered
before the batch's answers). This measures both times and judges the goal.

How: one `LocalRelay` in this process, as that test runs it (`relay dev`'s runtime: the synthesized
template, real handlers and state machines on moto, the queue poller scaling up to the event source
mapping's MaximumConcurrency, waits x0.01), and two local targets (relay.local.targets.TargetServer):
a healthy one (/ok/<tag>) and a trickling one, which holds each request TRICKLE_ANSWER_MS before it
answers (tests/support.py). A sample is the time from a healthy message's 202 (as the sender reads
it) to the healthy target's receipt of its request:
- idle: the healthy message alone on the relay;
- behind a trickle: sent right after a fresh batch of TRICKLE_MESSAGES to the trickling target,
  each of them accepted first.
After a warm-up message to each target (imports, clients, a target's first items), the two kinds
alternate, so a change of the shared machine's load falls on both. After each trickle the relay is
brought back to idle: every message of the batch terminal and the extra pollers retired.

Run on its own as `python -m bench.dev_isolation [--out FILE]` (prints the summary);
bench/capacity_run.py runs it first in the capacity section (`capacity.dev_isolation` in
latest.json). BENCH_SCALE scales the number of samples.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.common import median, scaled, write_json

GOAL = (
    "In `relay dev`, a healthy message sent right after 10 messages to a trickling target is delivered "
    "within 2x the time an idle relay takes (or idle + 1 s)."
)
GOAL_FACTOR = 2.0
GOAL_ALLOWANCE_SECONDS = 1.0
IDLE_SAMPLES = 5
TRICKLE_REPETITIONS = 3
# How long one delivery, or one batch's answers, may take before the run gives up on it.
DELIVERY_TIMEOUT_SECONDS = 60.0


# -- the goal (pure) ------------------------------------------------------------------------------------


def allowed_seconds(idle_seconds: float) -> float:
    """The longest a healthy message behind a trickle may take: 2x idle, or idle + 1 s if longer."""
    return max(GOAL_FACTOR * idle_seconds, idle_seconds + GOAL_ALLOWANCE_SECONDS)


def summarize(measured: Mapping[str, Any]) -> dict[str, Any]:
    """latest.json's `capacity.dev_isolation`: the medians of both kinds of sample, their ratio and
    the goal's verdict, from what `measure` recorded (or the error that stopped it)."""
    if "error" in measured:
        return {"goal": GOAL, "meets_goal": False, "error": measured["error"]}
    idle_samples = [float(value) for value in measured["idle_samples_seconds"]]
    behind_samples = [float(value) for value in measured["behind_trickle_samples_seconds"]]
    idle = median(idle_samples)
    behind = median(behind_samples)
    allowed = allowed_seconds(idle)
    return {
        "idle_seconds": idle,
        "behind_trickle_seconds": behind,
        "ratio": behind / idle if idle > 0 else None,
        "allowed_seconds": allowed,
        "goal": GOAL,
        "meets_goal": bool(idle_samples and behind_samples) and behind <= allowed,
        "samples": {"idle_seconds": idle_samples, "behind_trickle_seconds": behind_samples},
        "trickle": {
            key: measured[key]
            for key in ("messages", "answer_ms", "batch_send_seconds", "batch_statuses", "peak_pollers")
            if key in measured
        },
    }


# -- the measurement ------------------------------------------------------------------------------------


def measure(idle_samples: int, repetitions: int) -> dict[str, Any]:
    """Both kinds of sample on one `LocalRelay` (see the module docstring)."""
    from relay.client import RelayClient
    from relay.local.runtime import LocalRelay
    from relay.local.targets import TargetServer
    from tests.support import TRICKLE_ANSWER_MS, TRICKLE_MESSAGES, send_trickling_batch

    idle: list[float] = []
    behind: list[float] = []
    batch_seconds: list[float] = []
    statuses: Counter[str] = Counter()
    with LocalRelay(port=0, time_scale=0.01) as relay, TargetServer() as healthy, TargetServer() as trickling:
        client = RelayClient(relay.url, token=relay.dev_token)
        healthy_delivery_seconds(client, healthy)
        healthy_delivery_seconds(client, trickling)
        for number in range(max(idle_samples, repetitions)):
            if number < idle_samples:
                idle.append(healthy_delivery_seconds(client, healthy))
            if number < repetitions:
                started = time.time()
                batch = send_trickling_batch(client, trickling.url)
                batch_seconds.append(time.time() - started)
                behind.append(healthy_delivery_seconds(client, healthy))
                statuses.update(_terminal_status(client, message) for message in batch)
                _until_one_poller(relay.workers[0])
        peak_pollers = relay.workers[0].peak_pollers
    return {
        "idle_samples_seconds": idle,
        "behind_trickle_samples_seconds": behind,
        "messages": TRICKLE_MESSAGES,
        "answer_ms": TRICKLE_ANSWER_MS,
        "batch_send_seconds": batch_seconds,
        "batch_statuses": dict(statuses),
        "peak_pollers": peak_pollers,
    }


def healthy_delivery_seconds(client: Any, target: Any) -> float:
    """Send one message to `target`'s /ok/<tag>: the seconds from its 202 to the target's receipt of
    its request; returns once it is DELIVERED."""
    from tests.support import send_accepted, wait_requests

    path = f"/ok/{uuid.uuid4().hex[:12]}"
    message = send_accepted(client, targetUrl=f"{target.url}{path}")
    accepted = time.time()
    request = wait_requests(target, path, timeout=DELIVERY_TIMEOUT_SECONDS)[0]
    status = _terminal_status(client, message)
    if status != "DELIVERED":
        raise RuntimeError(f"the healthy message {message['messageId']} ended {status}")
    return request.at - accepted


def _until_one_poller(worker: Any) -> None:
    """Back to idle: the pollers started for the batch retire once idle a while (one always stays)."""
    deadline = time.monotonic() + DELIVERY_TIMEOUT_SECONDS
    while worker.pollers > 1 and time.monotonic() < deadline:
        time.sleep(0.1)


def _terminal_status(client: Any, message: dict[str, Any]) -> str:
    from tests.support import wait_until_terminal

    return str(wait_until_terminal(client, message, timeout=DELIVERY_TIMEOUT_SECONDS)["status"])


def run(scale: float) -> dict[str, Any]:
    """The capacity section's `dev_isolation`: what `measure` recorded, or why it could not."""
    try:
        return measure(scaled(IDLE_SAMPLES, scale, minimum=3), scaled(TRICKLE_REPETITIONS, scale, minimum=3))
    except Exception as error:  # the capacity section's other measurements still run
        return {"error": f"{type(error).__name__}: {str(error)[:300]}"}


def main(argv: list[str] | None = None) -> int:
    from bench.common import bench_scale

    parser = argparse.ArgumentParser(description="relay dev: a healthy message behind a trickling target's batch")
    parser.add_argument("--out", help="also write what was measured and its summary to this JSON file")
    args = parser.parse_args(argv)
    measured = run(bench_scale())
    summary = summarize(measured)
    if args.out:
        write_json(Path(args.out), {"measured": measured, "summary": summary})
    print(json.dumps(summary, indent=2))
    return 0 if summary["meets_goal"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
