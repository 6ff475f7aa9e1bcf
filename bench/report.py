"""Markdown tables from the collected results (printed by `make bench`, saved as latest.md)."""

from __future__ import annotations

from typing import Any

from bench.capacity_report import capacity_section
from bench.common import fmt, table

SCENARIO_TITLES = {
    "success_single": "success, one message at a time (200 first try)",
    "success_volume": "success at 50 messages/s",
    "success_batch100": "success, POST /messages/batch of 100",
    "retried": "retried (503 x3, then 200)",
    "slow_lane": "slow lane (always 500)",
    "scheduled_short": "delayed, short: the queue's DelaySeconds (priced for a 300 s wait)",
    "scheduled_long": "delayed, long: the scheduler's shards and a sweep (priced for a 1-day wait)",
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
    names = [name for name in SCENARIO_TITLES if name in scenarios]
    skipped = data.get("skipped", {})
    parts = [
        "## Cost per million messages (us-east-1, 1 KB messages, counted in local runs)",
        "",
        summary_table(data),
        "",
        scheduled_text(data),
        "",
        "Request path: the services a message's journey bills (API Gateway, Lambda, Step Functions, "
        "DynamoDB reads, writes and storage, SQS, Secrets Manager). All-in adds CloudWatch Logs (function "
        "output, platform lines, access log, Step Functions logs at `stacks.tracing: errors`), the EMF metric "
        "lines, X-Ray, point-in-time recovery, data transfer to the targets, the authorizer's cache misses "
        "and the fixed monthly costs spread over the month's messages. AWS-like: the time spent in moto and "
        "the local target replaced by typical AWS latencies (see the assumptions); local: the wall times "
        "measured here.",
    ]
    success = scenarios.get("success_single")
    if success:
        parts += ["", verdict(success, data.get("peers", {}))]
    for name in names:
        parts += ["", scenario_section(name, scenarios[name])]
    for name, reason in skipped.items():
        parts += ["", f"### {SCENARIO_TITLES.get(name, name)}", "", f"Not run: {reason}."]
    if success:
        parts += ["", usage_table(success)]
    custom = data.get("custom_metrics")
    if custom:
        parts += [
            "",
            f"Custom metrics (fixed, not per message): {custom['count']} distinct EMF metrics in these runs, "
            f"${fmt(custom['usd_per_month'], 2)} a month at $0.30 per metric-month: "
            + ", ".join(f"`{metric}`" for metric in custom["metrics"])
            + ".",
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


def summary_table(data: dict[str, Any]) -> str:
    rows = []
    for name, title in SCENARIO_TITLES.items():
        cost = data.get("cost_per_million", {}).get(name)
        scenario = data["scenarios"].get(name)
        if cost is None and scenario is not None:  # the delayed ones: in cost_per_million.scheduled
            cost = {
                "aws_like": scenario["usd_per_million_aws_like"],
                "local_times": scenario["usd_per_million_local_times"],
            }
        if cost is None or scenario is None:
            if name in data.get("skipped", {}) or name in data.get("cost_per_million", {}):
                rows.append([f"`{name}`", title, "null", "null", "null", "null", "-"])
            continue
        writes = scenario["details"]["dynamodb_write_units_per_message"]
        rows.append(
            [
                f"`{name}`",
                title,
                f"**{fmt(cost['aws_like']['request_path'], 2)}**",
                fmt(cost["aws_like"]["all_in"], 2),
                fmt(cost["local_times"]["request_path"], 2),
                fmt(cost["local_times"]["all_in"], 2),
                f"{fmt(writes['total'], 2)} ({fmt(writes['table'], 2)} + {fmt(writes['indexes'], 2)})",
            ]
        )
    return table(
        [
            "scenario",
            "",
            "request path, AWS-like $/M",
            "all-in, AWS-like $/M",
            "request path, local times $/M",
            "all-in, local times $/M",
            "WRU per message (table + indexes)",
        ],
        rows,
    )


def scheduled_text(data: dict[str, Any]) -> str:
    """`cost_per_million.scheduled`: the delayed paths, their extra over success_single, the long path
    at other horizons and the scheduler's sweeps (bench/cost_run.py scheduled_summary)."""
    scheduled = data.get("cost_per_million", {}).get("scheduled")
    if not scheduled:
        return ""
    extra, goal = scheduled["extra_over_success_single"], scheduled["goal_extra_usd_per_million"]
    short, long = scheduled["short_delay"], scheduled["long_delay"]
    per_day, sweeps = scheduled["long_delay_per_day_waiting"], scheduled["scheduler_sweeps"]
    horizons = ", ".join(
        f"{days} days ${fmt(cost['request_path'], 2)} (${fmt(cost['all_in'], 2)})"
        for days, cost in scheduled["long_delay_by_horizon_days"].items()
        if days != "1"
    )
    per_sweep = sweeps["per_sweep"]
    lead = data.get("assumptions", {}).get("compressed_queue_lead_seconds")

    def verdict_for(label: str) -> str:
        return "met" if scheduled["goal_met"][label] else "NOT met"

    return (
        f"**Scheduled messages (`cost_per_million.scheduled`, AWS-like, request path (all-in)):** a short delay "
        f"(the queue's DelaySeconds) ${fmt(short['request_path'], 2)} (${fmt(short['all_in'], 2)}), "
        f"**+${fmt(extra['short_delay']['request_path'], 2)}** over success_single "
        f"(+${fmt(extra['short_delay']['all_in'], 2)}); a long one (the scheduler's shards, then a sweep) "
        f"${fmt(long['request_path'], 2)} (${fmt(long['all_in'], 2)}) for a 1-day wait, "
        f"**+${fmt(extra['long_delay']['request_path'], 2)}** (+${fmt(extra['long_delay']['all_in'], 2)}). "
        f"Goal, about ${fmt(goal, 2)} per million on top: short {verdict_for('short_delay')}, long "
        f"{verdict_for('long_delay')}. Each day a message waits adds ${fmt(per_day['request_path'], 4)} "
        f"(${fmt(per_day['all_in'], 4)} with point-in-time recovery) per million: what it stored at acceptance is "
        f"kept until its due time, from which its TTL counts; long delay at {horizons}. The scheduler's sweeps "
        f"(one a minute whatever is due: {fmt(per_sweep['queries'], 0)} shard queries, "
        f"{fmt(per_sweep['read_units'], 1)} RRU, {fmt(per_sweep['billed_ms'], 0)} ms AWS-like each) cost "
        f"${fmt(sweeps['request_path_usd_per_month'], 3)} a month on the request path, spread over "
        f"{fmt(sweeps['amortised_over_messages_per_month'], 0)} scheduled messages a month: "
        f"${fmt(sweeps['request_path_usd_per_million'], 3)} per million (their logs and traces in all-in). Every "
        f"deployment pays them, scheduled messages or not; the other scenarios do not carry them. The long path runs "
        f"with the queue's lead compressed to {fmt(lead, 0)} s (300 s deployed): the same steps and calls in seconds."
    )


def verdict(success: dict[str, Any], peers: dict[str, float]) -> str:
    core = success["usd_per_million_aws_like"]["request_path"]
    everything = success["usd_per_million_aws_like"]["all_in"]
    writes = success["details"]["dynamodb_write_units_per_message"]["total"]
    peer_text = ", ".join(f"{name} ${fmt(price, 2)}" for name, price in peers.items())
    return (
        f"**Success path, one message at a time: ${fmt(core, 2)} per million on the request path "
        f"(${fmt(everything, 2)} all-in, AWS-like times), against {peer_text}. Target under $10: "
        f"{'met' if core < 10 else 'NOT met'}. Writes: {fmt(writes, 2)} WRU per message including indexes "
        f"(target at most 5: {'met' if writes <= 5 + 1e-9 else 'NOT met'}).**\n\n" + dominant_items(success)
    )


def scenario_section(name: str, scenario: dict[str, Any]) -> str:
    local = {_item_key(item): item for item in scenario["line_items"]}
    rows: list[list[Any]] = []
    for item in scenario["line_items_aws_like"]:
        key = _item_key(item)
        marker = {"observability": " *", "other": " †"}.get(item["group"], "")
        rows.append(
            [
                key + marker,
                f"{item['quantity']:,.4g} {item['unit']}",
                fmt(local[key]["usd_per_million"], 2),
                fmt(item["usd_per_million"], 2),
            ]
        )
    local_totals, aws_totals = scenario["usd_per_million_local_times"], scenario["usd_per_million_aws_like"]
    rows += [
        [
            "**request path**",
            "",
            f"**{fmt(local_totals['request_path'], 2)}**",
            f"**{fmt(aws_totals['request_path'], 2)}**",
        ],
        ["**all-in**", "", f"**{fmt(local_totals['all_in'], 2)}**", f"**{fmt(aws_totals['all_in'], 2)}**"],
    ]
    details = scenario["details"]
    outcomes = ", ".join(f"{k} x{v}" for k, v in scenario["outcomes"].items())
    facts = [
        f"{scenario['messages']} messages in {scenario['api_requests']} API requests "
        f"({scenario['mode']}; outcomes {outcomes}"
        + ("" if scenario["as_expected"] else ", NOT as expected")
        + f"); local rate {fmt(scenario['local_messages_per_second'], 1)} messages/s; priced at "
        f"{fmt(scenario['messages_per_second_assumed'], 2)} messages/s",
        f"messages per dispatcher invocation {fmt(details.get('messages_per_dispatcher_invocation'), 2)}",
        f"authorizer invocations per message {details['authorizer_invocations_per_message']:.2e}",
        "X-Ray sampled "
        + ", ".join(f"{side} {fmt(100 * share, 1)}%" for side, share in details["xray_sampled_fraction"].items()),
        f"EMF {fmt(details['emf_metric_lines_per_message'], 2)} lines, "
        f"{fmt(details['emf_metric_bytes_per_message'], 0)} B per message",
        f"to targets {fmt(details['data_transfer']['http_bytes_per_message'], 0)} HTTP bytes in "
        f"{fmt(details['data_transfer']['target_requests_per_message'], 2)} requests and "
        f"{fmt(details['data_transfer']['new_connections_per_message'], 2)} new connections per message",
        f"stored {fmt(scenario['table_bytes_per_message'], 0)} B in the table + "
        f"{fmt(scenario['index_bytes_per_message'], 0)} B in indexes per message",
    ]
    return "\n".join(
        [
            f"### `{name}`: {SCENARIO_TITLES[name]}",
            "",
            table(["line item", "per message (AWS-like)", "local times $/M", "AWS-like $/M"], rows),
            "",
            "* observability, † other all-in extras. " + "; ".join(facts) + ".",
            "",
            writes_table(scenario),
        ]
    )


def tracing_table(scenarios: dict[str, Any], names: list[str]) -> str:
    """What each `stacks.tracing` mode costs: the Step Functions execution logs, and the total with them."""
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
            "Tracing in the Step Functions console (`stacks.tracing`), $ per million messages: the execution "
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
    items = sorted(
        scenario.get("line_items_aws_like", scenario["line_items"]),
        key=lambda item: item["usd_per_million"],
        reverse=True,
    )
    total = scenario.get("usd_per_million_aws_like", {}).get("all_in") or scenario["usd_per_million"]["all"] or 1.0
    text = ", ".join(
        f"{item['service']} {item['item']} ${fmt(item['usd_per_million'], 2)} "
        f"({fmt(100 * item['usd_per_million'] / total, 0)}%)"
        for item in items[:5]
    )
    return f"Largest items on the success path (AWS-like times, share of all-in): {text}."


def usage_table(scenario: dict[str, Any]) -> str:
    usage = scenario["usage_per_message"]
    details = scenario["details"]
    wall = details["lambda_wall_ms_per_invocation"]
    aws_like = details.get("lambda_aws_like_ms_per_invocation", {})
    rows = []
    for name, invocations in usage["lambda_invocations"].items():
        billed = usage["lambda_billed_ms"].get(name, 0.0)
        per_call = wall.get(name)
        rows.append(
            [
                f"Lambda {name}",
                fmt(invocations, 3),
                f"{fmt(billed / invocations if invocations else 0.0, 0)} ms billed each"
                + (f" (local wall {fmt(per_call, 1)} ms" if per_call else "")
                + (f"; AWS-like {fmt(aws_like[name], 1)} ms)" if name in aws_like else ")" if per_call else ""),
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
    """WRU per message by function and operation, one column per table/index, with totals."""
    breakdown = scenario["details"]["dynamodb_write_units_per_message"]
    targets = list(breakdown["by_table_or_index"])
    rows: list[list[Any]] = []
    for call, units in breakdown["by_call"].items():
        rows.append(
            [call]
            + [fmt(units[target], 2) if target in units else "-" for target in targets]
            + [fmt(sum(units.values()), 2)]
        )
    rows.append(
        ["**total**"]
        + [f"**{fmt(breakdown['by_table_or_index'][target], 2)}**" for target in targets]
        + [f"**{fmt(breakdown['total'], 2)}**"]
    )
    return "\n".join(
        [
            f"DynamoDB write units per message by call (table {fmt(breakdown['table'], 2)} + indexes "
            f"{fmt(breakdown['indexes'], 2)} = {fmt(breakdown['total'], 2)} WRU):",
            "",
            table(["function and operation"] + [f"{target} WRU" for target in targets] + ["total WRU"], rows),
        ]
    )


def assumptions_list(data: dict[str, Any]) -> str:
    a = data["assumptions"]
    prices = data["prices"]
    fixed = data.get("fixed_monthly", {})
    memory = data.get("lambda_memory", {})
    latencies = ", ".join(f"{name} {fmt(ms, 0)} ms" for name, ms in a.get("aws_call_latency_ms", {}).items())
    lines = [
        "Assumptions and sources:",
        f"- Prices: bench/prices.json ({prices['region']}, taken {prices['taken']}; figures from NOTES.md, "
        "extras marked there). Lambda arm64 at the deployed "
        f"{memory.get('default_mb')} MB (stacks/constructs/base/functions.py; overrides in: "
        f"{', '.join(memory.get('files_setting_memory_size') or []) or 'none'}).",
        "- Rates: `success_single`, `retried` and `slow_lane` send each message after the previous one "
        f"finished and are priced at {fmt(a['messages_per_month'], 0)} messages/month (0.39/s): SQS batches of "
        f"one. `success_volume` and `success_batch100` are priced at {fmt(a['volume_messages_per_second'], 0)} "
        "messages/s; locally they go as fast as the in-process relay manages (its rate is in each scenario's "
        f"notes), with the SQS event source's batching window ({fmt(a['dispatch_batching_window_seconds'], 0)} s, "
        f"batches of up to {a['dispatch_batch_size']}) played on the local queue worker. What volume changes: "
        "dispatcher invocations, SQS receives and deletes per batch, authorizer cache hits, X-Ray sampling and "
        "the fixed costs spread over more messages; per-message writes do not change. Lambda cold starts "
        "(INIT, billed since 2025-08) are not counted: at these rates the containers stay warm.",
        "- Durations, local times: wall times here (moto in-process; the local target answers in ~1 ms). "
        "AWS-like times, per invocation: the wall time minus the time inside emulated AWS calls and the "
        "local target (the handler's own work, measured on this machine, which is no faster than Lambda's "
        "arm64 at 256 MB is likely to be) plus, per call, "
        f"{latencies}; per target request {fmt(a.get('aws_target_request_ms'), 0)} ms (round trips and the "
        "receiver's own time: unknown, a typical webhook figure). Threads of one invocation (the dispatcher "
        "attempts a batch in parallel) count their longest. Express runs: their tasks' AWS-like times plus "
        f"{fmt(a.get('aws_sfn_task_overhead_ms'), 0)} ms per task (Step Functions' lambda:invoke), billed per "
        "started 100 ms at 64 MB; fast-lane retry waits added back from retry_schedule (expected value). "
        "The model is only as good as these latencies: check them against CloudWatch's Duration on a "
        "deployment. Retry waits run at a time scale of "
        f"{a['time_scale']} (the slow lane's horizon in seconds); Standard transitions do not depend on time.",
        f"- Authorizer †: API Gateway caches each token's answer {a['authorizer_cache_seconds']} s; with "
        f"requests at rate r per token a miss is 1 of 1 + r x {a['authorizer_cache_seconds']} requests "
        f"({a['active_tokens']} token). Its invocation (duration, reads) was measured locally on a cache miss.",
        f"- Secrets Manager: one GetSecretValue per warm deliver container per {a['secret_cache_seconds']} s "
        f"(Powertools cache), {a['warm_deliver_containers']} warm containers, {a['senders']} sender, spread over "
        "the scenario's monthly messages. Secret storage ($0.40/secret-month) is per sender, not per message.",
        f"- CloudWatch Logs *: bytes the functions printed (Powertools at INFO, as deployed) + "
        f"{a['lambda_platform_log_bytes_per_invocation']} B of Lambda platform lines per invocation + "
        f"{a['api_gateway_access_log_bytes_per_request']} B API Gateway access log line per API request + the "
        "Step Functions execution logs of the default `stacks.tracing: errors` (measured, see the tracing "
        "table). Ingestion only.",
        "- EMF metric lines *: relay dev drops metrics (relay/local/emulator.py replaces `metrics.add_metric` "
        "with a no-op); the bench undoes that, so each handler prints its EMF line as deployed, and each line "
        "is counted with 26 B of CloudWatch Logs event overhead as log ingestion. The metrics CloudWatch "
        "extracts from them are custom metrics, a fixed monthly cost per metric (above), not per message. "
        "In-process, concurrent invocations share one Powertools Metrics object, so at volume one line can "
        "carry several invocations' metrics: a lower bound there.",
        f"- X-Ray *: a trace per API request and one per dispatcher invocation, each side sampled by the "
        f"default rule ({fmt(a['xray_reservoir_per_second'], 0)} request/s + "
        f"{fmt(100 * a['xray_fixed_rate'], 0)}% of the rest) at its own rate. Free tier ignored.",
        f"- DynamoDB storage: items and index entries until their TTL ({a['dynamodb_ttl_days']} days), per "
        "GB-month. Point-in-time recovery †: billed on the table's size (items, not global secondary "
        "indexes) per GB-month, whatever the 35-day recovery window, so a message costs its table bytes "
        f"for its {a['dynamodb_ttl_days']} days (TTL deletion lag, up to a few days, not counted).",
        "- Data transfer †: the HTTP bytes the local target received (request line, headers, body) + "
        f"{a.get('tcp_ip_bytes_per_request')} B of TCP/IP headers per request + "
        f"{a.get('tls_and_tcp_bytes_per_connection')} B per new connection (TLS 1.3 client handshake, TCP "
        "set-up and tear-down), at $0.09/GB (targets on the internet; the free 100 GB a month ignored). "
        "Local targets are plain HTTP; TLS record overhead (~22 B per record) not counted.",
        f"- Fixed monthly costs †, spread over the scenario's monthly messages: reconciler "
        f"${fmt(fixed.get('reconciler_usd_per_month', 0.0), 2)} ({fixed.get('reconciler_assumption', '')}), "
        f"SQS idle polling ${fmt(fixed.get('sqs_idle_polling_usd_per_month', 0.0), 2)} "
        f"({fixed.get('sqs_idle_polling_assumption', '')}).",
    ]
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    sections = results["sections"]
    parts = [machine_section(results)]
    kept = [f"{name} ({data['kept_from']})" for name, data in sections.items() if data.get("kept_from")]
    if kept:
        parts.append("Kept from earlier runs (`--keep`; each measured on its own date): " + ", ".join(kept) + ".")
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
    if "capacity" in results:
        parts.append(capacity_section(results["capacity"]))
    elif "capacity" in sections and "error" in sections["capacity"]:
        parts.append(f"## capacity\n\nFailed: {sections['capacity']['error']}")
    return "\n\n".join(part for part in parts if part) + "\n"


def _section(sections: dict[str, Any], name: str, renderer: Any) -> str:
    if name not in sections:
        return ""
    data = sections[name]
    if "error" in data:
        return f"## {name}\n\nFailed: {data['error']}"
    text: str = renderer(data)
    return text
