"""Markdown tables from the collected results (printed by `make bench`, saved as latest.md)."""

from __future__ import annotations

from typing import Any

from bench.common import fmt, table

SCENARIO_TITLES = {
    "success": "success (200 first try)",
    "retried": "retried (503 x3, then 200)",
    "slow_lane": "slow lane (always 500)",
}


def _mb(kb: int | None) -> str:
    return fmt(kb / 1024, 0) if kb else "-"


def _bytes(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:,.2f} MB"
    return f"{value / 1000:,.1f} kB"


def machine_section(results: dict[str, Any]) -> str:
    machine = results["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in results.get("versions", {}).items())
    return "\n".join(
        [
            "# Relay benchmarks",
            "",
            f"- Date: {machine['date']}; BENCH_SCALE={fmt(results['bench_scale'], 2)}; "
            f"total {fmt(results['seconds'], 0)} s",
            f"- Machine: {machine['cpu']}, {machine['cores']} cores, {fmt(machine['memory_gb'])} GB RAM, "
            f"{machine['implementation']} {machine['python']}, {machine['platform']}",
            f"- Versions: {versions}",
            "- One run on a shared, noisy machine: read medians and ratios, not single samples.",
        ]
    )


def throughput_section(data: dict[str, Any]) -> str:
    rows = []
    for level in data["levels"]:
        accept, delivered = level["accept_latency_ms"], level["accept_to_delivered_ms"]
        others = sum(count for status, count in level["statuses"].items() if status != "202")
        rows.append(
            [
                level["concurrency"],
                level["messages"],
                fmt(level["accepted_per_second"]),
                fmt(level["delivered_per_second"]),
                f"{fmt(accept['p50'], 0)} / {fmt(accept['p95'], 0)} / {fmt(accept['p99'], 0)}",
                f"{fmt(delivered['p50'], 0)} / {fmt(delivered['p95'], 0)} / {fmt(delivered['p99'], 0)}",
                f"{level['delivered']}/{level['accepted']}",
                _mb(level["relay_memory_kb"].get("VmHWM")),
                others,
            ]
        )
    headers = [
        "senders",
        "messages",
        "accepted/s",
        "delivered/s",
        "accept ms p50/p95/p99",
        "accept→delivered ms p50/p95/p99",
        "delivered",
        "relay peak RSS MB",
        "non-202",
    ]
    start = data.get("relay_memory_at_start_kb", {})
    return "\n".join(
        [
            "## Throughput and latency (`relay dev` over HTTP, 1 KB messages, target answers 200)",
            "",
            table(headers, rows),
            "",
            f"`relay dev` ran as a subprocess ({data['relay']}); RSS after start {_mb(start.get('VmRSS'))} MB. "
            "Accept latency: request sent -> 202 read; accept→delivered: 202 read -> the target got the "
            "request (can be negative when delivery beats the response). Everything (HTTP server, moto, "
            "the interpreter, the handlers) shares one Python process and its GIL.",
        ]
    )


def overhead_section(data: dict[str, Any]) -> str:
    rows = []
    for name, title in (
        ("ingest", "ingest (validate → dedup → store → enqueue)"),
        ("delivery_fast_lane", "fast lane (one delivery)"),
    ):
        entry = data[name]
        rows.append(
            [
                title,
                entry["runs_each"],
                fmt(entry["direct_ms"]["p50"]),
                fmt(entry["asl_ms"]["p50"]),
                f"{fmt(entry['ratio_asl_to_direct_p50'], 2)}x",
                f"{fmt(entry['interpreter_ms_p50'])} ms ({fmt(100 * entry['interpreter_share_p50'], 0)}%)",
            ]
        )
    return "\n".join(
        [
            "## Orchestration overhead (the local ASL interpreter)",
            "",
            table(
                ["path", "runs each", "handlers direct p50 ms", "through ASL p50 ms", "ratio", "interpreter share"],
                rows,
            ),
            "",
            "The same handlers through LocalAws.invoke with the machine's Choice logic in Python, versus the "
            "same input through moto's interpreter (parsed programs cached), alternating message by message.",
        ]
    )


def coldstart_section(data: dict[str, Any]) -> str:
    floor = data["floor"]
    rows: list[list[Any]] = [
        [f"`import {floor['module']}` (floor)", fmt(floor["median_ms"], 0), "1.00x", "-", "1.00x", "-", "-"]
    ]
    for handler in data["handlers"]:
        costs = ", ".join(
            f"{entry['package']} {fmt(entry['self_ms'], 0)}" for entry in handler["above_floor_by_package"][:3]
        )
        rows.append(
            [
                handler["handler"].removeprefix("functions.").removesuffix(".handler"),
                fmt(handler["median_ms"], 0),
                f"{fmt(handler['ratio_to_floor'], 2)}x",
                "pass" if handler["passes"] else "FAIL",
                f"{fmt(handler.get('ratio_of_minimums'), 2)}x",
                fmt(handler["compile_ms_without_bytecode"], 0),
                costs,
            ]
        )
    failing = [h["handler"] for h in data["handlers"] if not h["passes"]]
    verdict = (
        "All handlers are within the target."
        if not failing
        else f"{len(failing)} of {len(data['handlers'])} handlers miss the target."
    )
    heavy: dict[str, list[str]] = {}
    for handler in data["handlers"]:
        for module in handler["heaviest_modules"][:1]:
            if module["self_ms"] >= 200:
                heavy.setdefault(module["module"], []).append(handler["handler"].split(".")[1])
    notes = [f"`{module}` alone ({', '.join(names)})" for module, names in heavy.items()]
    return "\n".join(
        [
            f"## Cold start: handler import time (median of {data['runs_per_module']} fresh interpreters)",
            "",
            table(
                [
                    "function",
                    "import ms (median)",
                    "vs floor",
                    f"≤ {fmt(data['ratio_target'], 1)}x",
                    "fastest vs fastest",
                    "+ compile ms without .pyc",
                    "largest self time above the floor (ms, by package; -X importtime)",
                ],
                rows,
            ),
            "",
            f"{verdict} Judged on medians; the fastest-run ratio shows how close a borderline result is "
            "(noise only adds time). "
            f"Import path: {data['import_path']}; Powertools tracing on, as deployed. "
            + (f"Single heaviest import: {'; '.join(notes)}. " if notes else "")
            + "The last-but-one column is what compiling the handler's modules from source costs on top, "
            "because the code asset and the layer ship without bytecode (Lambda cannot write it to /opt or /var/task).",
        ]
    )


def assets_section(data: dict[str, Any]) -> str:
    rows = [
        [name, _bytes(asset["zipped"]), _bytes(asset["unzipped"]), asset.get("note", "staged now")]
        for name, asset in data["assets"].items()
    ]
    verdict = "pass" if data["passes"] else "FAIL"
    return "\n".join(
        [
            "## Deployment assets",
            "",
            table(["asset", "zipped", "unzipped", "source"], rows),
            "",
            f"Largest zipped asset {_bytes(data['largest_zipped'])} against a target under "
            f"{_bytes(data['target_bytes'])}: **{verdict}**.",
        ]
    )


def _item_key(item: dict[str, Any]) -> str:
    return f"{item['service']}: {item['item']}"


def cost_section(data: dict[str, Any]) -> str:
    scenarios = data["scenarios"]
    names = [name for name in ("success", "retried", "slow_lane") if name in scenarios]
    keys = [_item_key(item) for item in scenarios[names[0]]["line_items"]]
    groups = {_item_key(item): item["group"] for item in scenarios[names[0]]["line_items"]}
    by_scenario = {name: {_item_key(item): item for item in scenarios[name]["line_items"]} for name in names}
    rows: list[list[Any]] = []
    for key in keys:
        rows.append(
            [key + (" *" if groups[key] == "observability" else "")]
            + [fmt(by_scenario[name][key]["usd_per_million"], 2) for name in names]
        )
    for group, title in (
        ("core", "**total, request path**"),
        ("observability", "total, observability *"),
        ("all", "**total, all**"),
    ):
        rows.append([title] + [f"{fmt(scenarios[name]['usd_per_million'][group], 2)}" for name in names])
    success = scenarios.get("success")
    parts = [
        "## Cost per million messages (us-east-1, 1 KB messages, counted in local runs)",
        "",
        table(["line item ($ per million messages)"] + [SCENARIO_TITLES[name] for name in names], rows),
        "",
        "Runs: "
        + "; ".join(
            f"{SCENARIO_TITLES[name]}: {scenarios[name]['messages']} messages, outcomes "
            f"{', '.join(f'{k} x{v}' for k, v in scenarios[name]['outcomes'].items())}"
            + ("" if scenarios[name]["as_expected"] else " (NOT as expected)")
            for name in names
        )
        + ". Status/attempts per message. * observability: X-Ray modeled, logs partly counted; see the assumptions.",
    ]
    peers = data.get("peers", {})
    if success:
        core, everything = success["usd_per_million"]["core"], success["usd_per_million"]["all"]
        peer_text = ", ".join(f"{name} ${fmt(price, 2)}" for name, price in peers.items())
        verdict = "met" if core < 10 else "NOT met"
        parts += [
            "",
            f"**Success path: ${fmt(core, 2)} per million on the request path (${fmt(everything, 2)} with logs and "
            f"X-Ray), against {peer_text}. Target under $10: {verdict}"
            + ("" if everything < 10 or core >= 10 else " for the request path, not with observability")
            + ".**",
            "",
            dominant_items(success),
            "",
            usage_table(success),
            "",
            writes_table(success),
        ]
    check = data.get("slow_lane_check")
    if check:
        parts += [
            "",
            f"Slow lane, default policy ({check['default_policy_attempts'].get('inline', 0)} inline + "
            f"{check['default_policy_attempts']['fast']} fast + "
            f"{check['default_policy_attempts']['slow']} slow attempts, "
            f"first wait {check['slow_lane_initial_wait_seconds']} s, "
            f"horizon up to {fmt(check['slow_lane_max_horizon_hours'])} h): Standard transitions per message "
            f"measured {fmt(check['standard_transitions_measured'], 0)}, from retry_schedule "
            f"{check['standard_transitions_arithmetic']} (Wait + Deliver + retries + MarkFailed); "
            f"fast-lane retry waits {', '.join(fmt(w, 0) for w in check['fast_lane_waits_seconds'])} s "
            + ("with FULL jitter (expected half) " if check["fast_lane_full_jitter"] else "")
            + "added to Express duration.",
        ]
    parts += ["", retry_schedule_cost_text(data), "", tracing_table(scenarios, names), "", assumptions_list(data)]
    return "\n".join(parts)


def retry_schedule_cost_text(data: dict[str, Any]) -> str:
    """The retry schedule's Step Functions price per million (bench/cost_model.retry_schedule_cost)."""
    cost = data.get("retry_schedule_cost")
    if not cost:
        return ""
    return (
        f"Retry schedule, Step Functions only (arithmetic from retry_schedule): per million retried messages "
        f"${fmt(cost['retried_usd_per_million'], 2)} "
        f"(Express request ${fmt(cost['fast_express_request_usd_per_million'], 2)}"
        f" + {cost['fast_retries']} fast-lane waits, expected {fmt(cost['fast_wait_expected_seconds'])} s of Express "
        f"duration ${fmt(cost['fast_wait_expected_usd_per_million'], 2)}, at most "
        f"${fmt(cost['fast_wait_max_usd_per_million'], 2)}); per million slow-lane messages "
        f"${fmt(cost['slow_transitions_usd_per_million'], 2)} ({cost['slow_transitions']} Standard transitions, "
        f"{cost['slow_attempts']} attempts)."
    )


def tracing_table(scenarios: dict[str, Any], names: list[str]) -> str:
    """What each `relay.tracing` mode costs: the Step Functions execution logs, and the total with them."""
    if not all("tracing" in scenarios[name] for name in names):
        return ""
    modes = [cost["mode"] for cost in scenarios[names[0]]["tracing"]]
    by_mode = {name: {cost["mode"]: cost for cost in scenarios[name]["tracing"]} for name in names}
    rows = []
    for mode in modes:
        rows.append(
            [f"`{mode}`: Step Functions logs, bytes per message"]
            + [fmt(by_mode[name][mode]["step_functions_log_bytes"], 0) for name in names]
        )
        rows.append(
            [f"`{mode}`: Step Functions logs $"]
            + [fmt(by_mode[name][mode]["step_functions_logs_usd_per_million"], 2) for name in names]
        )
        rows.append(
            [f"**`{mode}`: total, all**"] + [fmt(by_mode[name][mode]["all_usd_per_million"], 2) for name in names]
        )
    machines = scenarios[names[0]]["details"].get("step_functions_log_bytes_per_message_by_machine", {})
    split = "; ".join(
        f"{machine} {', '.join(f'{mode} {fmt(size, 0)} B' for mode, size in sizes.items())}"
        for machine, sizes in machines.items()
    )
    return "\n".join(
        [
            "Tracing in the Step Functions console (`relay.tracing`), $ per million messages: the execution "
            "history events each mode logs, measured from the runs' histories (Express machines with execution "
            "data, at ERROR for `errors` and ALL for `all`; the Standard slow lane at ERROR without data), "
            "serialised as CloudWatch Logs records (+26 B each), lambda:invoke results with the SDK metadata "
            "AWS adds, at the CloudWatch Logs ingestion price.",
            "",
            table(["mode"] + [SCENARIO_TITLES[name] for name in names], rows),
            "",
            f"By machine, per message, {SCENARIO_TITLES[names[0]]}: {split}.",
        ]
    )


def dominant_items(scenario: dict[str, Any]) -> str:
    items = sorted(scenario["line_items"], key=lambda item: item["usd_per_million"], reverse=True)
    total = scenario["usd_per_million"]["all"] or 1.0
    text = ", ".join(
        f"{item['service']} {item['item']} ${fmt(item['usd_per_million'], 2)} "
        f"({fmt(100 * item['usd_per_million'] / total, 0)}%)"
        for item in items[:5]
    )
    return f"Largest items on the success path: {text}."


def usage_table(scenario: dict[str, Any]) -> str:
    usage = scenario["usage_per_message"]
    details = scenario["details"]
    wall = details["lambda_wall_ms_per_invocation"]
    rows = []
    for name, invocations in usage["lambda_invocations"].items():
        billed = usage["lambda_billed_ms"].get(name, 0.0)
        per_call = wall.get(name)
        rows.append(
            [
                f"Lambda {name}",
                fmt(invocations, 3),
                f"{fmt(billed / invocations if invocations else 0.0, 0)} ms billed each"
                + (f" (local wall {fmt(per_call, 1)} ms)" if per_call else ""),
            ]
        )
    for machine, entry in details["executions_per_message"].items():
        rows.append(
            [
                f"{entry['type'].title()} run {machine}",
                fmt(entry["runs"], 2),
                f"{fmt(entry['transitions'], 1)} transitions, {fmt(entry['retries'], 1)} retries, "
                f"local {fmt(entry['local_seconds'] * 1000, 0)} ms",
            ]
        )
    rows += [
        ["DynamoDB write units", fmt(usage["dynamodb_write_units"], 2), "table + GSI entries, per the table below"],
        [
            "DynamoDB read units",
            fmt(usage["dynamodb_read_units"], 2),
            "; ".join(f"{r[0]} {r[1]} {fmt(r[2], 2)}" for r in details["dynamodb_reads_by_call"]),
        ],
        [
            "SQS requests",
            fmt(usage["sqs_requests"], 2),
            "; ".join(f"{r[0]} {r[1]} {fmt(r[2], 2)}" for r in details["sqs_requests_by_call"]),
        ],
        [
            "stored bytes until TTL",
            fmt(scenario["storage_bytes_per_message"], 0),
            "items + GSI entries, +100 B overhead each",
        ],
        [
            "CloudWatch Logs bytes",
            fmt(usage["log_bytes"], 0),
            "; ".join(f"{k} {fmt(v, 0)}" for k, v in details["log_bytes_per_message"].items()),
        ],
    ]
    return "\n".join(["Usage per message on the success path:", "", table(["what", "per message", "detail"], rows)])


def writes_table(scenario: dict[str, Any]) -> str:
    rows = [[row[0], row[1], row[2], fmt(row[3], 2)] for row in scenario["details"]["dynamodb_writes_by_call"]]
    return "\n".join(
        [
            "DynamoDB write units per message on the success path, by call:",
            "",
            table(["function", "call", "table or index", "WRU"], rows),
        ]
    )


def assumptions_list(data: dict[str, Any]) -> str:
    a = data["assumptions"]
    prices = data["prices"]
    fixed = data.get("fixed_monthly", {})
    memory = data.get("lambda_memory", {})
    lines = [
        "Assumptions and sources:",
        f"- Prices: bench/prices.json ({prices['region']}, taken {prices['taken']}; figures from NOTES.md, "
        "extras marked there). Lambda arm64 at the deployed "
        f"{memory.get('default_mb')} MB (stacks/constructs/functions.py; overrides in: "
        f"{', '.join(memory.get('files_setting_memory_size') or []) or 'none'}).",
        "- Lambda and Express durations are local wall times (in-process moto answers faster than DynamoDB "
        "does; expect longer on AWS). Express runs billed per started 100 ms at 64 MB; fast-lane retry "
        "waits added back from retry_schedule (expected value).",
        "- Each message was sent after the previous one finished, as at low volume: SQS batches of one, so "
        "one dispatcher call and one receive + one delete per message (batches of up to 10 cut those at volume).",
        f"- Authorizer: API Gateway caches each token's answer {a['authorizer_cache_seconds']} s: "
        f"{a['active_tokens']} token at {fmt(a['messages_per_month'], 0)} messages/month; its invocation was "
        "measured once locally and amortised.",
        f"- Secrets Manager: one GetSecretValue per warm deliver container per {a['secret_cache_seconds']} s "
        f"(Powertools cache), {a['warm_deliver_containers']} warm containers, {a['senders']} sender, "
        f"{fmt(a['messages_per_month'], 0)} messages/month. Secret storage ($0.40/secret-month) is per "
        "sender, not per message.",
        f"- CloudWatch Logs *: bytes the functions printed (Powertools at INFO, EMF metrics on, as deployed) + "
        f"{a['lambda_platform_log_bytes_per_invocation']} B of Lambda platform lines per invocation + "
        f"{a['api_gateway_access_log_bytes_per_request']} B API Gateway access log line + the Step Functions "
        "execution logs of the default `relay.tracing: errors` (measured, see the tracing table). Ingestion only.",
        f"- X-Ray *: {a['xray_traces_per_message']} traces per message, sampled fraction "
        f"{a['xray_sampled_fraction']} (the default rule records 1 request/s plus 5%: at 1M messages/month, "
        "0.4 messages/s, nearly everything is recorded; at 20+ messages/s it tends to 5%, i.e. ~$0.50/M). "
        "Free tier ignored.",
        f"- DynamoDB storage: items until their TTL ({a['dynamodb_ttl_days']} days), priced per GB-month.",
        f"- Not per message (fixed per month): reconciler ${fmt(fixed.get('reconciler_usd_per_month', 0.0), 2)} "
        f"({fixed.get('reconciler_assumption', '')}), SQS idle polling "
        f"${fmt(fixed.get('sqs_idle_polling_usd_per_month', 0.0), 2)} "
        f"({fixed.get('sqs_idle_polling_assumption', '')}).",
    ]
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    sections = results["sections"]
    parts = [machine_section(results)]
    renderers = (
        ("throughput", throughput_section),
        ("overhead", overhead_section),
        ("coldstart", coldstart_section),
    )
    for name, renderer in renderers:
        parts.append(_section(sections, name, renderer))
    if "coldstart" in sections and "error" not in sections["coldstart"]:
        parts.append(assets_section(sections["coldstart"]["asset_sizes"]))
    parts.append(_section(sections, "cost", cost_section))
    return "\n\n".join(part for part in parts if part) + "\n"


def _section(sections: dict[str, Any], name: str, renderer: Any) -> str:
    if name not in sections:
        return ""
    data = sections[name]
    if "error" in data:
        return f"## {name}\n\nFailed: {data['error']}"
    text: str = renderer(data)
    return text
