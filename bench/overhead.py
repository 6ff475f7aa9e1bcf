"""The local ASL interpreter's share of a run: the same handlers, called directly vs through moto.

- ingest: validate -> dedup -> store -> enqueue, each through LocalAws.invoke (the real handlers,
  with the event copy Lambda makes) and the machine's Choice logic in Python, versus the same
  input through the `relay-ingest` state machine (StartSyncExecution semantics, in this thread).
- delivery: one attempt of the deliver handler versus the `relay-delivery-fast` machine running
  that attempt, after a direct ingest and a claim of the message.

Both variants alternate message by message against the same embedded AWS, so drift (the table
growing, the machine's noise) hits them alike. Reported: medians per message and their ratio.

Run as `python -m bench.overhead --out FILE` (bench.run does it in a fresh process).
"""

from __future__ import annotations

import base64
import functools
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.common import median, one_kb_message, percentile, scaled, section_main
from functions.contract.settings_names import Setting, ToolVariable

INGEST_STEPS = ("relay-validate", "relay-dedup", "relay-store", "relay-enqueue")


def _ingest_input(target_url: str) -> tuple[str, dict[str, Any]]:
    message_id = f"ovh-{uuid.uuid4().hex[:12]}"
    body = base64.b64encode(json.dumps(one_kb_message(target_url, message_id)).encode()).decode()
    return message_id, {"requestId": str(uuid.uuid4()), "senderId": "dev", "bodyBase64": body}


def ingest_direct(local: Any, state: dict[str, Any]) -> dict[str, Any]:
    """The ingest machine's logic without the interpreter: each step, stop once one answered."""
    state = {**state, "shape": "message"}  # what the relay-ingest machine hands to Validate
    for step in INGEST_STEPS:
        state = local.invoke(step, state)
        if "response" in state:
            response: dict[str, Any] = state["response"]
            return response
    raise RuntimeError("ingest ended without an answer")


def ingest_asl(local: Any, state: dict[str, Any]) -> dict[str, Any]:
    result = local.start_sync_execution("relay-ingest", state)
    if result.get("status") != "SUCCEEDED":
        raise RuntimeError(f"ingest run {result.get('status')}")
    output: dict[str, Any] = json.loads(result["output"])
    return output


def _claim(local: Any, message_id: str) -> dict[str, Any]:
    """What the dispatcher does before a run: the lease on the head, handed to the run's name (its
    fencing token: the run's attempt must show it). No run is started here; the run's name rides
    along as `_name` (the direct call passes it as the owner, the machine runs under it)."""
    from functions.domain.config import get_settings
    from functions.domain.model import MessageKey, fencing_token
    from functions.services.delivery import RunInput, dependencies

    deps = dependencies(get_settings())
    key = MessageKey("dev", message_id)
    now = int(time.time())
    name = f"ovh-{uuid.uuid4().hex[:12]}"
    head = deps.repository.get_head(key)
    claimed = head and deps.repository.claim(head, now + 360, now, None, None, owner=fencing_token(name))
    if not claimed:
        raise RuntimeError("could not claim the message")
    return {**RunInput(key, 0).to_dict(), "_name": name}


def deliver_direct(local: Any, run: dict[str, Any]) -> None:
    payload = {key: value for key, value in run.items() if key != "_name"}
    answer = local.invoke("relay-deliver", {**payload, "lane": "fast", "executionArn": "direct", "owner": run["_name"]})
    if answer.get("outcome") != "DELIVERED":
        raise RuntimeError(f"direct delivery answered {answer}")


def deliver_asl(local: Any, run: dict[str, Any]) -> None:
    from relay.local.emulator import run_sync_execution

    payload = {key: value for key, value in run.items() if key != "_name"}
    result = run_sync_execution(local.state_machine_arns["relay-delivery-fast"], payload, name=run["_name"])
    if result.get("status") != "SUCCEEDED":
        raise RuntimeError(f"fast lane run {result.get('status')}")


def _timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _summary(direct: list[float], asl: list[float]) -> dict[str, Any]:
    direct_ms = [value * 1000 for value in direct]
    asl_ms = [value * 1000 for value in asl]
    d50, a50 = median(direct_ms), median(asl_ms)
    return {
        "runs_each": len(direct_ms),
        "direct_ms": {"p50": d50, "p95": percentile(direct_ms, 0.95)},
        "asl_ms": {"p50": a50, "p95": percentile(asl_ms, 0.95)},
        "ratio_asl_to_direct_p50": a50 / d50 if d50 else None,
        "interpreter_ms_p50": a50 - d50,
        "interpreter_share_p50": (a50 - d50) / a50 if a50 else None,
    }


def run(scale: float) -> dict[str, Any]:
    import os

    os.environ.setdefault(ToolVariable.HOME, f"/tmp/relay-bench-home-{os.getpid()}")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    from relay.admin import SenderAdmin
    from relay.local.emulator import LocalAws
    from relay.local.targets import TargetServer

    runs = scaled(60, scale, minimum=10)
    results: dict[str, Any] = {}
    with TargetServer() as target, LocalAws(environment={Setting.ALLOW_PRIVATE_TARGETS: "true"}) as local:
        SenderAdmin(local.table_name).create("dev")  # the deliver step signs with the sender's secret
        # Warm up imports, clients, parsed programs.
        for _ in range(5):
            ingest_direct(local, _ingest_input(target.url)[1])
            ingest_asl(local, _ingest_input(target.url)[1])
        direct: list[float] = []
        asl: list[float] = []
        for index in range(runs):
            order = [(direct, ingest_direct), (asl, ingest_asl)]
            for bucket, variant in order if index % 2 == 0 else reversed(order):
                state = _ingest_input(target.url)[1]
                bucket.append(_timed(functools.partial(variant, local, state)))
        results["ingest"] = _summary(direct, asl)

        def prepared() -> dict[str, Any]:
            message_id, state = _ingest_input(target.url)
            ingest_direct(local, state)
            return _claim(local, message_id)

        for _ in range(3):
            deliver_direct(local, prepared())
            deliver_asl(local, prepared())
        direct, asl = [], []
        for index in range(runs):
            deliver_order = [(direct, deliver_direct), (asl, deliver_asl)]
            for bucket, action in deliver_order if index % 2 == 0 else reversed(deliver_order):
                run_payload = prepared()
                bucket.append(_timed(functools.partial(action, local, run_payload)))
        results["delivery_fast_lane"] = _summary(direct, asl)
    return results


def main(argv: list[str] | None = None) -> int:
    return section_main("the local interpreter's share of a run", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
