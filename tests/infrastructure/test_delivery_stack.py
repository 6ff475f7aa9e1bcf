"""The delivery path as synthesized from the real app: lanes, dispatcher, failed messages, grants."""

from __future__ import annotations

import json
from typing import Any

import pytest
from infra_support import (
    Synthesized,
    assert_actions_named,
    data_grants,
    failed_queue_id,
    function_by_step,
    handler_of,
    invoked_functions,
    joined,
    machine_role,
    queue_arn,
    queue_ids,
    refs,
    state_machines,
    step_environment,
    step_role,
    synthesize,
    table_arn,
)

from functions.contract.settings_names import Setting
from relay.local import template as local_template
from stacks.definitions import render_definition
from stacks.project_config import delivery_policy
from stacks.settings import RelaySettings

DELIVERY_STEPS = ("dispatcher", "deliver", "finalize", "handoff")
# Lane -> (file, machine type, emulator name, policy key), as relay dev runs it.
LANES = {
    "fast": ("delivery_fast.asl.json", "EXPRESS", "relay-delivery-fast", "fastLane"),
    "slow": ("delivery_slow.asl.json", "STANDARD", "relay-delivery-slow", "slowLane"),
}
# Placeholder -> the step whose function it names.
PLACEHOLDER_STEPS = {"DeliverFunctionArn": "deliver", "FailFunctionArn": "finalize", "HandoffFunctionArn": "handoff"}
SENDER_SECRETS = {
    "Fn::Join": [
        "",
        [
            "arn:",
            {"Ref": "AWS::Partition"},
            ":secretsmanager:",
            {"Ref": "AWS::Region"},
            ":",
            {"Ref": "AWS::AccountId"},
            ":secret:relay/senders/*",
        ],
    ]
}
CONSUME_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueUrl",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
)


def machine(synth: Synthesized, lane: str) -> tuple[str, dict[str, Any]]:
    return state_machines(synth)[lane]


def function_arn(synth: Synthesized, step: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [function_by_step(synth, step)[0], "Arn"]}


def machine_ref(synth: Synthesized, lane: str) -> dict[str, Any]:
    return {"Ref": machine(synth, lane)[0]}


# -- the lanes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("lane", LANES)
def test_each_lane_is_its_file_with_the_configured_policy(synth: Synthesized, lane: str) -> None:
    # Given a lane's machine, and the policy cdk.json sets for it (none: the file's defaults)
    file_name, machine_type, _, policy_key = LANES[lane]
    props = machine(synth, lane)[1]["Properties"]
    policy = delivery_policy().get(policy_key)
    # Then it has the lane's type, and its definition is exactly render_definition's text with the
    # placeholders left to CloudFormation's DefinitionSubstitutions
    assert props["StateMachineType"] == machine_type
    assert props["DefinitionString"] == render_definition(file_name, None, policy)
    # And after substitution no placeholder is left
    rendered = props["DefinitionString"]
    for placeholder, value in props["DefinitionSubstitutions"].items():
        rendered = rendered.replace("${" + placeholder + "}", joined(value))
    assert "${" not in rendered


@pytest.mark.parametrize("lane", LANES)
def test_each_lane_names_the_functions_relay_dev_wires_to_it(synth: Synthesized, lane: str) -> None:
    # Given the lane's substitutions, and the same machine as relay dev creates it from the template
    file_name, machine_type, local_name, _ = LANES[lane]
    substitutions = machine(synth, lane)[1]["Properties"]["DefinitionSubstitutions"]
    topology = local_template.build_topology(synth.template)
    local = topology.state_machines[local_name]
    assert local.type == machine_type
    # Then every placeholder the file uses is the ARN of its step's function, which relay dev runs
    used = {
        placeholder for placeholder in PLACEHOLDER_STEPS if "${" + placeholder + "}" in render_definition(file_name)
    }
    assert set(substitutions) == used
    for placeholder, value in substitutions.items():
        step = PLACEHOLDER_STEPS[placeholder]
        assert value == function_arn(synth, step)
        assert topology.handlers[f"relay-{step}"] == handler_of(step)
        assert f'"{local_template.arn(local_template.FUNCTION, f"relay-{step}")}"' in local.definition


def test_the_fast_lane_uses_all_three_functions_and_the_slow_lane_two(synth: Synthesized) -> None:
    # Given the substitutions of both lanes
    fast = machine(synth, "fast")[1]["Properties"]["DefinitionSubstitutions"]
    slow = machine(synth, "slow")[1]["Properties"]["DefinitionSubstitutions"]
    # Then the fast lane can deliver, fail and hand off; the slow lane (the last lane) delivers and fails
    assert set(fast) == {"DeliverFunctionArn", "FailFunctionArn", "HandoffFunctionArn"}
    assert set(slow) == {"DeliverFunctionArn", "FailFunctionArn"}


@pytest.mark.parametrize("lane", LANES)
def test_each_lane_logs_errors_and_is_traced(synth: Synthesized, lane: str) -> None:
    # Given the lane's logging and tracing configuration (cdk.json: stacks.tracing errors)
    props = machine(synth, lane)[1]["Properties"]
    logging = props["LoggingConfiguration"]
    log_group_id = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    # Then failures are logged (the EXPRESS fast lane with its data, so a failed run opens in the console;
    # the STANDARD slow lane keeps its history in Step Functions) and runs are traced
    express = props.get("StateMachineType") == "EXPRESS"
    assert logging == {**logging, "IncludeExecutionData": express, "Level": "ERROR"}
    assert props["TracingConfiguration"] == {"Enabled": True}
    group = synth.resources[log_group_id]["Properties"]
    assert group["RetentionInDays"] == 30
    assert group["LogGroupName"].startswith("/aws/vendedlogs/states/")


@pytest.mark.parametrize("lane", LANES)
def test_each_lane_may_invoke_exactly_its_functions(synth: Synthesized, lane: str) -> None:
    # Given the lane's role and the functions its definition names
    props = machine(synth, lane)[1]["Properties"]
    role_id = machine_role(machine(synth, lane)[1])
    named = sorted(props["DefinitionSubstitutions"].values(), key=str)
    # When its Lambda permissions are collected
    actions, invoked = invoked_functions(synth, role_id)
    # Then it may only invoke, and only those unqualified functions
    assert actions == {"lambda:InvokeFunction"}
    assert sorted(invoked, key=str) == named
    # And it reaches no data store and starts no run itself
    assert data_grants(synth, role_id) == {}


# -- functions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("step", DELIVERY_STEPS)
def test_each_delivery_step_is_a_traced_arm_python_function(synth: Synthesized, step: str) -> None:
    # Given the function of one delivery step
    props = function_by_step(synth, step)[1]["Properties"]
    # Then it runs Python 3.12 on Graviton with tracing, the shared layer and its own log group
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert len(props["Layers"]) == 1
    assert synth.resources[props["LoggingConfig"]["LogGroup"]["Ref"]]["Properties"]["RetentionInDays"] == 30
    assert "ManagedPolicyArns" not in synth.resources[step_role(synth, step)]["Properties"]


def test_deliver_may_run_one_whole_attempt(synth: Synthesized) -> None:
    # Given the settings' attempt timeout (15 s by default)
    settings = RelaySettings.defaults()
    # Then deliver's timeout is that plus 10 s for its own reads and writes
    assert function_by_step(synth, "deliver")[1]["Properties"]["Timeout"] == settings.total_timeout_seconds + 10
    # And the dispatcher's, which makes a batch's first attempts in parallel, 10 s more for its claims
    assert function_by_step(synth, "dispatcher")[1]["Properties"]["Timeout"] == settings.total_timeout_seconds + 20
    # And the others stay short
    for step in ("finalize", "handoff"):
        assert function_by_step(synth, step)[1]["Properties"]["Timeout"] <= 10


def test_the_lanes_functions_have_the_timeouts_the_fast_lanes_bound_counts(synth: Synthesized) -> None:
    # Given the function timeouts the settings count in the fast lane's longest run (fast_lane_run)
    counted = RelaySettings.defaults().lane_function_timeouts()
    # Then each function a lane's placeholder names is deployed with exactly that timeout
    assert set(counted) == set(PLACEHOLDER_STEPS)
    for placeholder, step in PLACEHOLDER_STEPS.items():
        assert function_by_step(synth, step)[1]["Properties"]["Timeout"] == counted[placeholder], step


def dispatcher_grants_without_attempts(synth: Synthesized) -> dict[str, Any]:
    main, _ = queue_ids(synth)
    return {
        "dynamodb:GetItem": [table_arn(synth)],
        # head and content in one read; the claim is one conditional update (status and events)
        "dynamodb:BatchGetItem": [table_arn(synth)],
        # and a callback or notification names itself in its sender's activity item (its own statement)
        "dynamodb:UpdateItem": reporting_updates(synth),
        # a head that grew moves its older events to an overflow item (one transaction, a PutItem in
        # it); a callback or notification is stored (content and head)
        "dynamodb:PutItem": [table_arn(synth)],
        "states:StartExecution": [machine_ref(synth, "fast")],
        # the failed-messages queue; the delivery queue for a callback or notification
        "sqs:SendMessage": refs(queue_arn(failed_queue_id(synth)), queue_arn(main)),
        **{action: [queue_arn(main)] for action in CONSUME_ACTIONS},
    }


def reporting_updates(synth: Synthesized) -> list[Any]:
    """UpdateItem of a function that reports outcomes: message items (its own work) and, in a
    statement of its own, the sender's activity items (a callback or notification names itself)."""
    return [table_arn(synth), table_arn(synth)]


def test_dispatcher_may_claim_attempt_start_the_fast_lane_and_fail_messages(synth: Synthesized) -> None:
    # Given the dispatcher's role (delivery.firstAttempt: inline, the default)
    grants = data_grants(synth, step_role(synth, "dispatcher"))
    # Then it may read and update heads (each update appends its events), make attempts as deliver
    # does (the sender's signing secret), start the fast lane, send to the failed-messages queue, put
    # a message whose target is at its limit back on the delivery queue, and consume the delivery
    # queue: nothing else
    main, _ = queue_ids(synth)
    assert grants == {
        **dispatcher_grants_without_attempts(synth),
        # a first attempt answered with a long Retry-After goes straight to the slow lane
        "states:StartExecution": [machine_ref(synth, "fast"), machine_ref(synth, "slow")],
        # the failed queue; the delivery queue (a target at its limit; a callback or notification)
        "sqs:SendMessage": refs(queue_arn(failed_queue_id(synth)), queue_arn(main)),
        "secretsmanager:GetSecretValue": [SENDER_SECRETS],
    }
    assert step_environment(synth, "dispatcher")[Setting.FIRST_ATTEMPT] == "inline"


@pytest.fixture(scope="module")
def synth_state_machine(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(
        tmp_path_factory.mktemp("cdk.out"), context={"relay": {"delivery": {"firstAttempt": "stateMachine"}}}
    )


def test_first_attempt_state_machine_leaves_the_dispatcher_only_claims_and_starts(
    synth_state_machine: Synthesized,
) -> None:
    # Given a deployment with delivery.firstAttempt: stateMachine
    synth = synth_state_machine
    assert synth.error is None
    # Then the dispatcher is told so, may not read secrets or make attempts, and stays short
    assert step_environment(synth, "dispatcher")[Setting.FIRST_ATTEMPT] == "stateMachine"
    assert data_grants(synth, step_role(synth, "dispatcher")) == dispatcher_grants_without_attempts(synth)
    assert function_by_step(synth, "dispatcher")[1]["Properties"]["Timeout"] == 10
    main, _ = queue_ids(synth)
    assert synth.resources[main]["Properties"]["VisibilityTimeout"] == 60


def test_deliver_may_read_and_record_attempts_and_read_sender_secrets(synth: Synthesized) -> None:
    # Given deliver's role
    grants = data_grants(synth, step_role(synth, "deliver"))
    # Then it batch-reads head and content, reads its target's health, updates the head (and the
    # health on failure), appends events, and reads signing secrets under relay/senders/ only
    # (senders are created with theirs; it never creates one); a limited target's flow state is read
    # again (GetItem) when a conditional write lost to another
    assert grants == {
        "dynamodb:GetItem": [table_arn(synth)],
        "dynamodb:BatchGetItem": [table_arn(synth)],
        # and the sender's activity item of a callback or notification
        "dynamodb:UpdateItem": reporting_updates(synth),
        # older events to an overflow item; a callback or notification
        "dynamodb:PutItem": [table_arn(synth)],
        "sqs:SendMessage": [queue_arn(queue_ids(synth)[0])],  # a callback or notification
        "secretsmanager:GetSecretValue": [SENDER_SECRETS],
    }


def test_finalize_may_fail_messages_and_dead_letter_them(synth: Synthesized) -> None:
    # Given finalize's role
    # Then it may read and update the head (status and FAILED event in one write) and send to the failed queue
    assert data_grants(synth, step_role(synth, "finalize")) == {
        "dynamodb:GetItem": [table_arn(synth)],
        "dynamodb:BatchGetItem": [table_arn(synth)],  # the failed message's head and content, to report it
        # and the activity item of a failure callback or notification
        "dynamodb:UpdateItem": reporting_updates(synth),
        # older events to an overflow item; a failure callback or notification
        "dynamodb:PutItem": [table_arn(synth)],
        "sqs:SendMessage": refs(queue_arn(failed_queue_id(synth)), queue_arn(queue_ids(synth)[0])),
    }


def test_handoff_may_only_start_the_slow_lane(synth: Synthesized) -> None:
    # Given handoff's role
    # Then it may read and update the head (lease and its event in one write) and start the slow lane
    assert data_grants(synth, step_role(synth, "handoff")) == {
        "dynamodb:GetItem": [table_arn(synth)],
        # a run whose message finished meanwhile reports its outcome (head and content, then the emit)
        "dynamodb:BatchGetItem": [table_arn(synth)],
        "dynamodb:UpdateItem": reporting_updates(synth),
        "dynamodb:PutItem": [table_arn(synth)],
        "sqs:SendMessage": [queue_arn(queue_ids(synth)[0])],
        "states:StartExecution": [machine_ref(synth, "slow")],
    }


def test_what_each_step_must_not_do(synth: Synthesized) -> None:
    # Given the delivery steps' grants
    grants = {step: data_grants(synth, step_role(synth, step)) for step in DELIVERY_STEPS}
    # Then deliver starts no run, only the steps that attempt (deliver and the dispatcher) read
    # secrets, nobody deletes or scans
    assert not [action for action in grants["deliver"] if action.startswith("states:")]
    for step in ("deliver", "dispatcher"):
        assert not [
            action
            for action in grants[step]
            if action != "secretsmanager:GetSecretValue" and action.startswith("secretsmanager:")
        ]
    for step in ("finalize", "handoff"):
        assert not [action for action in grants[step] if action.startswith("secretsmanager:")]
    for step_grants in grants.values():
        assert not {"dynamodb:DeleteItem", "dynamodb:Scan", "states:StartSyncExecution"} & set(step_grants)


@pytest.mark.parametrize("step", DELIVERY_STEPS)
def test_no_delivery_step_has_wildcard_actions(synth: Synthesized, step: str) -> None:
    # Given a step's role
    # Then every action is named, and only X-Ray (no resource-level permissions) is on `*`
    assert_actions_named(synth, step)


def test_each_step_knows_only_the_lanes_and_queues_it_uses(synth: Synthesized) -> None:
    # Given the delivery steps' environments
    env = {step: step_environment(synth, step) for step in DELIVERY_STEPS}
    failed_url = {"Ref": failed_queue_id(synth)}
    # Then the dispatcher starts the fast lane, handoff the slow lane, and the steps that fail
    # messages know the failed-messages queue
    assert env["dispatcher"][Setting.FAST_LANE_ARN] == machine_ref(synth, "fast")
    assert env["handoff"][Setting.SLOW_LANE_ARN] == machine_ref(synth, "slow")
    assert env["dispatcher"][Setting.FAILED_QUEUE_URL] == failed_url
    assert env["finalize"][Setting.FAILED_QUEUE_URL] == failed_url
    # And the functions a lane invokes do not name that lane (the template stays acyclic)
    for step in ("deliver", "finalize"):
        assert Setting.FAST_LANE_ARN not in env[step]
        assert Setting.SLOW_LANE_ARN not in env[step]
    assert Setting.FAST_LANE_ARN not in env["handoff"]


@pytest.mark.parametrize("step", DELIVERY_STEPS)
def test_each_step_has_the_attempt_settings_and_leases(synth: Synthesized, step: str) -> None:
    # Given the settings cdk.json yields
    settings = RelaySettings.defaults()
    variables = step_environment(synth, step)
    # Then the step carries the attempt's timeouts, the response cap and both leases
    assert variables[Setting.TABLE_NAME] == {"Ref": only_table(synth)}
    assert variables[Setting.CONNECT_TIMEOUT_SECONDS] == "10"
    assert variables[Setting.TOTAL_TIMEOUT_SECONDS] == "15"
    assert variables[Setting.MAX_RESPONSE_BYTES] == "65536"
    # (the fast lane's lease is taken by the dispatcher before its inline attempt: an Express run's
    # 300 s and a margin, plus the dispatcher's own 35 s)
    assert variables[Setting.FAST_LANE_LEASE_SECONDS] == str(settings.fast_lane_lease_seconds) == "395"
    assert variables[Setting.SLOW_LANE_LEASE_SECONDS] == str(settings.slow_lane_lease_seconds)


def only_table(synth: Synthesized) -> str:
    return str(table_arn(synth)["Fn::GetAtt"][0])


def test_private_targets_are_refused_by_every_function(synth: Synthesized) -> None:
    # Given every function of the stack
    functions = synth.of_type("AWS::Lambda::Function").values()
    # Then each one says explicitly that private targets are not allowed (the local default is "true")
    assert len(functions) == len(local_template.build_topology(synth.template).functions)
    for function in functions:
        assert function["Properties"]["Environment"]["Variables"][Setting.ALLOW_PRIVATE_TARGETS] == "false"


def test_relay_dev_runs_every_deployed_function_under_its_role(synth: Synthesized) -> None:
    # Given the functions relay dev reads from the template
    local = local_template.build_topology(synth.template).functions.values()
    deployed = {function["Properties"]["Handler"] for function in synth.of_type("AWS::Lambda::Function").values()}
    # Then it runs exactly the deployed handlers, each with its own role (the one whose policies it is held to)
    assert {spec.handler for spec in local} == deployed
    assert len({spec.role_arn for spec in local}) == len(deployed)


# -- dispatcher and queues -----------------------------------------------------------------------


def test_dispatcher_consumes_the_delivery_queue_with_partial_batch_failures(synth: Synthesized) -> None:
    # Given the event source mapping
    mappings = synth.of_type("AWS::Lambda::EventSourceMapping").values()
    (mapping,) = mappings
    props = mapping["Properties"]
    main, _ = queue_ids(synth)
    # Then the dispatcher reads the delivery queue in batches of 10, reporting failed records alone
    assert props["EventSourceArn"] == queue_arn(main)
    assert props["FunctionName"] == {"Ref": function_by_step(synth, "dispatcher")[0]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == 10
    assert 0 < props["MaximumBatchingWindowInSeconds"] <= 5
    # And at most cdk.json's dispatcherMaxConcurrency invocations at once, so waiting messages never
    # take the account's Lambda concurrency from ingest
    assert props["ScalingConfig"] == {"MaximumConcurrency": RelaySettings.defaults().dispatcher_max_concurrency}


def test_delivery_queue_visibility_is_at_least_six_dispatcher_timeouts(synth: Synthesized) -> None:
    # Given the delivery queue and the dispatcher
    main, _ = queue_ids(synth)
    visibility = synth.resources[main]["Properties"]["VisibilityTimeout"]
    timeout = function_by_step(synth, "dispatcher")[1]["Properties"]["Timeout"]
    # Then the dispatcher may make a whole batch's inline attempts (run in parallel: one total
    # timeout plus its bookkeeping) within its timeout
    settings = RelaySettings.defaults()
    assert timeout == settings.dispatcher_timeout_seconds > settings.total_timeout_seconds
    # And a batch can be retried (throttling included) before its messages reappear
    assert visibility == settings.delivery_queue_visibility_seconds
    assert visibility >= 6 * timeout


def test_failed_queue_is_encrypted_tls_only_and_keeps_messages_14_days(synth: Synthesized) -> None:
    # Given the failed-messages queue
    queue_id = failed_queue_id(synth)
    props = synth.resources[queue_id]["Properties"]
    # Then it uses SQS-managed encryption, keeps messages 14 days and is nobody's dead-letter queue
    assert props["SqsManagedSseEnabled"] is True
    assert props["MessageRetentionPeriod"] == 14 * 86_400
    assert "RedrivePolicy" not in props
    assert queue_id not in queue_ids(synth)
    # And its policy refuses any request without TLS
    denies = [
        statement
        for policy in synth.of_type("AWS::SQS::QueuePolicy").values()
        if {"Ref": queue_id} in policy["Properties"]["Queues"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
    ]
    assert [statement["Condition"] for statement in denies] == [{"Bool": {"aws:SecureTransport": "false"}}]


def test_outputs_name_the_lanes_and_the_failed_queue(synth: Synthesized) -> None:
    # Given the stack outputs
    outputs = synth.template["Outputs"]
    # Then operators find both lanes and the failed-messages queue
    assert outputs["FastLaneArn"]["Value"] == machine_ref(synth, "fast")
    assert outputs["SlowLaneArn"]["Value"] == machine_ref(synth, "slow")
    assert outputs["FailedQueueUrl"]["Value"] == {"Ref": failed_queue_id(synth)}


def test_lanes_synthesize_without_findings(synth: Synthesized) -> None:
    # Given the synthesis of this module (cdk-nag is on)
    # Then it succeeded, and the definitions are valid JSON with the lane's first state
    assert synth.error is None, synth.error
    fast = json.loads(machine(synth, "fast")[1]["Properties"]["DefinitionString"])
    slow = json.loads(machine(synth, "slow")[1]["Properties"]["DefinitionString"])
    # (a run handed a target's Retry-After waits for it first)
    assert (fast["StartAt"], slow["StartAt"]) == ("CheckRetryAfter", "CheckRetryAfter")
