"""Throughput and latency of `relay dev`, driven over real HTTP like a sender would.

`relay dev` runs as a subprocess on a free port (its own process, as users run it); this process
plays the senders (one thread and one keep-alive connection per concurrent sender) and the target
(relay.local.targets.TargetServer, timing each message's first delivery). For each concurrency
level N messages are sent; reported: accepted/s and delivered/s over the level's wall time,
accept latency (request sent -> 202 read) and accept-to-delivered (202 read -> target got the
request) percentiles, and the relay process's peak RSS (VmHWM).

Run as `python -m bench.throughput --out FILE` (bench.run does it in a fresh process).
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import one_kb_body, one_kb_message, scaled, section_main, spawn_relay_dev, stop_process, summary_ms
from relay.local.targets import TargetServer

LEVELS = (1, 4, 16)
BASE_MESSAGES = 60


class TimedTarget(TargetServer):
    """The demo target, also noting when each webhook-id first arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.first_seen: dict[str, float] = {}
        self._seen_lock = threading.Lock()

    def _respond(self, handler: Any, seen: int) -> None:
        arrived = time.perf_counter()
        webhook_id = handler.headers.get("webhook-id") or ""
        with self._seen_lock:
            self.first_seen.setdefault(webhook_id, arrived)
        super()._respond(handler, seen)


@dataclass
class RelayProcess:
    process: subprocess.Popen[str]
    url: str = ""
    token: str = ""
    output: list[str] = field(default_factory=list)

    def memory_kb(self) -> dict[str, int]:
        values: dict[str, int] = {}
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text(encoding="utf-8").splitlines():
                name, _, rest = line.partition(":")
                if name in ("VmHWM", "VmRSS"):
                    values[name] = int(rest.split()[0])
        except OSError:
            pass
        return values

    def stop(self) -> None:
        stop_process(self.process)


def start_relay_dev(home: str) -> RelayProcess:
    process, output = spawn_relay_dev(["--port", "0"], home)
    relay = RelayProcess(process, output=output)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (relay.url and relay.token):
        text = "".join(relay.output)
        if url := re.search(r"running at (http://[0-9.:]+)", text):
            relay.url = url.group(1)
        if token := re.search(r"(rly_[A-Za-z0-9_-]+)", text):
            relay.token = token.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    if not (relay.url and relay.token):
        relay.stop()
        raise RuntimeError("relay dev did not start:\n" + "".join(relay.output))
    return relay


@dataclass
class Sent:
    message_id: str
    started: float
    accepted: float
    status: int


def _sender(relay: RelayProcess, target_url: str, ids: list[str], results: list[Sent], lock: threading.Lock) -> None:
    host, port = relay.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    headers = {"Authorization": f"Bearer {relay.token}", "Content-Type": "application/json"}
    while True:
        with lock:
            if not ids:
                break
            message_id = ids.pop()
        body = json.dumps(one_kb_message(target_url, message_id)).encode()
        started = time.perf_counter()
        try:
            connection.request("POST", "/messages", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(host, int(port), timeout=120)
            status = 0
        accepted = time.perf_counter()
        with lock:
            results.append(Sent(message_id, started, accepted, status))
    connection.close()


def run_level(
    relay: RelayProcess, target: TimedTarget, concurrency: int, messages: int, timeout: float
) -> dict[str, Any]:
    ids = [f"bench-c{concurrency}-{uuid.uuid4().hex[:12]}" for _ in range(messages)]
    pending, lock = list(ids), threading.Lock()
    results: list[Sent] = []
    threads = [
        threading.Thread(target=_sender, args=(relay, target.url, pending, results, lock)) for _ in range(concurrency)
    ]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent_done = time.perf_counter()
    accepted = [sent for sent in results if sent.status == 202]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivered = [sent for sent in accepted if f"dev:{sent.message_id}" in target.first_seen]
        if len(delivered) == len(accepted):
            break
        time.sleep(0.05)
    delivered = [sent for sent in accepted if f"dev:{sent.message_id}" in target.first_seen]
    arrivals = [target.first_seen[f"dev:{sent.message_id}"] for sent in delivered]
    last_delivery = max(arrivals) if arrivals else sent_done
    statuses: dict[str, int] = {}
    for sent in results:
        statuses[str(sent.status)] = statuses.get(str(sent.status), 0) + 1
    return {
        "concurrency": concurrency,
        "messages": messages,
        "accepted": len(accepted),
        "delivered": len(delivered),
        "statuses": statuses,
        "accepted_per_second": len(accepted) / (sent_done - begin) if accepted else 0.0,
        "delivered_per_second": len(delivered) / (last_delivery - begin) if delivered else 0.0,
        "wall_seconds": last_delivery - begin,
        "accept_latency_ms": summary_ms([sent.accepted - sent.started for sent in accepted]),
        "accept_to_delivered_ms": summary_ms(
            [target.first_seen[f"dev:{sent.message_id}"] - sent.accepted for sent in delivered]
        ),
        "relay_memory_kb": relay.memory_kb(),
    }


def run(scale: float) -> dict[str, Any]:
    messages = scaled(BASE_MESSAGES, scale)
    home = tempfile.mkdtemp(prefix="relay-bench-home-")
    target = TimedTarget()
    target.start()
    relay = start_relay_dev(home)
    try:
        started_memory = relay.memory_kb()
        warmup = run_level(relay, target, 2, 6, timeout=60)
        levels = [run_level(relay, target, level, messages, timeout=120 * scale) for level in LEVELS]
    finally:
        relay.stop()
        target.stop()
    import resource

    return {
        "relay": "python -m relay.cli dev --port 0: cdk.json policy, time scale 1",
        "message_body_bytes": len(one_kb_body()),
        "relay_memory_at_start_kb": started_memory,
        "warmup": {"messages": warmup["messages"], "delivered": warmup["delivered"]},
        "levels": levels,
        "bench_process_peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main(argv: list[str] | None = None) -> int:
    return section_main("throughput and latency of relay dev", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
