"""latest.md's capacity section: the headline, what to raise, a table per component, the reconciler."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.common import fmt, table

SCENARIO_COLUMNS = {
    "success_volume": "success at volume",
    "success_batch100": "batches of 100",
    "retried": "retried (503 x3)",
    "slow_lane": "slow lane",
}
NOT_LIMITING = "not limiting"


def _rate(value: float | None) -> str:
    return NOT_LIMITING if value is None else fmt(value, 0)


def _quota(row: Mapping[str, Any]) -> str:
    if row["quota"] is None:
        return "none published" if row["quota_key"] else "-"
    return f"{fmt(row['quota'], 0)} {row['unit']}"


def _source(capacity: Mapping[str, Any], key: str) -> str:
    source = capacity.get("quotas", {}).get(key, {}).get("source")
    return f"[AWS docs]({source})" if source else "Relay (template)"


def capacity_section(capacity: Mapping[str, Any]) -> str:
    if "error" in capacity:
        return f"## Capacity\n\nThe model failed: {capacity['error']}"
    parts = [headline(capacity), raise_table(capacity)]
    parts += component_tables(capacity)
    if "reconciler_round_ms" in capacity:
        parts.append(reconciler_section(capacity["reconciler_round_ms"]))
    if "dev_isolation" in capacity:
        parts.append(dev_isolation_section(capacity["dev_isolation"]))
    parts.append(assumptions(capacity))
    return "\n\n".join(parts)


def headline(capacity: Mapping[str, Any]) -> str:
    limit = capacity.get("bottleneck_limit") or {}
    per_sender = capacity.get("per_sender_max_messages_per_second", {})
    flow = capacity.get("per_target_flow", {})
    ramp = capacity.get("ramp_seconds", {})
    lines = [
        "## Capacity (an account's default quotas, us-east-1)",
        "",
        f"- **{fmt(capacity['max_messages_per_second_default_quotas'], 0)} messages/s** sustained on the success path "
        f"(use per message measured in the cost section's `{capacity['headline_scenario']}`, AWS-like durations). "
        f"First bottleneck: **{capacity['bottleneck']}** ({_quota(limit)}; {fmt(limit.get('use_per_message'), 3)} a "
        f"message; {limit.get('detail', '')}).",
        f"- One target: **{fmt(capacity['per_target_max_permits_per_second'], 0)} permits/s** at most (the flow "
        f"design: {fmt(flow.get('permits_per_sub_bucket'), 0)} permits/s a sub-bucket, "
        f"{fmt(flow.get('rate_writes_per_permit'), 0)} write a permit, "
        f"{fmt(flow.get('partition_write_units_per_second'), 0)} "
        f"WCU/s a partition, a target's rate up to {fmt(flow.get('target_rate_max'), 0)}/s; assumed until "
        "functions/domain/flow.py defines its constants, see below; main's single FLOW item today: about "
        f"{fmt(capacity.get('per_target_flow_today', {}).get('max_permits_per_second'), 0)}/s).",
        f"- One sender: {_rate(per_sender.get('single'))} messages/s one per request "
        f"({per_sender.get('single_limited_by')}), "
        f"{_rate(per_sender.get('batch100'))} in batches of 100 ({per_sender.get('batch100_limited_by')}).",
    ]
    per_target = capacity.get("per_target_max_messages_per_second", {})
    if per_target:
        lines.append(
            "- One target's own keys (its limits and health items): "
            + "; ".join(
                f"{SCENARIO_COLUMNS.get(name, name)} {_rate(entry['max_messages_per_second'])} messages/s"
                + (f" ({entry['limited_by']})" if entry["limited_by"] else "")
                for name, entry in per_target.items()
            )
            + ". The failure paths run with the circuit breaker held closed (bench/cost_run.py); deployed, it "
            "opens after its threshold and pauses the target's messages."
        )
    if ramp:
        slowest = {rate: max(seconds.values()) for rate, seconds in ramp.items()}
        lines.append(
            "- From idle: "
            + ", ".join(
                f"{fmt(seconds, 0)} s to reach {fmt(int(rate))} messages/s" for rate, seconds in slowest.items()
            )
            + " (Lambda adds 1,000 environments per 10 s per function; the SQS event source 300 batches a minute)."
        )
    reconciler = capacity.get("reconciler_round_ms")
    if reconciler:
        many = next(
            key for key in reconciler if key.startswith("senders_") and key != "senders_1" and key[8:].isdigit()
        )
        lines.append(
            f"- Reconciler round: {fmt(reconciler['aws_like_ms']['senders_1'], 0)} ms AWS-like with 1 sender, "
            f"{fmt(reconciler['aws_like_ms'][many], 0)} ms with {fmt(int(many[8:]))}: "
            f"**{fmt(reconciler['ratio_aws_like'], 2)}x** ({fmt(reconciler['ratio'], 2)}x locally; "
            f"goal at most {fmt(reconciler['target_ratio'], 1)}x): "
            + ("meets it." if reconciler["meets_target"] else _missed(reconciler))
        )
    isolation = capacity.get("dev_isolation")
    if isolation:
        lines.append("- " + _isolation_verdict(isolation))
    return "\n".join(lines)


def _isolation_verdict(isolation: Mapping[str, Any]) -> str:
    """One line: the healthy message's time behind a trickling target's batch against the goal."""
    if "error" in isolation:
        return f"`relay dev`, a healthy message behind a trickling target's batch: not measured ({isolation['error']})."
    return (
        f"`relay dev`, a healthy message sent right after 10 messages to a trickling target: delivered "
        f"{fmt(isolation['behind_trickle_seconds'], 3)} s after its 202, idle {fmt(isolation['idle_seconds'], 3)} s "
        f"(**{fmt(isolation['ratio'], 2)}x**; goal: at most {fmt(isolation['allowed_seconds'], 3)} s, 2x idle or "
        "idle + 1 s): " + ("meets it." if isolation["meets_goal"] else "**misses it**.")
    )


def _missed(reconciler: Mapping[str, Any]) -> str:
    if reconciler.get("sweep_complete", True):
        return "**misses it** (why: below)."
    return "**misses it**: a round's sweep did not look at every message, so its time says nothing (why: below)."


def raise_table(capacity: Mapping[str, Any]) -> str:
    rows = []
    for rate, needed in capacity.get("raise_for", {}).items():
        if not needed:
            rows.append([fmt(int(rate)), "nothing", "", "", "", ""])
        for item in needed:
            rows.append(
                [
                    fmt(int(rate)),
                    item["component"],
                    _rate(item["max_messages_per_second"]),
                    f"{fmt(item['quota'], 0)} {item['unit']}" if item["quota"] is not None else "-",
                    item["action"],
                    f"[AWS docs]({item['source']})" if item["source"] else "",
                ]
            )
    return "\n".join(
        [
            "What must change to sustain 1,000 and 10,000 messages/s (success path):",
            "",
            table(["messages/s", "limit", "allows msg/s", "default", "what to do", "source"], rows),
        ]
    )


def component_tables(capacity: Mapping[str, Any]) -> list[str]:
    """One table per service: each limit's quota, the success path's use, and the messages/s it allows
    in every measured scenario."""
    scenarios = {name: data["components"] for name, data in capacity["scenarios"].items()}
    names = [name for name in SCENARIO_COLUMNS if name in scenarios]
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for name in names:
        for row in scenarios[name]:
            entry = by_key.setdefault((row["group"], row["component"]), {"row": row, "rates": {}})
            entry["rates"][name] = row["max_messages_per_second"]
    groups: dict[str, list[list[str]]] = {}
    for (group, component), entry in by_key.items():
        row = entry["row"]
        groups.setdefault(group, []).append(
            [
                component,
                row["scope"],
                _quota(row),
                f"{fmt(row['use_per_message'], 3)}" if row["scope"] != "ceiling" else "-",
                *[_rate(entry["rates"][name]) if name in entry["rates"] else "-" for name in names],
                row["detail"],
                _source(capacity, row["quota_key"]),
            ]
        )
    headers = ["limit", "scope", "default quota", "use per message", *[f"msg/s: {SCENARIO_COLUMNS[n]}" for n in names]]
    return [f"**{group}**\n\n" + table([*headers, "how", "source"], rows) for group, rows in groups.items()]


def reconciler_section(reconciler: Mapping[str, Any]) -> str:
    many = next(key for key in reconciler if key.startswith("senders_") and key[8:].isdigit() and key != "senders_1")
    rows = [
        [
            "1 sender",
            fmt(reconciler["senders_1"], 0),
            fmt(reconciler["aws_like_ms"]["senders_1"], 0),
            ", ".join(fmt(value) for value in reconciler["messages_swept_per_round"]["senders_1"]),
            str(reconciler["window_coverage"]["senders_1"]),
        ],
        [
            f"{fmt(int(many[8:]))} senders",
            fmt(reconciler[many], 0),
            fmt(reconciler["aws_like_ms"][many], 0),
            ", ".join(fmt(value) for value in reconciler["messages_swept_per_round"][many]),
            str(reconciler["window_coverage"][many]),
        ],
    ]
    return "\n".join(
        [
            f"Reconciler round (median of the rounds; {fmt(reconciler['messages_each'])} messages in the sweep's "
            "window "
            "either way; a local budget that lets moto finish each round, each judged against the deployed "
            "budgets at AWS-like speed):",
            "",
            table(["active senders", "round ms", "AWS-like ms", "messages swept per round", "window coverage"], rows),
            "",
            f"Ratio {fmt(reconciler['ratio_aws_like'], 2)}x AWS-like ({fmt(reconciler['ratio'], 2)}x locally), "
            f"goal at most {fmt(reconciler['target_ratio'], 1)}x: {reconciler['finding']}",
        ]
    )


def dev_isolation_section(isolation: Mapping[str, Any]) -> str:
    """The samples behind the headline's `relay dev` line (bench/dev_isolation.py)."""
    if "error" in isolation:
        return "`relay dev` isolation (bench/dev_isolation.py): " + _isolation_verdict(isolation)
    trickle = isolation.get("trickle", {})
    samples = isolation["samples"]
    rows = [
        ["idle relay", fmt(isolation["idle_seconds"], 3), ", ".join(fmt(v, 3) for v in samples["idle_seconds"])],
        [
            f"right after {fmt(trickle.get('messages'))} messages to a trickling target",
            fmt(isolation["behind_trickle_seconds"], 3),
            ", ".join(fmt(v, 3) for v in samples["behind_trickle_seconds"]),
        ],
    ]
    return "\n".join(
        [
            "`relay dev` isolation (bench/dev_isolation.py: one LocalRelay, a healthy message's 202 to its "
            "target's receipt of the request; the trickling target holds each request "
            f"{fmt(trickle.get('answer_ms'))} ms; the two kinds alternate):",
            "",
            table(["healthy message sent", "median s", "samples s"], rows),
            "",
            f"Goal (issue 20): {isolation['goal']} Ratio {fmt(isolation['ratio'], 2)}x, allowed "
            f"{fmt(isolation['allowed_seconds'], 3)} s: "
            + ("met." if isolation["meets_goal"] else "**missed**.")
            + " The batches' messages ended "
            + ", ".join(f"{fmt(count)} {status}" for status, count in trickle.get("batch_statuses", {}).items())
            + f"; at most "
            f"{fmt(trickle.get('peak_pollers'))} dispatcher pollers ran at once.",
        ]
    )


def assumptions(capacity: Mapping[str, Any]) -> str:
    assumed = capacity.get("assumptions", {})
    flow = capacity.get("per_target_flow", {})
    provenance = capacity.get("provenance", {})
    deployment = capacity.get("deployment_limits", {})
    lines = [
        "How the model counts (bench/capacity.py; quotas and their sources: bench/quotas.json):",
        "- A limit allows quota / use-per-message messages a second; `deployment` limits bound the whole "
        "deployment (the smallest is the bottleneck), `sender`/`target` limits one sender's or target's traffic, "
        "`message` keys hold one message's items, `new table` is a new table's first traffic.",
        "- Lambda: an invocation holds an environment for the longer of its AWS-like duration and 1/10 s (an "
        "environment serves at most 10 requests a second); every function of the account shares the concurrency. "
        "The retried and slow-lane scenarios send one message at a time (SQS batches of one), so their dispatcher "
        "share is a whole invocation a message: pessimistic at volume.",
        f"- {fmt(assumed.get('active_senders'))} senders sending evenly: {assumed.get('active_senders_why', '')} "
        "Activity "
        "items and the signing-secret cache miss once per sender, period and warm container (the fewest containers "
        "the rate needs).",
        "- Per target (an assumption, the design being built; sources: "
        + "; ".join(f"{name}: {source}" for name, source in flow.get("sources", {}).items())
        + f"). Model: {flow.get('model', '')}.",
        f"- The deployment's own limits: {', '.join(f'{k} {v}' for k, v in deployment.items())}.",
        "- Inputs: " + "; ".join(f"{name}: {source}" for name, source in provenance.items()) + ".",
    ]
    return "\n".join(lines)
