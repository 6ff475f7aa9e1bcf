"""The capacity model's arithmetic (bench/capacity.py): per-component rates, the bottleneck, what to
raise, the per-target flow ceiling, key patterns, and the reconciler's goal."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench.capacity import (
    DEPLOYMENT,
    MESSAGE,
    NEW_TABLE,
    SENDER,
    TARGET,
    DeploymentLimits,
    Limit,
    MessageUse,
    PatternUse,
    bottleneck,
    component_limits,
    environment_seconds,
    first_use_share,
    key_pattern,
    load_quotas,
    per_target_max_permits_per_second,
    raise_for,
    rate_limit,
    reconciler_summary,
)
from bench.cost_model import IndexSpec, index_write_units, index_writes_by_partition

QUOTAS = load_quotas()["quotas"]


def use(**overrides: Any) -> MessageUse:
    """One message of a success path: four 10 ms ingest steps, a tenth of a 200 ms dispatcher batch."""
    values: dict[str, Any] = {
        "scenario": "test",
        "api_requests": 1.0,
        "invocations": {"relay-validate": 1.0, "relay-store": 1.0, "relay-dispatcher": 0.1},
        "seconds": {"relay-validate": 0.005, "relay-store": 0.02, "relay-dispatcher": 0.2},
        "sync_express_runs": 1.0,
        "async_express_starts": 0.0,
        "standard_starts": 0.0,
        "standard_transitions": 0.0,
        "sqs_requests": 1.2,
        "write_units": {"table": 4.0, "bySender": 1.0},
        "read_units": {"table": 1.5},
        "patterns": (
            PatternUse("bySender SENDER#<sender>", "bySender", SENDER, 1.0, 0.0, 1),
            PatternUse("MSG#<sender>#<message> H (message head)", "table", MESSAGE, 3.0, 1.0, 1),
            PatternUse("due DUE#<shard>", "due", DEPLOYMENT, 2.0, 0.0, 3),
        ),
    }
    return MessageUse(**{**values, **overrides})


def limit(component: str, scope: str, quota: float | None, used: float, adjustable: bool = True) -> Limit:
    return Limit("group", component, scope, "lambda_concurrent_executions", quota, "units", used, "", adjustable)


def test_a_limit_allows_its_quota_divided_by_the_use_of_one_message() -> None:
    assert rate_limit(10_000, 1.0) == 10_000
    assert rate_limit(1_000, 0.25) == 4_000
    assert math.isinf(rate_limit(6_000, 0.0))  # the success path starts no fast lane
    assert math.isinf(rate_limit(None, 1.0))  # no published quota


def test_an_environment_is_held_at_least_a_tenth_of_a_second_per_invocation() -> None:
    # Given a 5 ms step, a 20 ms step and a 200 ms dispatcher batch shared by 10 messages
    held = environment_seconds(use(), requests_per_environment=10)
    # Then the short steps cost 1/10 s (10 requests a second an environment), the batch its duration
    assert held == pytest.approx({"relay-validate": 0.1, "relay-store": 0.1, "relay-dispatcher": 0.02})


def test_lambda_concurrency_allows_the_account_quota_over_the_environment_seconds_of_a_message() -> None:
    limits = component_limits(use(), QUOTAS, DeploymentLimits(), senders=1)
    concurrency = next(item for item in limits if item.component.startswith("concurrent executions"))
    assert concurrency.use_per_message == pytest.approx(0.22)
    assert concurrency.max_messages_per_second == pytest.approx(1_000 / 0.22)


def test_the_bottleneck_is_the_smallest_deployment_limit() -> None:
    # Given limits of every scope
    limits = [
        limit("api", DEPLOYMENT, 10_000, 1.0),
        limit("lambda", DEPLOYMENT, 1_000, 0.4),
        limit("one sender", SENDER, 100, 1.0),
        limit("one target", TARGET, 10, 1.0),
        limit("new table", NEW_TABLE, 1.0, 0.01),
        limit("fast lane", DEPLOYMENT, 6_000, 0.0),
    ]
    # Then the deployment's is the smallest deployment-wide one; a sender's is its own
    found = bottleneck(limits)
    assert found is not None and found.component == "lambda" and found.max_messages_per_second == 2_500
    sender = bottleneck(limits, SENDER)
    assert sender is not None and sender.max_messages_per_second == 100
    assert bottleneck([limit("fast lane", DEPLOYMENT, 6_000, 0.0)]) is None


def test_deployment_wide_keys_allow_their_partitions_times_a_partition_limit() -> None:
    limits = component_limits(use(), QUOTAS, DeploymentLimits(due_shards=8), senders=1)
    rates = {item.component: item for item in limits}
    # The due index's 8 shards (the code's count, not the 3 the run happened to touch) at 2 WRU a message
    assert rates["due DUE#<shard>, writes"].max_messages_per_second == 4_000
    # A sender's index partition: 1,000 WRU/s for that sender
    assert rates["bySender SENDER#<sender>, writes"].scope == SENDER
    assert rates["bySender SENDER#<sender>, writes"].max_messages_per_second == 1_000
    # A message's own keys limit nothing across messages
    assert math.isinf(rates["MSG#<sender>#<message> H (message head), writes"].max_messages_per_second)


def test_what_to_raise_names_the_quota_each_slower_limit_needs() -> None:
    # Given an adjustable limit at 2,500 msg/s, a partition limit at 1,000, and one far above
    limits = [
        limit("lambda", DEPLOYMENT, 1_000, 0.4),
        Limit("DynamoDB", "ACTIVE#", DEPLOYMENT, "dynamodb_partition_wcu", 1_000, "write units/s", 1.0, "", False),
        limit("api", DEPLOYMENT, 10_000, 1.0),
    ]
    # When the deployment must take 10,000 msg/s
    needed = raise_for(limits, 10_000, QUOTAS)
    # Then the slowest comes first, the quota needed is use x rate, and a partition is spread over keys
    assert [item["component"] for item in needed] == ["DynamoDB: ACTIVE#", "group: lambda"]
    assert "at least 10 partition keys" in needed[0]["action"]
    assert needed[1]["needed"] == 4_000 and "quota increase" in needed[1]["action"]
    assert raise_for(limits, 900, QUOTAS) == []


def test_a_target_reaches_the_largest_rate_when_a_sub_bucket_fits_its_partition() -> None:
    # Given the design: 50 permits/s a sub-bucket, one write a permit, 1,000 WCU/s a partition
    ceiling = per_target_max_permits_per_second(
        target_rate_max=10_000,
        permits_per_sub_bucket=50,
        rate_writes_per_permit=1,
        partition_write_units_per_second=1_000,
    )
    assert ceiling == 10_000  # 200 sub-buckets, each at 50/s
    # When one item took only 20 conditional updates a second, the 200 items would give 4,000
    slow_items = per_target_max_permits_per_second(
        target_rate_max=10_000,
        permits_per_sub_bucket=50,
        rate_writes_per_permit=1,
        partition_write_units_per_second=1_000,
        item_conditional_updates_per_second=20,
    )
    assert slow_items == 4_000
    # And one bucket item taking 60 writes a permit caps each at 16.7/s
    heavy = per_target_max_permits_per_second(
        target_rate_max=100,
        permits_per_sub_bucket=50,
        rate_writes_per_permit=60,
        partition_write_units_per_second=1_000,
    )
    assert heavy == pytest.approx(2 * 1_000 / 60)


def test_a_cache_per_container_misses_once_per_sender_it_meets() -> None:
    assert first_use_share(600, 1) == pytest.approx(1 / 600)  # one sender: the first of 600 draws
    assert first_use_share(600, 10**9) == pytest.approx(1.0, abs=1e-3)  # senders without end: every draw
    assert first_use_share(600, 5_000) == pytest.approx(5_000 * (1 - (1 - 1 / 5_000) ** 600) / 600)


def test_key_patterns_name_the_partition_kind_and_its_owner() -> None:
    head = key_pattern("table", "MSG#acme#m-1", "H")
    assert (head.name, head.scope) == ("MSG#<sender>#<message> H (message head)", MESSAGE)
    bucket = key_pattern("table", "TARGET#acme#https://hooks.example.com:8443#B17", "FLOW")
    assert (bucket.name, bucket.scope, bucket.owner) == (
        "TARGET#<sender>#<origin>#B<n> (flow sub-bucket)",
        TARGET,
        "acme#https://hooks.example.com:8443",
    )
    assert key_pattern("table", "TARGET#acme#https://a.example", "LIMITS").name == "TARGET#<sender>#<origin> LIMITS"
    assert key_pattern("table", "ACTIVE#29611234", "acme").scope == DEPLOYMENT
    sharded = key_pattern("bySender", "SENDER#acme#3")
    assert (sharded.name, sharded.owner) == ("bySender SENDER#<sender>#<shard>", "acme")
    assert key_pattern("byStatus", "SENDER#acme#STATUS#FAILED").scope == SENDER
    assert key_pattern("due", "DUE#5").name == "due DUE#<shard>"


def test_an_index_write_is_attributed_to_the_partition_it_lands_on() -> None:
    due = IndexSpec("due", ("dueShard", "dueAt"), "KEYS_ONLY")
    before = {"pk": {"S": "MSG#a#1"}, "sk": {"S": "H"}, "dueShard": {"S": "DUE#1"}, "dueAt": {"N": "1"}}
    moved = {**before, "dueShard": {"S": "DUE#2"}}
    assert index_writes_by_partition(before, moved, due, ("pk", "sk")) == [("DUE#1", 1), ("DUE#2", 1)]
    assert index_write_units(before, moved, due, ("pk", "sk")) == 2
    assert index_writes_by_partition(before, None, due, ("pk", "sk")) == [("DUE#1", 1)]


def test_the_deployment_limits_come_from_the_template() -> None:
    template = {
        "Resources": {
            "Plan": {
                "Type": "AWS::ApiGateway::UsagePlan",
                "Properties": {"Throttle": {"RateLimit": 100, "BurstLimit": 200}},
            },
            "Mapping": {
                "Type": "AWS::Lambda::EventSourceMapping",
                "Properties": {"BatchSize": 10, "ScalingConfig": {"MaximumConcurrency": 50}},
            },
            "Stage": {
                "Type": "AWS::ApiGateway::Stage",
                "Properties": {
                    "MethodSettings": [
                        {"HttpMethod": "*", "ResourcePath": "/*"},
                        {"HttpMethod": "GET", "ResourcePath": "/~1console", "ThrottlingRateLimit": 10},
                    ]
                },
            },
        }
    }
    limits = DeploymentLimits.from_template(template, due_shards=8)
    assert (limits.sender_rate_limit, limits.sender_burst_limit, limits.dispatcher_max_concurrency) == (100, 200, 50)
    # A throttle of another route (the console's) is not the messages' stage throttle
    assert limits.stage_rate_limit is None
    # The event source then allows 50 batches at once, not Lambda's 1,000
    dispatcher = next(
        item for item in component_limits(use(), QUOTAS, limits, senders=1) if "event source" in item.component
    )
    assert dispatcher.quota == 50 and dispatcher.max_messages_per_second == pytest.approx(50 / 0.02)
    # And past it, the setting to raise is Relay's, not an AWS quota
    (needed,) = raise_for([dispatcher], 10_000, QUOTAS)
    assert needed["action"].startswith("raise relay.dispatcherMaxConcurrency")
    assert needed["needed"] == pytest.approx(200)


def test_a_cost_scenario_splits_synchronous_and_fast_lane_express_runs() -> None:
    # Given a retried message: its ingest run (StartSyncExecution by the API) and one fast-lane start
    entry = {
        "messages": 10,
        "usage_per_message_aws_like": {
            "api_requests": 1.0,
            "lambda_invocations": {"relay-dispatcher": 1.0},
            "authorizer_invocations": 0.0,
            "sqs_requests": 2.0,
            "dynamodb_read_units": 3.0,
        },
        "details": {
            "lambda_aws_like_ms_per_invocation": {"relay-dispatcher": 150.0},
            "executions_per_message": {
                "relay-ingest": {"type": "EXPRESS", "runs": 1.0, "transitions": 8.0},
                "relay-delivery-fast": {"type": "EXPRESS", "runs": 1.0, "transitions": 5.0},
            },
            "dynamodb_write_units_per_message": {"by_table_or_index": {"table": 14.0, "due": 2.0}},
        },
        "counted": {"aws_calls": [["relay-dispatcher", "stepfunctions", "StartExecution", 10]]},
    }
    message = MessageUse.from_cost_scenario("retried", entry)
    assert (message.sync_express_runs, message.async_express_starts, message.standard_starts) == (1.0, 1.0, 0.0)
    assert message.seconds == {"relay-dispatcher": 0.15}
    assert message.read_units == {"table": 3.0}


def reconciler_section(
    one_ms: float, many_ms: float, heads_read: int, sweep_ms: float, finished: bool = True
) -> dict[str, Any]:
    """Measured rounds of 5,000 messages: one sender's, and 5,000 senders' whose sweep read
    `heads_read` heads in `sweep_ms` (AWS-like) and finished or not."""

    def config(ms: float, heads: int, sweep_ms: float) -> dict[str, Any]:
        sample = {
            "local_ms": ms,
            "aws_like_ms": ms,
            "heads_read": heads,
            "busy_senders_queried": 0,
            "activity_queries": 12,
            "sweep_finished": finished,
            "sweep_aws_like_ms": sweep_ms,
            "sweep_local_ms": sweep_ms,
            "calls": {"dynamodb:BatchGetItem": heads // 100},
        }
        return {
            "median_local_ms": ms,
            "median_aws_like_ms": ms,
            "rounds": [sample],
            "messages_swept_per_round": [heads],
            "window_coverage_per_round": [1.0],
        }

    return {
        "many_senders": 5000,
        "messages": 5000,
        "sweep_budget_seconds": 12.6,
        "senders_1": config(one_ms, 5000, 500.0),
        "senders_5000": config(many_ms, heads_read, sweep_ms),
    }


def test_the_reconciler_goal_is_five_thousand_senders_within_one_and_a_half_rounds_of_one() -> None:
    # Given a sweep of 5,000 senders' 5,000 messages at 0.1 ms each, in a round 1.4x one sender's
    met = reconciler_summary(reconciler_section(1_000, 1_400, 5_000, 500.0))
    # Then it meets the goal, and the budget's reach is the budget over the cost of a message
    assert met["ratio"] == pytest.approx(1.4) and met["meets_target"] and met["sweep_complete"]
    assert met["messages_one_sweep_reaches_on_aws"] == pytest.approx(12_600 / 0.1)
    assert met["sweep_calls_per_round"]["senders_5000"] == {
        "activity_queries": 12,
        "bySender_queries": 0,
        "head_reads": 50,
    }


def test_a_sweep_stopped_by_its_budget_is_no_pass_even_when_its_round_is_short() -> None:
    # Given a 5,000-sender round shorter than the one-sender round because its sweep gave up after 800
    missed = reconciler_summary(reconciler_section(2_000, 1_500, 800, 80.0, finished=False))
    # Then the measured ratio (0.75x) is no pass: the sweep was incomplete
    assert missed["ratio"] == pytest.approx(0.75)
    assert not missed["meets_target"] and not missed["sweep_complete"]
    assert "did not look at every message" in missed["finding"] or "stopped at its budget" in missed["finding"]


def test_the_goal_is_judged_at_aws_like_speed_not_by_moto_time() -> None:
    # Given complete rounds whose local times (moto's) differ 1.8x but whose AWS-like times are the same
    section = reconciler_section(1_000, 1_800, 5_000, 500.0)
    section["senders_5000"]["median_aws_like_ms"] = 1_000
    judged = reconciler_summary(section)
    # Then the goal is met, and the local ratio is reported beside it
    assert judged["meets_target"] and judged["ratio"] == pytest.approx(1.8)
    assert judged["ratio_aws_like"] == pytest.approx(1.0)


def test_a_sweep_that_read_fewer_heads_than_messages_is_no_pass() -> None:
    # Given a 5,000-sender round that finished but read only 4,000 of the 5,000 messages' heads
    missed = reconciler_summary(reconciler_section(1_000, 1_100, 4_000, 400.0))
    # Then it is no pass
    assert not missed["sweep_complete"] and not missed["meets_target"]


def test_a_round_that_would_not_fit_the_deployed_budget_on_aws_is_no_pass() -> None:
    # Given complete rounds in the goal's ratio whose sweeps would take 20 s at AWS-like speed
    # (the deployed sweep budget: 12.6 s)
    missed = reconciler_summary(reconciler_section(30_000, 31_000, 5_000, 20_000.0))
    # Then they are no pass: a deployed round would stop its sweep at the budget
    assert missed["sweep_complete"] and not missed["fits_deployed_budget"] and not missed["meets_target"]
    assert "does not fit the deployed budget" in missed["finding"]
