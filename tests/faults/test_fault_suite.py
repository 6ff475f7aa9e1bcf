"""Issue 5, item 4: at least 1,000 messages through `relay dev` while every step is being broken.

The relay runs in-process (LocalRelay: real HTTP API, real state machines and handlers on the
embedded AWS, real queue worker and reconciler) and delivers over real HTTP to scripted targets.
Faults (see injector.py): failing and throttled DynamoDB writes (some applied before the error),
failing SQS sends (some sent before the error), handlers crashing before or after doing their
work, targets answering 5xx/429/404, hanging, resetting or slow, and one restart of everything the
process runs (server, queue worker, reconciler, running delivery runs) with the embedded AWS kept.

Senders retry 5xx and broken connections with the same messageId, as a real client would. When
the system is quiet again, every message is checked against the guarantees of DESIGN.md: accepted
once, nothing lost (terminal, complete history: no gaps), at-least-once delivery with no more deliveries
than attempts, and the outcome its target calls for unless a delivery-side fault explains another.

Size and seed: `pytest tests/faults --fault-messages=5000 --fault-seed=7`, or the environment
variables RELAY_FAULT_MESSAGES / RELAY_FAULT_SEED. RELAY_FAULT_REPORT=path writes the report as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import threading
import time
from typing import Any

import pytest

from functions.contract.settings_names import Setting
from relay.local.runtime import DEV_SENDER, LocalRelay
from relay.local.targets import TargetServer
from tests.conftest import now_iso
from tests.faults.harness import (
    TARGET_MIX,
    Backpressure,
    RestartRecord,
    Sender,
    SendRecord,
    build_report,
    dead_letters,
    execution_counts,
    quiet_logs,
    read_messages,
    restart_runtime,
    stored_message_ids,
    wait_until_quiescent,
)
from tests.faults.injector import FaultInjector, FaultRates

pytestmark = pytest.mark.faults

# Short waits (time_scale) with the real counts: the inline attempt, 3 fast-lane attempts, then 2 in the
# slow lane.
POLICY = {
    "fastLane": {"intervalSeconds": 1, "maxAttempts": 2, "backoffRate": 2.0},
    "slowLane": {"initialWaitSeconds": 2, "intervalSeconds": 2, "maxAttempts": 1},
}
TOTAL_ATTEMPTS = 1 + 1 + POLICY["fastLane"]["maxAttempts"] + 1 + POLICY["slowLane"]["maxAttempts"]
TIME_SCALE = 0.01
ENVIRONMENT = {
    # /hang costs this long per attempt.
    Setting.TOTAL_TIMEOUT_SECONDS: "1",
    Setting.CONNECT_TIMEOUT_SECONDS: "1",
    # A message nobody picked up (lost queue message, crashed step) is re-driven after this long...
    Setting.REDRIVE_AFTER_SECONDS: "45",
    # ...and one whose run died, once the run's lease is over. Both outlast a queue wait or a run
    # several times over even with both cores busy (see "delivery runs ... longest seconds" in the
    # report), so a slow machine delays re-drives but never causes one.
    Setting.FAST_LANE_LEASE_SECONDS: "45",
    Setting.SLOW_LANE_LEASE_SECONDS: "45",
    # Every target path shares one origin, and each path's verdict is its own outcome (/fail ends
    # FAILED): the circuit breaker, which would pause them all, is out of reach here (it has its
    # own suites: tests/integration/test_circuit_breaker.py, tests/e2e/test_circuit_breaker_http.py).
    Setting.BREAKER_FAILURE_THRESHOLD: "1000000",
}
# Waits end when the relay stops making progress for this long, never at a fixed time: a busy
# machine makes the suite slower, not its verdict different. It outlasts a lease plus a reconcile.
STALL_SECONDS = 120.0
# Each round queries every shard of the `due` index, which moto answers by scanning the whole table.
RECONCILE_EVERY_SECONDS = 5.0
# Senders in parallel (they are also held back while the delivery backlog is deep: Backpressure).
SENDERS = 4
RATES = FaultRates()


def _messages(count: int, seed: int, target_url: str) -> list[SendRecord]:
    chooser = random.Random(seed)
    paths = chooser.choices([path for path, _ in TARGET_MIX], weights=[weight for _, weight in TARGET_MIX], k=count)
    return [
        SendRecord(
            message={
                "messageId": f"fault-{seed}-{index:05d}",
                "senderId": DEV_SENDER,
                "timestamp": now_iso(),
                "targetUrl": f"{target_url}{path}",
                "body": {"index": index, "path": path},
            },
            path=path,
        )
        for index, path in enumerate(paths)
    ]


def test_every_message_survives_the_faults(fault_messages: int, fault_seed: int, capsys: Any) -> None:
    started = time.monotonic()
    with capsys.disabled():
        print(f"\nfault suite: {fault_messages} messages, seed {fault_seed} (RELAY_FAULT_SEED={fault_seed} repeats it)")
    with TargetServer() as target, quiet_logs():
        relay = LocalRelay(
            port=0,
            time_scale=TIME_SCALE,
            policy=POLICY,
            environment=ENVIRONMENT,
            reconcile_every_seconds=RECONCILE_EVERY_SECONDS,
        ).start()
        try:
            assert relay.local is not None
            local = relay.local
            injector = FaultInjector(
                fault_seed,
                RATES,
                queue_urls=frozenset({local.queue_urls[local.queue_name], local.queue_urls[local.failed_queue_name]}),
            )
            records = _messages(fault_messages, fault_seed, target.url)
            with injector.installed(local):
                # Given senders that retry like real clients, and a restart halfway through
                sender = Sender(
                    relay.url, relay.dev_token, fault_seed, concurrency=SENDERS, stall_seconds=STALL_SECONDS
                )
                restart: list[RestartRecord] = []
                restart_at = fault_messages // 2
                restarter: list[threading.Thread] = []
                restart_lock = threading.Lock()

                def on_progress(sent: int) -> None:
                    if sent >= restart_at and not restarter:
                        with restart_lock:
                            if restarter:
                                return

                            def run() -> None:
                                record = restart_runtime(relay, injector)
                                record.at_sent = sent
                                restart.append(record)

                            restarter.append(threading.Thread(target=run, name="fault-restart"))
                            restarter[0].start()

                # When every message is sent
                send_started = time.monotonic()
                sender.send_all(records, on_progress, hold=Backpressure(local))
                sent_seconds = time.monotonic() - send_started
                for thread in restarter:
                    thread.join()
                # And the relay has become quiet
                stuck, drain_seconds = wait_until_quiescent(
                    relay, DEV_SENDER, [record.message_id for record in records], stall_seconds=STALL_SECONDS
                )
                injector.enabled = False
            stored = read_messages(local.table_name, DEV_SENDER, [record.message_id for record in records])
            report, _ = build_report(
                fault_seed,
                records,
                stored,
                stored_message_ids(local.table_name, DEV_SENDER),
                target,
                injector,
                restart[0] if restart else None,
                DEV_SENDER,
                TOTAL_ATTEMPTS,
            )
            report.timings = {
                "sending": sent_seconds,
                "senders held back (sum over senders)": sender.held_seconds,
                "draining": drain_seconds,
                "total": time.monotonic() - started,
            }
            report.extra["delivery runs"] = execution_counts(local)
            report.extra["delivery queue dead letters"] = dead_letters(local)
            report.extra["handler invocations"] = dict(sorted(injector.invocations.items()))
            report.extra["handler seconds"] = {n: round(v, 1) for n, v in sorted(injector.seconds.items())}
            if stuck:
                report.extra["not quiet after the timeout"] = stuck[:20]
        finally:
            relay.stop()  # stops every run still going and waits for its threads

    text = report.render()
    with capsys.disabled():
        print("\n" + text)
    if os.environ.get("RELAY_FAULT_REPORT"):
        with open(os.environ["RELAY_FAULT_REPORT"], "w", encoding="utf-8") as out:
            document: dict[str, Any] = dataclasses.asdict(report)
            # The stored message, answers and faults of every message the checks had something to say about.
            flagged = {message_id for ids in [*report.problems.values(), *report.notes.values()] for message_id in ids}
            flagged |= set(report.distributions.get("seconds from accepted to terminal", {}).get("slowest", []))
            document["messages"] = {
                message_id: {
                    "stored": dataclasses.asdict(stored[message_id]) if message_id in stored else None,
                    "faults": [dataclasses.asdict(f) for f in injector.faults if message_id in f.message_ids],
                    "answers": next(r.answers for r in records if r.message_id == message_id),
                }
                for message_id in sorted(flagged)
                if message_id.startswith("fault-")
            }
            json.dump(document, out, indent=1, default=str)

    # Then no accepted message is lost and none was accepted twice
    assert report.counts["lost"] == 0, text
    assert report.counts["duplicated"] == 0, text
    # And every history is complete: every counted attempt has its ATTEMPT_STARTED and a result, every
    # ending its event (status and event are one write)
    assert report.counts["history_gaps"] == 0, text
    # And every sent message was accepted in the end (the client's retries are answered)
    assert report.counts["accepted"] == report.counts["sent"], text
    # And every message meets every rule (history, outcome, deliveries no more than attempts)
    assert not report.problems, text
    # And the restart happened while messages were in flight
    assert restart or fault_messages < 2, text
    assert fault_messages < 1000 or report.counts["sent"] >= 1000
