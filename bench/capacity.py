"""Capacity: the sustained messages per second Relay's measured use per message allows at an
account's default quotas, the first bottleneck, and what to raise for 1,000 and 10,000 msg/s.

Why a model: nobody can load a deployment to 10,000 msg/s to find out what breaks first, but every
limit on the way is a quota divided by what one message uses of it, and the bench already counts
that use in real local runs (bench/cost_run.py). This module is the arithmetic only:
- use per message, per cost scenario: Lambda invocations and their AWS-like durations, API
  requests, Step Functions starts and transitions, DynamoDB write and read units by key pattern
  (with the partition keys each pattern spread over), SQS;
- quotas from bench/quotas.json (each with its AWS docs source), and the deployment's own limits
  read from the synthesized template (usage plan, the dispatcher's event source);
- named assumptions (senders active at once, the flow-control design).

A component's limit is quota / use. Scopes: `deployment` limits bound the whole deployment (the
smallest is the bottleneck); `sender` and `target` limits bound one sender's or one target's
traffic; `message` keys hold one message's items (no limit across messages); a `new table` row
is about a new table's first traffic, not the sustained rate; `ceiling` rows bound something else
(API keys: the number of senders). How long scaling from idle takes is `lambda_ramp`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.dev_isolation import summarize as dev_isolation_summary
from functions.contract.indexes import ACTIVITY_SHARDS

QUOTAS_PATH = Path(__file__).resolve().parent / "quotas.json"
INFINITE = math.inf
TARGET_RATES = (1_000, 10_000)
HEADLINE_SCENARIO = "success_volume"
CAPACITY_SCENARIOS = ("success_volume", "success_batch100", "retried", "slow_lane")
# The functions that sign deliveries with the sender's secret (cached per container and sender):
# stacks/constructs/delivery_workflow.py grants them secretsmanager:GetSecretValue (`_grant_attempts`).
SIGNING_FUNCTIONS = ("relay-dispatcher", "relay-deliver")
STORE_FUNCTION = "relay-store"
DISPATCHER_FUNCTION = "relay-dispatcher"
AUTHORIZER_FUNCTION = "relay-authorizer"
# Issue 20's goal for a reconciler round with many senders, against the round with one.
RECONCILER_RATIO_TARGET = 1.5

# Scopes of a limit (see the module docstring).
DEPLOYMENT, SENDER, TARGET, MESSAGE, NEW_TABLE, CEILING = (
    "deployment",
    "sender",
    "target",
    "message",
    "new table",
    "ceiling",
)


# -- DynamoDB key patterns ----------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPattern:
    """What kind of partition a key is: its pattern, whose traffic shares it, and that owner."""

    name: str
    scope: str
    owner: str


def key_pattern(container: str, partition: str, sort: str | None = None) -> KeyPattern:
    """The pattern of a partition key of the relay table ("table") or of one of its indexes.

    Prefix rules follow functions/contract/key_prefixes.py; a suffix after the owner (a shard, a
    sub-bucket `#B<n>`, a slot `#S<n>`) is kept in the name as a placeholder.
    """
    if container != "table":
        return _index_pattern(container, partition)
    parts = partition.split("#")
    head = parts[0] + "#"
    if head == "MSG#":
        kind = {"H": "H (message head)", "C": "C (message content)"}.get(sort or "", "E#<n> (older events)")
        return KeyPattern(f"MSG#<sender>#<message> {kind}", MESSAGE, partition)
    if head == "TARGET#":
        return _target_pattern(partition, sort)
    if head == "ACTIVE#":
        return KeyPattern("ACTIVE#<minute>#<shard> (senders active per minute)", DEPLOYMENT, "deployment")
    if head in ("SENDER#", "REPLAY#"):
        label = "sender record" if head == "SENDER#" else "replay jobs"
        return KeyPattern(f"{head}<sender> ({label})", SENDER, parts[1] if len(parts) > 1 else partition)
    if head == "TOKEN#":
        return KeyPattern("TOKEN#<hash> (token)", MESSAGE, partition)
    return KeyPattern(f"{parts[0]}#... (unknown)", DEPLOYMENT, "deployment")


def _target_pattern(partition: str, sort: str | None) -> KeyPattern:
    # TARGET#<sender>#<origin>[#<flow item>]: an origin holds no '#'.
    parts = partition.split("#", 3)
    owner = "#".join(parts[1:3])
    if len(parts) > 3:
        infix = parts[3].rstrip("0123456789")
        label = {"B": "flow sub-bucket", "S": "concurrency slot"}.get(infix, "flow item")
        return KeyPattern(f"TARGET#<sender>#<origin>#{infix}<n> ({label})", TARGET, owner)
    return KeyPattern(f"TARGET#<sender>#<origin> {sort or ''}".rstrip(), TARGET, owner)


def _index_pattern(index: str, partition: str) -> KeyPattern:
    parts = partition.split("#")
    if parts[0] == "SENDER" and "STATUS" in parts:
        return KeyPattern(f"{index} SENDER#<sender>#STATUS#<status>", SENDER, parts[1])
    if parts[0] == "SENDER":
        shard = "#<shard>" if len(parts) > 2 else ""
        return KeyPattern(f"{index} SENDER#<sender>{shard}", SENDER, parts[1])
    if parts[0] in ("TOKENS", "TARGETS"):
        return KeyPattern(f"{index} {parts[0]}#<sender>", SENDER, parts[1] if len(parts) > 1 else "")
    if parts[0] == "DUE":
        return KeyPattern(f"{index} DUE#<shard>", DEPLOYMENT, "deployment")
    return KeyPattern(f"{index} {partition.rstrip('0123456789')}", DEPLOYMENT, "deployment")


# -- what one message uses ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PatternUse:
    """One key pattern's share of a message's DynamoDB use, and the keys it spread over."""

    name: str
    container: str
    scope: str
    write_units: float
    read_units: float
    # Partition keys one owner used in the run (a sender's shards, a target's sub-buckets), or the
    # keys of a deployment-wide pattern.
    partitions: int = 1


@dataclass(frozen=True)
class MessageUse:
    """What one message of a scenario uses, from the cost section (AWS-like durations)."""

    scenario: str
    api_requests: float
    invocations: dict[str, float]
    seconds: dict[str, float]  # AWS-like seconds per invocation, by function
    sync_express_runs: float  # StartSyncExecution by the API (ingest)
    async_express_starts: float  # StartExecution of an Express machine (the fast lane)
    standard_starts: float
    standard_transitions: float
    sqs_requests: float
    write_units: dict[str, float]  # the table ("table") and each index
    read_units: dict[str, float]
    patterns: tuple[PatternUse, ...] = ()

    @classmethod
    def from_cost_scenario(cls, name: str, entry: Mapping[str, Any]) -> MessageUse:
        usage, details = entry["usage_per_message_aws_like"], entry["details"]
        messages = max(1, int(entry["messages"]))
        invocations = dict(usage["lambda_invocations"])
        invocations[AUTHORIZER_FUNCTION] = usage.get("authorizer_invocations", 0.0)
        seconds = {fn: ms / 1000 for fn, ms in details.get("lambda_aws_like_ms_per_invocation", {}).items()}
        express_runs = standard_runs = transitions = 0.0
        for execution in details.get("executions_per_message", {}).values():
            if execution["type"] == "EXPRESS":
                express_runs += execution["runs"]
            else:
                standard_runs += execution["runs"]
                transitions += execution["transitions"]
        starts = (
            sum(
                row[-1]
                for row in entry.get("counted", {}).get("aws_calls", [])
                if row[1:3] == ["stepfunctions", "StartExecution"]
            )
            / messages
        )
        async_express = max(0.0, starts - standard_runs)
        patterns = tuple(PatternUse(**row) for row in details.get("dynamodb_key_patterns", []))
        return cls(
            scenario=name,
            api_requests=float(usage["api_requests"]),
            invocations=invocations,
            seconds=seconds,
            sync_express_runs=max(0.0, express_runs - async_express),
            async_express_starts=async_express,
            standard_starts=standard_runs,
            standard_transitions=transitions,
            sqs_requests=float(usage["sqs_requests"]),
            write_units=dict(details["dynamodb_write_units_per_message"]["by_table_or_index"]),
            read_units=_read_units(patterns, float(usage["dynamodb_read_units"])),
            patterns=patterns,
        )


def _read_units(patterns: Sequence[PatternUse], total: float) -> dict[str, float]:
    """Read units by table and index: from the key patterns when the cost run recorded them."""
    if not patterns:
        return {"table": total}
    units: dict[str, float] = {}
    for pattern in patterns:
        units[pattern.container] = units.get(pattern.container, 0.0) + pattern.read_units
    return units


# -- the deployment's own limits ------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentLimits:
    """Relay's own limits, read from the synthesized template and the code."""

    sender_rate_limit: float | None = None  # the usage plan's throttle, per sender's key
    sender_burst_limit: float | None = None
    stage_rate_limit: float | None = None  # a stage-wide throttle, when `relay.apiThrottlingRateLimit` is set
    dispatcher_max_concurrency: int | None = None  # the event source's MaximumConcurrency, when set
    dispatch_batch_size: int = 10
    due_shards: int = 8
    target_rate_max: float = 10_000.0  # the largest ratePerSecond PUT /targets accepts
    secret_cache_seconds: float = 300.0

    @classmethod
    def from_template(cls, template: Mapping[str, Any], **code_facts: Any) -> DeploymentLimits:
        values: dict[str, Any] = dict(code_facts)
        for resource in template.get("Resources", {}).values():
            kind, properties = resource.get("Type"), resource.get("Properties", {})
            if kind == "AWS::ApiGateway::UsagePlan" and properties.get("Throttle"):
                values["sender_rate_limit"] = float(properties["Throttle"]["RateLimit"])
                values["sender_burst_limit"] = float(properties["Throttle"].get("BurstLimit", 0))
            elif kind == "AWS::ApiGateway::Stage":
                rates = [
                    float(item["ThrottlingRateLimit"])
                    for item in properties.get("MethodSettings", [])
                    if "ThrottlingRateLimit" in item and _throttles_messages(item)
                ]
                values["stage_rate_limit"] = min(rates) if rates else None
            elif kind == "AWS::Lambda::EventSourceMapping":
                values["dispatch_batch_size"] = int(properties.get("BatchSize", 10))
                scaling = properties.get("ScalingConfig") or {}
                if "MaximumConcurrency" in scaling:
                    values["dispatcher_max_concurrency"] = int(scaling["MaximumConcurrency"])
        return cls(**values)


def _throttles_messages(method_setting: Mapping[str, Any]) -> bool:
    """A stage's method setting that throttles POST /messages: the stage-wide one (`/*`, `*`) or one
    of the message routes' (other routes, such as the console's, have throttles of their own)."""
    path, method = str(method_setting.get("ResourcePath", "")), str(method_setting.get("HttpMethod", ""))
    if path == "/*":
        return method == "*"
    return path.startswith("/~1messages") and method in ("*", "POST")


# -- the parts of the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """One component's limit: `quota` of `unit`, `use_per_message` of it per message/s."""

    group: str  # the service, one table each in the report
    component: str
    scope: str
    quota_key: str  # into bench/quotas.json ("" for Relay's own settings)
    quota: float | None
    unit: str
    use_per_message: float
    detail: str = ""
    adjustable: bool = True
    # When Relay's own setting is the limit: what to raise (else the AWS quota, by request).
    raise_how: str = ""

    @property
    def max_messages_per_second(self) -> float:
        return rate_limit(self.quota, self.use_per_message)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "max_messages_per_second": _finite(self.max_messages_per_second)}


def rate_limit(quota: float | None, use_per_message: float) -> float:
    """Messages per second a quota allows when each message uses `use_per_message` of it."""
    if quota is None or use_per_message <= 0:
        return INFINITE
    return quota / use_per_message


def _finite(value: float) -> float | None:
    """JSON has no infinity: null means "not limiting"."""
    return None if math.isinf(value) else value


def environment_seconds(use: MessageUse, requests_per_environment: float) -> dict[str, float]:
    """Execution-environment seconds a message holds, by function: its invocations times the longer
    of their duration and 1 / requests_per_environment (one environment serves at most that many
    requests a second, so a 5 ms function still needs one environment per 10 requests/s)."""
    floor = 1.0 / requests_per_environment
    return {fn: count * max(use.seconds.get(fn, 0.0), floor) for fn, count in use.invocations.items() if count > 0}


def quota_value(quotas: Mapping[str, Any], key: str, field_name: str = "value") -> float | None:
    value = quotas[key].get(field_name)
    return None if value is None else float(value)


def _adjustable(quotas: Mapping[str, Any], key: str) -> bool:
    return bool(quotas[key].get("adjustable", True))


def api_gateway_limits(use: MessageUse, quotas: Mapping[str, Any], deployment: DeploymentLimits) -> list[Limit]:
    account = quota_value(quotas, "apigateway_account_rps")
    stage = deployment.stage_rate_limit
    stage_binds = stage is not None and (account is None or stage < account)
    if stage_binds:
        account = stage
    per_request = "1 request per message" if use.api_requests >= 0.5 else f"{use.api_requests:.2f} requests per message"
    return [
        Limit(
            "API Gateway",
            "account throttle (all APIs of the account and Region)",
            DEPLOYMENT,
            "apigateway_account_rps",
            account,
            "requests/s",
            use.api_requests,
            per_request,
            _adjustable(quotas, "apigateway_account_rps"),
            "relay.apiThrottlingRateLimit (cdk.json: the stage throttle)" if stage_binds else "",
        ),
        Limit(
            "API Gateway",
            "usage plan throttle (each sender's API key)",
            SENDER,
            "apigateway_usage_plan",
            deployment.sender_rate_limit,
            "requests/s per key",
            use.api_requests,
            f"burst {deployment.sender_burst_limit:,.0f}; Relay's setting (cdk.json relay.senderRateLimit)"
            if deployment.sender_burst_limit
            else "Relay's setting",
        ),
    ]


def lambda_limits(use: MessageUse, quotas: Mapping[str, Any], deployment: DeploymentLimits) -> list[Limit]:
    per_environment = quota_value(quotas, "lambda_requests_per_environment") or 10.0
    held = environment_seconds(use, per_environment)
    busiest = sorted(held.items(), key=lambda item: -item[1])[:5]
    dispatcher = held.get(DISPATCHER_FUNCTION, 0.0)
    batches = quota_value(quotas, "lambda_sqs_concurrent_batches")
    if deployment.dispatcher_max_concurrency is not None and batches is not None:
        batches = min(batches, float(deployment.dispatcher_max_concurrency))
    cap = (
        f"MaximumConcurrency {deployment.dispatcher_max_concurrency}"
        if deployment.dispatcher_max_concurrency
        else "no MaximumConcurrency"
    )
    return [
        Limit(
            "Lambda",
            "concurrent executions (every function of the account)",
            DEPLOYMENT,
            "lambda_concurrent_executions",
            quota_value(quotas, "lambda_concurrent_executions"),
            "execution environments",
            sum(held.values()),
            "environment-seconds per message (invocations x max(duration, 1/10 s)): "
            + ", ".join(f"{fn.removeprefix('relay-')} {seconds:.3f}" for fn, seconds in busiest),
            _adjustable(quotas, "lambda_concurrent_executions"),
        ),
        Limit(
            "Lambda",
            "dispatcher's SQS event source (concurrent batches)",
            DEPLOYMENT,
            "lambda_sqs_concurrent_batches",
            batches,
            "concurrent batches",
            dispatcher,
            f"{use.invocations.get(DISPATCHER_FUNCTION, 0.0):.2f} dispatcher invocations per message "
            f"x {use.seconds.get(DISPATCHER_FUNCTION, 0.0) * 1000:.0f} ms; {cap} in the template",
            deployment.dispatcher_max_concurrency is not None,
            "relay.dispatcherMaxConcurrency (cdk.json: the event source's MaximumConcurrency, at most 1,000)"
            if deployment.dispatcher_max_concurrency is not None
            else "",
        ),
    ]


def lambda_ramp(use: MessageUse, quotas: Mapping[str, Any], rate: float) -> dict[str, float]:
    """Seconds each function needs to scale from nothing to `rate` messages/s (1,000 environments
    per 10 s per function; the dispatcher's event source adds 300 batches a minute after 5)."""
    per_environment = quota_value(quotas, "lambda_requests_per_environment") or 10.0
    scaling = quotas["lambda_scaling_rate"]
    per_second = float(scaling["value"]) / float(scaling.get("per_seconds", 10))
    ramp = {fn: rate * held / per_second for fn, held in environment_seconds(use, per_environment).items()}
    sqs = quotas["lambda_sqs_concurrent_batches"]
    batches = rate * environment_seconds(use, per_environment).get(DISPATCHER_FUNCTION, 0.0)
    ramp["dispatcher event source"] = max(0.0, batches - float(sqs["initial"])) / float(sqs["scale_up_per_minute"]) * 60
    return ramp


def step_functions_limits(use: MessageUse, quotas: Mapping[str, Any]) -> list[Limit]:
    rows = (
        ("Express StartSyncExecution (ingest, from the API)", "sfn_sync_express", "runs/s", use.sync_express_runs),
        ("Express StartExecution (the fast lane)", "sfn_express_start_execution", "starts/s", use.async_express_starts),
        ("Standard StartExecution (the slow lane)", "sfn_standard_start_execution", "starts/s", use.standard_starts),
        (
            "Standard state transitions (the slow lane)",
            "sfn_standard_state_transitions",
            "transitions/s",
            use.standard_transitions,
        ),
    )
    limits = []
    for component, key, unit, used in rows:
        bucket = quotas[key].get("bucket")
        detail = f"bucket {bucket:,}" if bucket else ("no published rate quota" if quotas[key]["value"] is None else "")
        limits.append(
            Limit(
                "Step Functions",
                component,
                DEPLOYMENT,
                key,
                quota_value(quotas, key),
                unit,
                used,
                detail,
                _adjustable(quotas, key),
            )
        )
    return limits


def sqs_limits(use: MessageUse, quotas: Mapping[str, Any]) -> list[Limit]:
    in_flight = use.seconds.get(DISPATCHER_FUNCTION, 0.0)  # a batch is in flight while its dispatcher runs
    return [
        Limit(
            "SQS",
            "API calls (standard queue)",
            DEPLOYMENT,
            "sqs_standard_api",
            None,
            "requests/s",
            use.sqs_requests,
            f"{use.sqs_requests:.2f} billed requests per message; nearly unlimited",
            False,
        ),
        Limit(
            "SQS",
            "messages in flight (the delivery queue)",
            DEPLOYMENT,
            "sqs_in_flight",
            quota_value(quotas, "sqs_in_flight"),
            "messages in flight",
            in_flight,
            "message-seconds in flight: received until the dispatcher's batch ends",
            _adjustable(quotas, "sqs_in_flight"),
        ),
    ]


def dynamodb_table_limits(use: MessageUse, quotas: Mapping[str, Any]) -> list[Limit]:
    limits = []
    for kind, units, key in (
        ("writes", use.write_units, "dynamodb_table_wru"),
        ("reads", use.read_units, "dynamodb_table_rru"),
    ):
        for container, used in sorted(units.items(), key=lambda item: item[0] != "table"):
            name = "table" if container == "table" else f"index {container}"
            limits.append(
                Limit(
                    "DynamoDB (table level)",
                    f"{name}, {kind}",
                    DEPLOYMENT,
                    key,
                    quota_value(quotas, key),
                    quotas[key]["unit"],
                    used,
                    "on-demand",
                    _adjustable(quotas, key),
                )
            )
    new = quotas["dynamodb_new_table"]
    share = use.write_units.get("table", 0.0) / float(new["value"]) + use.read_units.get("table", 0.0) / float(
        new["reads"]
    )
    limits.append(
        Limit(
            "DynamoDB (table level)",
            "a new on-demand table (first traffic; then twice its previous peak)",
            NEW_TABLE,
            "dynamodb_new_table",
            1.0,
            "share of its initial capacity",
            share,
            f"{float(new['value']):,.0f} WRU/s or {float(new['reads']):,.0f} RRU/s; "
            "pre-warm (warm throughput) before a launch",
        )
    )
    return limits


def partition_limits(use: MessageUse, quotas: Mapping[str, Any], deployment: DeploymentLimits) -> list[Limit]:
    """One row per key pattern that a message writes (1,000 WCU/s a partition) or reads (3,000)."""
    limits = []
    for pattern in use.patterns:
        if pattern.name.startswith("ACTIVE#"):
            continue  # modeled from the traffic's spread over senders: activity_limit
        partitions = deployment.due_shards if pattern.name.endswith("DUE#<shard>") else pattern.partitions
        where = "table" if pattern.container == "table" else f"index {pattern.container}"
        for kind, used, key in (
            ("writes", pattern.write_units, "dynamodb_partition_wcu"),
            ("reads", pattern.read_units, "dynamodb_partition_rcu"),
        ):
            if used <= 0:
                continue
            quota = quota_value(quotas, key)
            limits.append(
                Limit(
                    "DynamoDB (per partition key)",
                    f"{pattern.name}, {kind}",
                    pattern.scope,
                    key,
                    None if pattern.scope == MESSAGE else (quota or 0.0) * max(1, partitions),
                    quotas[key]["unit"],
                    used,
                    f"{where}; "
                    + (
                        "one key per message: only its own writes"
                        if pattern.scope == MESSAGE
                        else f"{max(1, partitions)} partition key(s) per {pattern.scope}"
                    ),
                    False,
                )
            )
    return limits


def first_use_share(draws: float, senders: int) -> float:
    """The share of `draws` (senders drawn evenly from `senders`) that are a sender's first:
    S(1 - (1 - 1/S)^m) / m distinct senders in m draws."""
    if draws <= 0 or senders <= 0:
        return 0.0
    if draws <= 1:
        return 1.0
    return min(1.0, senders * (1.0 - (1.0 - 1.0 / senders) ** draws) / draws)


def first_uses_per_message(
    use: MessageUse, function: str, period_seconds: float, senders: int, requests_per_environment: float
) -> float:
    """Per message, how often `function` meets a sender for the first time in a container within
    `period_seconds`: what a per-container, per-sender cache misses.

    Each invocation draws one sender (evenly from `senders`), but the dispatcher's, which draws one
    per message of its batch. The fewest containers the rate needs are assumed, each serving
    period / max(duration, 1/10 s) invocations a period; more warm containers miss more (at most
    every draw).
    """
    invocations = use.invocations.get(function, 0.0)
    if invocations <= 0:
        return 0.0
    per_invocation = 1.0 / invocations if function == DISPATCHER_FUNCTION and invocations < 1 else 1.0
    held = max(use.seconds.get(function, 0.0), 1.0 / requests_per_environment)
    draws_per_container = period_seconds / held * per_invocation
    return invocations * per_invocation * first_use_share(draws_per_container, senders)


# A sender's activity item is written at most twice per minute per warm store container (ingest's
# cache: its first message of the sender and minute is named, its second marks the sender busy).
ACTIVITY_PERIOD_SECONDS = 60.0
ACTIVITY_WRITES_PER_FIRST_USE = 2


def activity_limit(use: MessageUse, quotas: Mapping[str, Any], senders: int) -> Limit:
    per_environment = quota_value(quotas, "lambda_requests_per_environment") or 10.0
    first_uses = first_uses_per_message(use, STORE_FUNCTION, ACTIVITY_PERIOD_SECONDS, senders, per_environment)
    writes = min(1.0, ACTIVITY_WRITES_PER_FIRST_USE * first_uses)
    return Limit(
        "DynamoDB (per partition key)",
        "ACTIVE#<minute>#<shard> (senders active per minute), writes",
        DEPLOYMENT,
        "dynamodb_partition_wcu",
        quota_value(quotas, "dynamodb_partition_wcu"),
        "write units/s",
        writes / ACTIVITY_SHARDS,
        f"{ACTIVITY_SHARDS} partition keys a minute (a hash of the sender picks one); {writes:.3f} updates (1 WRU) "
        f"per message over them: at most two per sender, minute and store container (its first message named, "
        f"its second marking the sender busy), with {senders:,} senders sending evenly (at most 1 a message)",
        False,
    )


def secrets_limit(use: MessageUse, quotas: Mapping[str, Any], deployment: DeploymentLimits, senders: int) -> Limit:
    """GetSecretValue: each signing container asks once per sender per cache period."""
    per_environment = quota_value(quotas, "lambda_requests_per_environment") or 10.0
    period = deployment.secret_cache_seconds
    calls = sum(first_uses_per_message(use, fn, period, senders, per_environment) for fn in SIGNING_FUNCTIONS)
    return Limit(
        "Secrets Manager",
        "GetSecretValue",
        DEPLOYMENT,
        "secrets_get_secret_value",
        quota_value(quotas, "secrets_get_secret_value"),
        "requests/s",
        calls,
        f"a signing container ({', '.join(SIGNING_FUNCTIONS)}) asks once per sender per {period:.0f} s "
        f"(functions/adapters/secrets.py); {senders:,} senders sending evenly",
        _adjustable(quotas, "secrets_get_secret_value"),
    )


def api_key_limit(quotas: Mapping[str, Any], deployment: DeploymentLimits) -> Limit:
    keys = quota_value(quotas, "apigateway_api_keys")
    create = quota_value(quotas, "apigateway_create_api_key_rps")
    return Limit(
        "API Gateway",
        "API keys (one per sender)",
        CEILING,
        "apigateway_api_keys",
        keys,
        "senders",
        0.0,
        f"at most {keys:,.0f} senders per account and Region, created at {create:.0f}/s (CreateApiKey); "
        "a sender's rate is its usage plan's",
        False,
    )


# -- per target: the flow-control design ------------------------------------------------------------------


@dataclass(frozen=True)
class FlowDesign:
    """The inputs of a target's flow-control ceiling, and where each came from."""

    permits_per_sub_bucket: float
    rate_writes_per_permit: float
    slot_writes_per_permit: float
    item_conditional_updates_per_second: float | None
    partition_write_units_per_second: float
    target_rate_max: float
    sources: dict[str, str] = field(default_factory=dict)


def flow_design(
    assumed: Mapping[str, Any], partition_wcu: float, target_rate_max: float, module: Any = None
) -> FlowDesign:
    """The design's constants: functions/domain/flow.py's when it defines them, else the assumption."""
    names = {
        "permits_per_sub_bucket": "SUB_BUCKET_PERMITS_PER_SECOND",
        "rate_writes_per_permit": "RATE_WRITES_PER_PERMIT",
        "slot_writes_per_permit": "SLOT_WRITES_PER_PERMIT",
        "partition_write_units_per_second": "PARTITION_WRITE_UNITS_PER_SECOND",
    }
    defaults = {**assumed, "partition_write_units_per_second": partition_wcu}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, constant in names.items():
        found = getattr(module, constant, None) if module is not None else None
        values[name] = float(found if found is not None else defaults[name])
        sources[name] = (
            f"functions/domain/flow.py {constant}"
            if found is not None
            else (
                "bench/quotas.json (DynamoDB quota)"
                if name == "partition_write_units_per_second"
                else "bench/quotas.json assumptions.flow_design (the design being built)"
            )
        )
    update_rate = assumed.get("item_conditional_updates_per_second")
    return FlowDesign(
        item_conditional_updates_per_second=None if update_rate is None else float(update_rate),
        target_rate_max=target_rate_max,
        sources={**sources, "target_rate_max": "schemas/target.schema.json ratePerSecond maximum"},
        **values,
    )


def per_target_max_permits_per_second(
    *,
    target_rate_max: float,
    permits_per_sub_bucket: float,
    rate_writes_per_permit: float,
    partition_write_units_per_second: float,
    item_conditional_updates_per_second: float | None = None,
) -> float:
    """The most permits a second one target can be given at the largest rate it may be set to.

    Its bucket is ceil(rate / permits_per_sub_bucket) sub-bucket items, each under its own partition
    key; one item takes permits at most at min(its conditional-update rate, the partition's write
    units / writes per permit). The target gets its whole rate while a sub-bucket's share fits that.
    """
    per_item = partition_write_units_per_second / rate_writes_per_permit
    if item_conditional_updates_per_second is not None:
        per_item = min(per_item, item_conditional_updates_per_second / rate_writes_per_permit)
    items = math.ceil(target_rate_max / permits_per_sub_bucket)
    return min(target_rate_max, items * min(per_item, permits_per_sub_bucket))


def single_flow_item_estimate(design: FlowDesign, dynamodb_call_ms: float) -> dict[str, Any]:
    """Main's flow control before the rewrite, for comparison: one FLOW item per target, read and
    then written on its version, so one permit per read-and-write round trip at best."""
    round_trips = 1000.0 / (2 * dynamodb_call_ms)
    return {
        "max_permits_per_second": per_target_max_permits_per_second(
            target_rate_max=design.target_rate_max,
            permits_per_sub_bucket=design.target_rate_max,  # one item carries the whole rate
            rate_writes_per_permit=1,
            partition_write_units_per_second=design.partition_write_units_per_second,
            item_conditional_updates_per_second=round_trips,
        ),
        "model": f"one item, one version-checked read and write per permit: 1 / (2 x {dynamodb_call_ms:.0f} ms)",
    }


def per_target_limit(design: FlowDesign) -> float:
    return per_target_max_permits_per_second(
        target_rate_max=design.target_rate_max,
        permits_per_sub_bucket=design.permits_per_sub_bucket,
        rate_writes_per_permit=design.rate_writes_per_permit,
        partition_write_units_per_second=design.partition_write_units_per_second,
        item_conditional_updates_per_second=design.item_conditional_updates_per_second,
    )


# -- putting it together ---------------------------------------------------------------------------------


def component_limits(
    use: MessageUse, quotas: Mapping[str, Any], deployment: DeploymentLimits, senders: int
) -> list[Limit]:
    return [
        *api_gateway_limits(use, quotas, deployment),
        api_key_limit(quotas, deployment),
        *lambda_limits(use, quotas, deployment),
        *step_functions_limits(use, quotas),
        *sqs_limits(use, quotas),
        *dynamodb_table_limits(use, quotas),
        activity_limit(use, quotas, senders),
        *partition_limits(use, quotas, deployment),
        secrets_limit(use, quotas, deployment, senders),
    ]


def bottleneck(limits: Iterable[Limit], scope: str = DEPLOYMENT) -> Limit | None:
    """The limit of `scope` that allows the fewest messages a second (None: nothing limits)."""
    candidates = [limit for limit in limits if limit.scope == scope and not math.isinf(limit.max_messages_per_second)]
    return min(candidates, key=lambda limit: limit.max_messages_per_second, default=None)


def raise_for(limits: Iterable[Limit], rate: float, quotas: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What must change for the deployment to sustain `rate` messages/s: each limit below it, the
    quota value it needs (use x rate), and whether that is a quota request or a design change."""
    needed = []
    for limit in sorted(limits, key=lambda item: item.max_messages_per_second):
        if limit.scope not in (DEPLOYMENT, NEW_TABLE) or limit.max_messages_per_second >= rate:
            continue
        required = limit.use_per_message * rate
        source = quotas.get(limit.quota_key, {}).get("source", "")
        if limit.scope == NEW_TABLE:
            action = "pre-warm the table (warm throughput) or ramp traffic over 30 minutes"
        elif limit.raise_how:
            action = f"raise {limit.raise_how} to at least {required:,.0f}"
        elif limit.adjustable:
            action = f"raise to at least {required:,.0f} {limit.unit} (a quota increase)"
        else:
            action = _design_change(limit, required, quotas)
        needed.append(
            {
                "component": f"{limit.group}: {limit.component}",
                "quota": limit.quota,
                "unit": limit.unit,
                "max_messages_per_second": _finite(limit.max_messages_per_second),
                "needed": required,
                "adjustable": limit.adjustable,
                "action": action,
                "source": source,
            }
        )
    return needed


def _design_change(limit: Limit, required: float, quotas: Mapping[str, Any]) -> str:
    per_key = quota_value(quotas, limit.quota_key) if limit.quota_key.startswith("dynamodb_partition") else None
    if per_key:
        if limit.component.startswith("ACTIVE#<minute>#<shard>"):  # ACTIVITY_SHARDS keys: `required` is one key's
            shards = math.ceil(required * ACTIVITY_SHARDS / per_key)
            return f"not a quota (one partition key's limit): ACTIVITY_SHARDS to at least {shards}"
        keys = math.ceil(required / per_key)
        return f"not a quota (one partition key's limit): spread it over at least {keys} partition keys"
    return f"not adjustable: needs {required:,.0f} {limit.unit}; a design change"


def scenario_summary(limits: Sequence[Limit]) -> dict[str, Any]:
    found = bottleneck(limits)
    return {
        "max_messages_per_second": _finite(found.max_messages_per_second) if found else None,
        "bottleneck": f"{found.group}: {found.component}" if found else None,
        "components": [limit.to_dict() for limit in limits],
    }


# -- the reconciler's rounds (bench/capacity_run.py) -----------------------------------------------------


def reconciler_summary(section: Mapping[str, Any]) -> dict[str, Any]:
    """The measured rounds against issue 20's goal (many senders at most 1.5x one), with what the
    sweep read, from the counted calls.

    A round whose sweep stopped at its budget (`unfinished`), or read fewer heads than there are
    messages, did not look at every message: its ratio cannot pass, however short the round. The
    rounds run with a local budget that lets moto finish them; they must also fit the deployed
    budgets at AWS-like speed (the round's, and the sweep's share of it)."""
    many = int(section["many_senders"])
    messages = int(section["messages"])
    one, spread = section["senders_1"], section[f"senders_{many}"]
    samples = [*one["rounds"], *spread["rounds"]]
    complete = all(sample["sweep_finished"] and sample["heads_read"] >= messages for sample in samples)
    per_message_ms = statistics_median(
        [sample["sweep_aws_like_ms"] / max(1, sample["heads_read"]) for sample in spread["rounds"]]
    )
    budget_s = float(section["sweep_budget_seconds"])
    round_budget_ms = float(section.get("round_budget_seconds", budget_s / 0.3)) * 1000
    fits = all(
        sample["aws_like_ms"] <= round_budget_ms and sample["sweep_aws_like_ms"] <= budget_s * 1000
        for sample in samples
    )
    summary: dict[str, Any] = {
        "senders_1": one["median_local_ms"],
        f"senders_{many}": spread["median_local_ms"],
        "ratio": spread["median_local_ms"] / one["median_local_ms"],
        "aws_like_ms": {"senders_1": one["median_aws_like_ms"], f"senders_{many}": spread["median_aws_like_ms"]},
        "ratio_aws_like": spread["median_aws_like_ms"] / one["median_aws_like_ms"],
        "target_ratio": RECONCILER_RATIO_TARGET,
        "messages_each": messages,
        "sweep_complete": complete,
        "messages_swept_per_round": {
            "senders_1": one["messages_swept_per_round"],
            f"senders_{many}": spread["messages_swept_per_round"],
        },
        "sweep_calls_per_round": {
            "senders_1": _sweep_calls(one["rounds"][0]),
            f"senders_{many}": _sweep_calls(spread["rounds"][0]),
        },
        "sweep_aws_like_ms_per_message": per_message_ms,
        "sweep_budget_seconds": budget_s,
        # Calls one after another (the sweep keeps several head reads in flight: more on AWS).
        "messages_one_sweep_reaches_on_aws": budget_s * 1000 / per_message_ms if per_message_ms else None,
        "window_coverage": {
            "senders_1": one["window_coverage_per_round"],
            f"senders_{many}": spread["window_coverage_per_round"],
        },
    }
    summary["fits_deployed_budget"] = fits
    # Judged AWS-like: Relay's own time in the round plus DynamoDB's latency for each call it makes.
    # The local ratio is moto's (a GSI query scans the table; thousands of activity items are
    # serialised) and the machine's load at the time of each configuration's rounds.
    summary["meets_target"] = complete and fits and summary["ratio_aws_like"] <= RECONCILER_RATIO_TARGET
    summary["finding"] = _reconciler_finding(summary, many)
    return summary


def _sweep_calls(sample: Mapping[str, Any]) -> dict[str, int]:
    calls = sample["calls"]
    return {
        "activity_queries": int(sample["activity_queries"]),
        "bySender_queries": int(calls.get("dynamodb:Query[bySender]", 0)),
        "head_reads": int(calls.get("dynamodb:BatchGetItem", 0)),
    }


def _reconciler_finding(summary: Mapping[str, Any], many: int) -> str:
    calls = summary["sweep_calls_per_round"]
    one, spread = calls["senders_1"], calls[f"senders_{many}"]
    work = (
        f"The sweep of never-claimed messages (functions/services/reconciler.py sweep_unclaimed) read, for "
        f"{summary['messages_each']:,} messages from {many:,} senders, {spread['activity_queries']} activity queries, "
        f"{spread['bySender_queries']} bySender queries and {spread['head_reads']} head reads (BatchGetItem); from "
        f"one sender, {one['activity_queries']}, {one['bySender_queries']} and {one['head_reads']}: its work follows "
        f"the messages, not the senders. At {summary['sweep_aws_like_ms_per_message']:.2f} ms a message AWS-like "
        f"(calls one after another), a round's {summary['sweep_budget_seconds']:.1f} s sweep budget reads about "
        f"{summary['messages_one_sweep_reaches_on_aws'] or 0:,.0f} messages; rounds start at the window's oldest "
        "minute, so every message is swept while a round gets through a minute's traffic."
    )
    if summary["meets_target"]:
        return (
            f"meets the goal: {summary['ratio_aws_like']:.2f}x AWS-like (judged: Relay's own time plus DynamoDB's "
            f"latency per call); {summary['ratio']:.2f}x locally, where nearly all of a round is moto's time and the "
            "two configurations' rounds ran minutes apart on a shared machine. " + work
        )
    if not summary["fits_deployed_budget"]:
        return "misses the goal: a round, at AWS-like speed, does not fit the deployed budget. " + work
    if not summary["sweep_complete"]:
        return (
            "misses the goal: a round's sweep stopped at its budget or read fewer heads than there are messages "
            f"(messages swept per round: {summary['messages_swept_per_round']}). " + work
        )
    return f"misses the goal: {summary['ratio']:.2f}x locally, {summary['ratio_aws_like']:.2f}x AWS-like. " + work


def statistics_median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if not ordered:
        return math.nan
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


# -- the capacity section --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapacityInputs:
    """Everything the model reads; `provenance` says where each input came from."""

    cost: Mapping[str, Any]  # the cost section (bench/cost_run.py)
    quotas_document: Mapping[str, Any]  # bench/quotas.json
    deployment: DeploymentLimits
    flow: FlowDesign
    reconciler: Mapping[str, Any] | None  # the capacity section's `reconciler` (bench/capacity_run.py)
    # The capacity section's `dev_isolation` (bench/dev_isolation.py), when it has one.
    dev_isolation: Mapping[str, Any] | None = None
    provenance: dict[str, str] = field(default_factory=dict)
    # A single-item DynamoDB call's typical latency (bench/cost_run.py AWS_CALL_LATENCY_MS).
    dynamodb_call_ms: float = 5.0


def build(inputs: CapacityInputs) -> dict[str, Any]:
    """latest.json's `capacity`: the headline numbers, every component per scenario, what to raise."""
    quotas = inputs.quotas_document["quotas"]
    senders = int(inputs.quotas_document["assumptions"]["active_senders"])
    scenarios: dict[str, dict[str, Any]] = {}
    limits_by_scenario: dict[str, list[Limit]] = {}
    uses: dict[str, MessageUse] = {}
    for name in CAPACITY_SCENARIOS:
        entry = inputs.cost.get("scenarios", {}).get(name)
        if entry is None:
            continue
        uses[name] = MessageUse.from_cost_scenario(name, entry)
        limits_by_scenario[name] = component_limits(uses[name], quotas, inputs.deployment, senders)
        scenarios[name] = scenario_summary(limits_by_scenario[name])
    headline = limits_by_scenario[HEADLINE_SCENARIO]
    found = bottleneck(headline)
    capacity: dict[str, Any] = {
        "max_messages_per_second_default_quotas": _finite(found.max_messages_per_second) if found else None,
        "bottleneck": f"{found.group}: {found.component}" if found else None,
        "bottleneck_limit": found.to_dict() if found else None,
        "headline_scenario": HEADLINE_SCENARIO,
        "per_target_max_permits_per_second": per_target_limit(inputs.flow),
        "per_target_flow_today": single_flow_item_estimate(inputs.flow, inputs.dynamodb_call_ms),
        "per_target_flow": {
            **asdict(inputs.flow),
            "model": "min(max rate, ceil(rate / permits per sub-bucket) x min(permits per sub-bucket, per-item rate))",
        },
        "per_sender_max_messages_per_second": _per_sender(limits_by_scenario),
        "per_target_max_messages_per_second": _per_scope(limits_by_scenario, TARGET),
        "raise_for": {str(rate): raise_for(headline, rate, quotas) for rate in TARGET_RATES},
        "ramp_seconds": {str(rate): lambda_ramp(uses[HEADLINE_SCENARIO], quotas, rate) for rate in TARGET_RATES},
        "scenarios": scenarios,
        "deployment_limits": asdict(inputs.deployment),
        "assumptions": inputs.quotas_document["assumptions"],
        "quotas": {key: {k: v for k, v in quota.items() if k != "quote"} for key, quota in quotas.items()},
        "provenance": inputs.provenance,
    }
    if inputs.reconciler is not None:
        capacity["reconciler_round_ms"] = reconciler_summary(inputs.reconciler)
    if inputs.dev_isolation is not None:
        capacity["dev_isolation"] = dev_isolation_summary(inputs.dev_isolation)
    return capacity


def _per_scope(limits_by_scenario: Mapping[str, Sequence[Limit]], scope: str) -> dict[str, Any]:
    """The tightest limit of one sender's or one target's keys in every scenario (None: none limits)."""
    found = {name: bottleneck(limits, scope) for name, limits in limits_by_scenario.items()}
    return {
        name: {
            "max_messages_per_second": _finite(limit.max_messages_per_second) if limit else None,
            "limited_by": f"{limit.group}: {limit.component}" if limit else None,
        }
        for name, limit in found.items()
    }


def _per_sender(limits_by_scenario: Mapping[str, Sequence[Limit]]) -> dict[str, Any]:
    """One sender's ceiling: one message per request (the headline) and in batches of 100."""
    per_sender: dict[str, Any] = {}
    for label, name in (("single", HEADLINE_SCENARIO), ("batch100", "success_batch100")):
        if name in limits_by_scenario:
            found = bottleneck(limits_by_scenario[name], SENDER)
            per_sender[label] = _finite(found.max_messages_per_second) if found else None
            per_sender[f"{label}_limited_by"] = f"{found.group}: {found.component}" if found else None
    return per_sender


# -- reading the inputs ----------------------------------------------------------------------------------


def load_quotas(path: Path = QUOTAS_PATH) -> dict[str, Any]:
    import json

    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def code_facts(root: Path) -> dict[str, Any]:
    """The deployment's limits that live in code: due shards, a target's largest rate, the secret cache."""
    import json

    from functions.adapters.secrets import CACHE_SECONDS
    from functions.contract import indexes
    from functions.domain import model

    schema = json.loads((root / "schemas" / "target.schema.json").read_text(encoding="utf-8"))
    return {
        # Where the index sizing rule keeps it (functions/contract/indexes.py), else the message model.
        "due_shards": int(getattr(indexes, "DUE_SHARDS", getattr(model, "DUE_SHARDS", 1))),
        "target_rate_max": float(schema["properties"]["ratePerSecond"]["maximum"]),
        "secret_cache_seconds": float(CACHE_SECONDS),
    }


def synthesized_template() -> tuple[dict[str, Any], str]:
    """The stack's template (synthesized first when older than the sources) and its path."""
    import json

    from relay.local.synth import current_template

    path = current_template(None)
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document, str(path)


def _section(results: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    data = results.get("sections", {}).get(name)
    return data if isinstance(data, Mapping) and "error" not in data else None


def _this_run_or_previous(
    results: Mapping[str, Any], previous: Mapping[str, Any] | None, name: str
) -> tuple[Mapping[str, Any] | None, str]:
    """A section of this run, else of the previous latest.json (`--only`), and where it came from."""
    section = _section(results, name)
    if section is not None or previous is None:
        return section, f"the {name} section of this run"
    date = previous.get("machine", {}).get("date")
    return _section(previous, name), f"the {name} section of the previous latest.json ({date})"


def collect_inputs(results: Mapping[str, Any], previous: Mapping[str, Any] | None, root: Path) -> CapacityInputs | None:
    """This run's cost and capacity sections, or the previous latest.json's when this run has none
    (`--only`); None when no cost section can be found at all."""
    from bench.cost_run import AWS_CALL_LATENCY_MS
    from functions.domain import flow

    provenance: dict[str, str] = {}
    cost, provenance["use_per_message"] = _this_run_or_previous(results, previous, "cost")
    if cost is None:
        return None
    measured, provenance["reconciler"] = _this_run_or_previous(results, previous, "capacity")
    if measured is not None and "dev_isolation" in measured:
        provenance["dev_isolation"] = provenance["reconciler"]
    template, template_path = synthesized_template()
    document = load_quotas()
    facts = code_facts(root)
    provenance["quotas"] = f"bench/quotas.json (taken {document['taken']}, {document['region']})"
    provenance["deployment"] = (
        f"{template_path} (usage plan, event source) and the code (due shards, target schema, secret cache)"
    )
    quotas = document["quotas"]
    design = flow_design(
        document["assumptions"]["flow_design"],
        float(quotas["dynamodb_partition_wcu"]["value"]),
        facts["target_rate_max"],
        flow,
    )
    return CapacityInputs(
        cost=cost,
        quotas_document=document,
        deployment=DeploymentLimits.from_template(template, **facts),
        flow=design,
        reconciler=measured.get("reconciler") if measured else None,
        dev_isolation=measured.get("dev_isolation") if measured else None,
        provenance=provenance,
        dynamodb_call_ms=AWS_CALL_LATENCY_MS["dynamodb"],
    )
