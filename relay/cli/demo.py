"""`relay demo`: a local relay and demo targets; one message to each, what became of them, and the
outcome callbacks the healthy and the 404 message asked for."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from functions.contract.lanes import DeliveryLane
from functions.contract.settings_names import Setting
from relay.cli import demo_schedule
from relay.cli.common import print_json, send_demo_message
from relay.cli.messages import render_events
from relay.client import RelayClient

# A shortened schedule so the demo ends in seconds; `relay dev` runs the one in cdk.json.
DEMO_POLICY: dict[str, Any] = {
    DeliveryLane.FAST: {"intervalSeconds": 1, "maxAttempts": 2},
    DeliveryLane.SLOW: {"initialWaitSeconds": 2, "intervalSeconds": 2, "maxAttempts": 2},
}
DEMO_TARGETS = {
    "healthy": "/ok",
    "fails twice, then OK": "/flaky/2",
    "always 500": "/fail",
    "404": "/missing",
}
# Outcome callbacks: the healthy message calls back when DELIVERED, the 404 one when FAILED; each
# callback is a signed Relay message of its own, to these paths of the demo target.
DEMO_CALLBACKS = {
    "healthy": ("callbackUrl", "/callbacks/delivered"),
    "404": ("failureCallbackUrl", "/callbacks/failed"),
}
# How long the demo waits for the callbacks after their messages finished (they are sent then).
DEMO_CALLBACK_WAIT_SECONDS = 10.0
# A receiver that answers 429 above 4 requests in any second, on its own origin (limits are per
# origin), and the limit the demo sets on it (PUT /targets): 2/s with a burst of 2 never sends it
# more than 4 in a second, so every message goes through at the first try.
DEMO_RATE_LIMITED_PATH = "/ratelimit/4"
DEMO_RATE_LIMIT = 2.0
DEMO_RATE_LIMITED_MESSAGES = 8


def peak_per_second(times: list[float]) -> int:
    """The most requests any one-second window holds (what a rate limit promises to keep low)."""
    ordered = sorted(times)
    peak, start = 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= 1.0:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


# A second demo server (its own origin, so its own circuit breaker): down for a while, then OK. Its
# messages' failures open the target, they go PAUSED (not FAILED), and a probe finds it back up.
DEMO_OUTAGE_PATH = "/outage/8"
DEMO_OUTAGE_MESSAGES = 4
# The demo's circuit breaker: open after 10 consecutive failed attempts (more than the always-500
# message makes: it still ends FAILED), probe after 2 s, then every 4 s.
DEMO_BREAKER: dict[str, str] = {
    Setting.BREAKER_FAILURE_THRESHOLD: "10",
    Setting.BREAKER_PROBE_AFTER_SECONDS: "2",
    Setting.BREAKER_MAX_PROBE_AFTER_SECONDS: "4",
}


def cmd_demo(args: argparse.Namespace) -> int:
    from relay.local.runtime import LocalRelay
    from relay.local.targets import TargetServer

    with (
        TargetServer() as targets,
        TargetServer() as limited,
        TargetServer() as outage,
        LocalRelay(
            port=0,
            time_scale=args.time_scale,
            policy=DEMO_POLICY,
            environment=DEMO_BREAKER,
            reconcile_every_seconds=1.0,
        ) as relay,
    ):
        client = RelayClient(relay.url, token=relay.dev_token)
        print(f"Local relay at {relay.url}, demo targets at {targets.url} (time scale {args.time_scale}).")
        print("Retry policy for the demo: fast lane 3 attempts, slow lane 3 attempts (see cdk.json for the real one).")
        client.put_target(limited.url, DEMO_RATE_LIMIT, None)
        print(
            f"Target {limited.url} answers 429 above 4 requests a second; "
            f"its limit: `relay targets set {limited.url} --rate {DEMO_RATE_LIMIT:g}`."
        )

        print(
            f"Circuit breaker for the demo: a target opens after {DEMO_BREAKER[Setting.BREAKER_FAILURE_THRESHOLD]} "
            f"consecutive failed attempts; {outage.url} is down for a while, then recovers (PAUSED, then DELIVERED)."
        )
        timed = demo_schedule.start(client, targets)
        sent = {
            label: send_demo_message(client, label, f"{targets.url}{path}", _callbacks(label, targets.url))
            for label, path in DEMO_TARGETS.items()
        }
        for n in range(1, DEMO_OUTAGE_MESSAGES + 1):
            sent[f"down a while #{n}"] = send_demo_message(
                client, f"down a while #{n}", f"{outage.url}{DEMO_OUTAGE_PATH}"
            )
        limited_ids = [
            send_demo_message(
                client, f"rate-limited {n + 1}/{DEMO_RATE_LIMITED_MESSAGES}", f"{limited.url}{DEMO_RATE_LIMITED_PATH}"
            )
            for n in range(DEMO_RATE_LIMITED_MESSAGES)
        ]
        records, limited_records = _wait_for_all(client, sent, limited_ids, args.timeout)
        on_time = demo_schedule.finish(client, targets, timed, args.timeout)
        callbacks = _wait_for_callbacks(targets)
        if args.json:
            print_json({**records, "rate-limited": limited_records, "on-time": on_time, "callbacks": callbacks})
            return 0
        _report(records, limited_records, [request.at for request in limited.received])
        demo_schedule.report(on_time)
        _report_callbacks(callbacks)
    return 0


def _callbacks(label: str, base_url: str) -> dict[str, str]:
    if label not in DEMO_CALLBACKS:
        return {}
    field, path = DEMO_CALLBACKS[label]
    return {field: f"{base_url}{path}"}


def _wait_for_callbacks(targets: Any) -> dict[str, list[dict[str, Any]]]:
    """The callbacks the demo target received (path -> bodies), once each expected one came."""
    deadline = time.monotonic() + DEMO_CALLBACK_WAIT_SECONDS
    paths = [path for _, path in DEMO_CALLBACKS.values()]
    while time.monotonic() < deadline and not all(targets.requests_to(path) for path in paths):
        time.sleep(0.2)
    return {path: [json.loads(request.body) for request in targets.requests_to(path)] for path in paths}


def _report_callbacks(callbacks: dict[str, list[dict[str, Any]]]) -> None:
    print("\noutcome callbacks (each a signed Relay message from the same sender):")
    for path, bodies in callbacks.items():
        if not bodies:
            print(f"  {path}: none arrived")
        for body in bodies:
            answer = body.get("response", {}).get("statusCode", "-")
            print(
                f"  {path}: {body.get('messageId')} {body.get('status')} after {body.get('attempts')} attempt(s), "
                f"target answered {answer}{'; ' + body['error'] if body.get('error') else ''}"
            )


def _wait_for_all(
    client: RelayClient, sent: dict[str, str], limited_ids: list[str], timeout: float
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The demo's messages as they are once all have finished, or at the timeout."""
    deadline = time.monotonic() + timeout
    records: dict[str, dict[str, Any]] = {}
    limited_records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = {label: client.status(mid).body for label, mid in sent.items()}
        limited_records = [client.status(mid).body for mid in limited_ids]
        if all(r.get("status") in ("DELIVERED", "FAILED", "CANCELLED") for r in [*records.values(), *limited_records]):
            break
        time.sleep(0.2)
    return records, limited_records


def _report(records: dict[str, dict[str, Any]], limited_records: list[dict[str, Any]], arrivals: list[float]) -> None:
    """A table of the messages, each one's timeline, and how the rate-limited target was treated."""
    print()
    print(f"{'target':<24}{'status':<12}{'attempts':<10}last error")
    for label, record in records.items():
        status, attempts = record.get("status", "?"), record.get("attempts", 0)
        print(f"{label:<24}{status:<12}{attempts!s:<10}{record.get('lastError', '')}")
    for label, record in records.items():
        print(f"\n{label}: {record.get('messageId')}")
        render_events(record.get("events", []), indent="  ")
    statuses = sorted({str(r.get("status")) for r in limited_records})
    attempts = max((int(r.get("attempts") or 0) for r in limited_records), default=0)
    peak = peak_per_second(arrivals)
    print(
        f"\nrate-limited target (limit {DEMO_RATE_LIMIT:g}/s): {len(limited_records)} messages "
        f"{'/'.join(statuses)}, at most {attempts} attempt(s) each, at most {peak} request(s) in any second"
    )
