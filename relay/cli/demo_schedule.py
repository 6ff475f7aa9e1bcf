"""`relay demo`'s part on time: a delayed message, one due at a set time, and a cron schedule firing,
each measured against its due time (the numbers issue 18's "done when" asks for, from `relay dev`).

Started before the rest of the demo and collected after it, so the demo waits at most for the next
minute's firing.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.domain.clock import iso_seconds, parse_iso
from functions.domain.scheduling import firing_id
from relay.cli.common import DEFAULT_SENDER, send_demo_message
from relay.client import RelayClient
from relay.local.targets import TargetServer

DEMO_DELAY_SECONDS = 8
DEMO_NOT_BEFORE_SECONDS = 20
DEMO_CRON = "* * * * *"
TIMED_PATH = "/ok"


@dataclass
class TimedDemo:
    """What was sent and when: each message's id, the moment it must not arrive before, and a label."""

    due: dict[str, tuple[str, float]] = field(default_factory=dict)
    accepted_at: dict[str, float] = field(default_factory=dict)
    schedule: str = ""


def start(client: RelayClient, target: TargetServer) -> TimedDemo:
    """Send a message with delaySeconds, one with notBefore, and set a schedule firing every minute."""
    demo = TimedDemo()
    url = f"{target.url}{TIMED_PATH}"
    delayed = send_demo_message(client, f"delaySeconds {DEMO_DELAY_SECONDS}", url, {"delaySeconds": DEMO_DELAY_SECONDS})
    demo.accepted_at[delayed] = time.time()
    demo.due[delayed] = (f"delaySeconds {DEMO_DELAY_SECONDS}", demo.accepted_at[delayed] + DEMO_DELAY_SECONDS)
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=DEMO_NOT_BEFORE_SECONDS)
    timed = send_demo_message(client, f"notBefore +{DEMO_NOT_BEFORE_SECONDS}s", url, {"notBefore": iso_seconds(at)})
    demo.due[timed] = (f"notBefore +{DEMO_NOT_BEFORE_SECONDS}s", at.timestamp())
    demo.schedule = f"demo-{uuid.uuid4().hex[:6]}"
    answer = client.put_schedule(demo.schedule, {"cron": DEMO_CRON, "message": {"targetUrl": url, "body": "tick"}})
    next_run = parse_iso(answer.body["nextRunAt"])
    demo.due[firing_id(demo.schedule, next_run)] = (f"schedule '{DEMO_CRON}'", next_run.timestamp())
    print(
        f"  schedule {demo.schedule} '{DEMO_CRON}': {answer.status}, next firing {answer.body['nextRunAt']} "
        f"(`relay schedules set {demo.schedule} --cron '{DEMO_CRON}' --url {url}`)"
    )
    return demo


def finish(client: RelayClient, target: TargetServer, demo: TimedDemo, timeout: float) -> list[dict[str, Any]]:
    """Wait for each timed message's arrival, delete the schedule, and give each one's measurement."""
    deadline = time.monotonic() + timeout
    arrivals: dict[str, float] = {}
    while time.monotonic() < deadline and len(arrivals) < len(demo.due):
        for request in target.requests_to(TIMED_PATH):
            message_id = (request.header("webhook-id") or "").removeprefix(f"{DEFAULT_SENDER}:")
            if message_id in demo.due and message_id not in arrivals:
                arrivals[message_id] = request.at
        time.sleep(0.1)
    client.delete_schedule(demo.schedule)
    results = []
    for message_id, (label, due) in demo.due.items():
        arrived = arrivals.get(message_id)
        result: dict[str, Any] = {"label": label, "messageId": message_id, "dueAt": due, "arrivedAt": arrived}
        if arrived is not None:
            result["secondsAfterDue"] = round(arrived - due, 3)
            if message_id in demo.accepted_at:
                result["secondsAfter202"] = round(arrived - demo.accepted_at[message_id], 3)
        results.append(result)
    return results


def report(results: list[dict[str, Any]]) -> None:
    print("\non time (never before the due time; issue 18 asks within 2 s after it, 8-10 s for delaySeconds 8):")
    for result in results:
        if result.get("arrivedAt") is None:
            print(f"  {result['label']:<24} {result['messageId']}: did not arrive")
            continue
        after_202 = f", {result['secondsAfter202']:.2f} s after the 202" if "secondsAfter202" in result else ""
        print(f"  {result['label']:<24} arrived {result['secondsAfterDue']:+.2f} s from its due time{after_202}")
