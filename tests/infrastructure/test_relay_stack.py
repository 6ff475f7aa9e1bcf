"""RelayStack as synthesized from the real app (cdk.json context, cdk-nag on), once per module."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from infra_support import (
    CONSOLE_SETTINGS,
    EVERY_METHOD,
    Synthesized,
    actions_of,
    api_method,
    assert_actions_named,
    data_grants,
    function_by_step,
    invoked_functions,
    joined,
    machine_role,
    method_settings,
    only,
    queue_ids,
    resources_of,
    role_statements,
    state_machines,
    step_role,
    table_id,
)

from functions.contract.settings_names import Setting
from relay.local.template import FUNCTION, arn, build_topology
from stacks.settings import RelaySettings, forwarded_base64_chars

PROJECT_ROOT = Path(__file__).resolve().parents[2]
INGEST_ASL = PROJECT_ROOT / "statemachines" / "ingest.asl.json"
STEPS = ("validate", "dedup", "store", "enqueue")

# Every cdk-nag finding the stack acknowledges; a new one must be added here on purpose.
EXPECTED_ACKNOWLEDGEMENTS = {
    "AwsSolutions-IAM5[Resource::*]",
    "AwsSolutions-L1",
    "AwsSolutions-SF1",
    "AwsSolutions-APIG2",
    "AwsSolutions-APIG3",
    "AwsSolutions-COG4",
    # API Gateway logs to CloudWatch only when cdk.json says the account has its CloudWatch role.
    "AwsSolutions-APIG1",
    "AwsSolutions-APIG6",
    # The deliver function reads per-sender signing secrets under relay/senders/.
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:relay/senders/*]",
    # The failed-messages queue is a terminal sink for operators, not a queue with consumers.
    "AwsSolutions-SQS3",
    # The web console's static files (GET /console...) need no authorizer; their data calls do.
    "AwsSolutions-APIG4",
}


# -- helpers -----------------------------------------------------------------------------------


def state_machine(synth: Synthesized) -> dict[str, Any]:
    """The ingest machine."""
    return state_machines(synth)["ingest"][1]


def post_messages(synth: Synthesized) -> dict[str, Any]:
    return api_method(synth, "POST", "/messages")


def post_batch(synth: Synthesized) -> dict[str, Any]:
    return api_method(synth, "POST", "/messages/batch")


# -- storage -----------------------------------------------------------------------------------


def test_relay_dev_creates_the_table_the_template_declares(synth: Synthesized) -> None:
    # Given the table relay dev creates from the synthesized template
    local = build_topology(synth.template).table
    # When the synthesized table is read
    table = synth.resources[table_id(synth)]["Properties"]
    # Then keys, attributes, indexes and TTL are the same, so the code runs unchanged on both
    assert local.definition["KeySchema"] == table["KeySchema"]
    assert local.definition["AttributeDefinitions"] == table["AttributeDefinitions"]
    assert local.definition["GlobalSecondaryIndexes"] == table["GlobalSecondaryIndexes"]
    assert local.ttl_attribute == table["TimeToLiveSpecification"]["AttributeName"]
    assert {index["IndexName"] for index in table["GlobalSecondaryIndexes"]} == {"byStatus", "bySender", "due"}


def test_table_is_on_demand_with_ttl_pitr_encryption_and_retained(synth: Synthesized) -> None:
    # Given the synthesized table
    resource = synth.resources[table_id(synth)]
    table = resource["Properties"]
    # Then it bills per request, expires items on `ttl`, keeps backups, is encrypted and survives stack deletion
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert resource["DeletionPolicy"] == "Retain"


def test_delivery_queue_redrives_to_an_encrypted_dead_letter_queue(synth: Synthesized) -> None:
    # Given the delivery queue and its dead-letter queue
    main, dead = queue_ids(synth)
    queue = synth.resources[main]["Properties"]
    # Then failed receives move to the dead-letter queue, and both use SQS-managed encryption
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [dead, "Arn"]}
    assert queue["RedrivePolicy"]["maxReceiveCount"] >= 1
    for logical_id in (main, dead):
        assert synth.resources[logical_id]["Properties"]["SqsManagedSseEnabled"] is True


def test_every_queue_refuses_requests_without_tls(synth: Synthesized) -> None:
    # Given the queue policies
    policies = synth.of_type("AWS::SQS::QueuePolicy").values()
    # Then each queue denies every request whose transport is not TLS
    protected = set()
    for policy in policies:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement.get("Condition") == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                protected.update(queue["Ref"] for queue in policy["Properties"]["Queues"])
    # (the delivery queue, its dead letters and the failed-messages queue)
    assert protected == set(synth.of_type("AWS::SQS::Queue"))
    assert set(queue_ids(synth)) < protected


# -- functions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
def test_each_step_is_a_small_traced_arm_python_function(synth: Synthesized, step: str) -> None:
    # Given the function of one ingest step
    _, function = function_by_step(synth, step)
    props = function["Properties"]
    # Then it runs Python 3.12 on Graviton with a short timeout, tracing and the shared layer
    assert props["Runtime"] == "python3.12"
    assert props["Architectures"] == ["arm64"]
    assert props["MemorySize"] == 256
    assert props["Timeout"] <= 15
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert len(props["Layers"]) == 1


@pytest.mark.parametrize("step", STEPS)
def test_each_step_is_configured_by_the_settings(synth: Synthesized, step: str) -> None:
    # Given the settings cdk.json yields (its `relay` object is empty: the schema's defaults)
    settings = RelaySettings.defaults()
    # When the function's environment is read
    variables = function_by_step(synth, step)[1]["Properties"]["Environment"]["Variables"]
    # Then it carries every limit, the table, and Powertools' service and namespace
    for name, value in settings.function_environment().items():
        assert variables[name] == value
    assert variables[Setting.TABLE_NAME] == {"Ref": table_id(synth)}
    assert variables["POWERTOOLS_SERVICE_NAME"] == "relay"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "Relay"
    # And only enqueue knows the queue
    if step == "enqueue":
        assert variables[Setting.QUEUE_URL] == {"Ref": queue_ids(synth)[0]}
    else:
        assert Setting.QUEUE_URL not in variables


@pytest.mark.parametrize("step", STEPS)
def test_each_step_logs_to_its_own_log_group_kept_one_month(synth: Synthesized, step: str) -> None:
    # Given the function's logging configuration
    props = function_by_step(synth, step)[1]["Properties"]
    log_group_id = props["LoggingConfig"]["LogGroup"]["Ref"]
    # Then it writes to an explicit log group with a one-month retention
    assert synth.resources[log_group_id]["Properties"]["RetentionInDays"] == 30
    # And its role may write to that log group only (no AWS managed policy)
    role_id = props["Role"]["Fn::GetAtt"][0]
    assert "ManagedPolicyArns" not in synth.resources[role_id]["Properties"]
    log_statements = [
        statement
        for statement in role_statements(synth, role_id)
        if any(action.startswith("logs:") for action in actions_of(statement))
    ]
    assert log_statements
    for statement in log_statements:
        assert resources_of(statement) == [{"Fn::GetAtt": [log_group_id, "Arn"]}]


def test_validate_may_touch_no_data(synth: Synthesized) -> None:
    # Given validate's role
    # Then it has no DynamoDB, SQS or KMS action at all
    assert data_grants(synth, step_role(synth, "validate")) == {}


def test_dedup_may_only_read_items_and_mark_them_due(synth: Synthesized) -> None:
    table_arn = {"Fn::GetAtt": [table_id(synth), "Arn"]}
    # Given dedup's role
    # Then it may GetItem on the table, and UpdateItem (a repeat of a message that was stored but
    # never enqueued marks it due for the reconciler), nothing else on any data store
    assert data_grants(synth, step_role(synth, "dedup")) == {
        "dynamodb:GetItem": [table_arn],
        "dynamodb:UpdateItem": [table_arn],
    }


def test_store_may_only_put_and_get_items_and_name_them_in_activity_items(synth: Synthesized) -> None:
    table_arn = {"Fn::GetAtt": [table_id(synth), "Arn"]}
    # Given store's role
    # Then it may PutItem and GetItem on the table (not on its indexes), and UpdateItem to name the
    # message in its sender's activity item, nothing else
    assert data_grants(synth, step_role(synth, "store")) == {
        "dynamodb:GetItem": [table_arn],
        "dynamodb:PutItem": [table_arn],
        "dynamodb:UpdateItem": [table_arn],
    }
    # And its puts reach message items only, its updates activity items only
    reach = {
        action: statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        for statement in role_statements(synth, step_role(synth, "store"))
        for action in actions_of(statement)
        if action in ("dynamodb:PutItem", "dynamodb:UpdateItem")
    }
    assert reach == {"dynamodb:PutItem": ["MSG#*"], "dynamodb:UpdateItem": ["ACTIVE#*"]}


def test_enqueue_may_record_a_failed_send_and_send_to_the_delivery_queue_only(synth: Synthesized) -> None:
    table_arn = {"Fn::GetAtt": [table_id(synth), "Arn"]}
    queue_arn = {"Fn::GetAtt": [queue_ids(synth)[0], "Arn"]}
    # Given enqueue's role
    # Then it may UpdateItem on the table (ENQUEUE_FAILED and a due time) and SendMessage to the
    # delivery queue, nothing else
    assert data_grants(synth, step_role(synth, "enqueue")) == {
        "dynamodb:UpdateItem": [table_arn],
        "sqs:SendMessage": [queue_arn],
    }


@pytest.mark.parametrize("step", STEPS)
def test_no_step_has_wildcard_actions(synth: Synthesized, step: str) -> None:
    # Given a step's role
    # Then every action is named (X-Ray is the only `Resource: *`, and it has no resource-level permissions)
    assert_actions_named(synth, step)


def test_all_steps_share_one_code_asset(synth: Synthesized) -> None:
    # Given the four functions
    keys = {json.dumps(function_by_step(synth, step)[1]["Properties"]["Code"], sort_keys=True) for step in STEPS}
    # Then they are deployed from one asset
    assert len(keys) == 1


def asset_directory(synth: Synthesized, code: dict[str, Any]) -> Path:
    asset_hash = code["S3Key"].removesuffix(".zip")
    directory = synth.outdir / f"asset.{asset_hash}"
    assert directory.is_dir(), directory
    return directory


def test_code_asset_holds_only_functions_schemas_and_the_console_without_bytecode(synth: Synthesized) -> None:
    # Given the staged code asset of the functions
    asset = asset_directory(synth, function_by_step(synth, "validate")[1]["Properties"]["Code"])
    # Then it has the handlers' packages, the schemas and the console's files (GET /console), nothing else
    assert sorted(entry.name for entry in asset.iterdir()) == ["console", "functions", "schemas"]
    assert (asset / "schemas" / "message.schema.json").is_file()
    assert (asset / "console" / "index.html").is_file()
    for step in STEPS:
        assert (asset / "functions" / step / "handler.py").is_file()
    assert not [path for path in asset.rglob("*") if path.name == "__pycache__" or path.suffix == ".pyc"]


def test_layer_holds_the_dependencies_without_the_aws_sdk(synth: Synthesized) -> None:
    # Given the dependency layer
    _, layer = only(synth.of_type("AWS::Lambda::LayerVersion"))
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    site = asset_directory(synth, layer["Properties"]["Content"]) / "python"
    # Then it carries Powertools and jsonschema for Linux arm64, but not boto3/botocore
    assert (site / "aws_lambda_powertools").is_dir()
    assert (site / "jsonschema").is_dir()
    assert not (site / "boto3").exists()
    assert not (site / "botocore").exists()
    assert not list(site.rglob("__pycache__"))
    native = [path.name for path in site.rglob("*.so")]
    assert native and all("aarch64" in name and "312" in name for name in native)


# -- state machine -------------------------------------------------------------------------------


def test_ingest_machine_is_express_with_the_definition_from_the_file(synth: Synthesized) -> None:
    # Given the ingest state machine
    machine = state_machine(synth)["Properties"]
    substitutions = machine["DefinitionSubstitutions"]
    # When the placeholders are replaced the way CloudFormation does
    rendered = machine["DefinitionString"]
    expected = INGEST_ASL.read_text(encoding="utf-8")
    for placeholder, value in substitutions.items():
        rendered = rendered.replace("${" + placeholder + "}", joined(value))
        expected = expected.replace("${" + placeholder + "}", joined(value))
    # Then it is an EXPRESS machine whose definition is the file after substitution
    assert machine["StateMachineType"] == "EXPRESS"
    assert rendered == expected
    assert "${" not in rendered
    assert json.loads(rendered)["StartAt"] == "Validate"


def test_ingest_placeholders_name_the_four_step_functions_and_the_request_shape(synth: Synthesized) -> None:
    # Given the substitutions, and the same machine as relay dev runs it from the template
    substitutions = state_machine(synth)["Properties"]["DefinitionSubstitutions"]
    local = build_topology(synth.template).state_machines["relay-ingest"]
    # Then the machine tells Validate it takes one message
    assert substitutions["RequestShape"] == "message"
    assert json.loads(local.definition)["States"]["Validate"]["Parameters"]["Payload"]["shape"] == "message"
    # And each other placeholder is the ARN of its step's function, and relay dev calls that function
    assert local.type == "EXPRESS"
    assert len(substitutions) == len(STEPS) + 1
    for step in STEPS:
        placeholder = f"{step.capitalize()}FunctionArn"
        assert substitutions[placeholder] == {"Fn::GetAtt": [function_by_step(synth, step)[0], "Arn"]}
        assert f'"{arn(FUNCTION, f"relay-{step}")}"' in local.definition


def test_ingest_machine_logs_failed_runs_with_their_data_and_is_traced(synth: Synthesized) -> None:
    # Given the machine's logging and tracing configuration (cdk.json: stacks.tracing errors)
    machine = state_machine(synth)["Properties"]
    logging = machine["LoggingConfiguration"]
    log_group_id = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    # Then a failed run can be opened in the console (tests/infrastructure/test_tracing.py), and runs are traced
    assert logging["IncludeExecutionData"] is True
    assert logging["Level"] == "ERROR"
    assert synth.resources[log_group_id]["Properties"]["RetentionInDays"] == 30
    assert machine["TracingConfiguration"] == {"Enabled": True}


def test_ingest_machine_may_invoke_exactly_the_four_steps(synth: Synthesized) -> None:
    # Given the machine's role
    role_id = machine_role(state_machine(synth))
    # When its Lambda permissions are collected
    lambda_actions, invoked = invoked_functions(synth, role_id)
    # Then it may only invoke, and only the four unqualified function ARNs
    assert lambda_actions == {"lambda:InvokeFunction"}
    assert sorted(invoked, key=str) == sorted(
        ({"Fn::GetAtt": [function_by_step(synth, step)[0], "Arn"]} for step in STEPS), key=str
    )
    # And it reaches no data store itself
    assert data_grants(synth, role_id) == {}


# -- API -----------------------------------------------------------------------------------------


# API Gateway's integration timeout: the whole ingest run must answer within it.
API_INTEGRATION_TIMEOUT_SECONDS = 29


def retry_waits(retrier: dict[str, Any]) -> list[float]:
    """The longest wait before each retry (FULL jitter draws each in [0, wait])."""
    wait, cap = float(retrier.get("IntervalSeconds", 1)), float(retrier.get("MaxDelaySeconds", float("inf")))
    waits = []
    for _ in range(int(retrier.get("MaxAttempts", 3))):
        waits.append(min(wait, cap))
        wait *= float(retrier.get("BackoffRate", 2.0))
    return waits


def test_ingest_steps_wait_out_lambda_throttling_within_the_apis_timeout() -> None:
    # Given each Lambda step of the ingest machines' definition
    document = json.loads(INGEST_ASL.read_text(encoding="utf-8"))
    steps = {name: state for name, state in document["States"].items() if "Retry" in state}
    assert set(steps) == {"Validate", "Dedup", "StorePending", "Enqueue"}
    for name, state in steps.items():
        # Then Lambda's throttling (a new account may run only 10 functions at once) has a retrier
        # of its own, spread with full jitter, that keeps trying for several seconds
        (retrier,) = [r for r in state["Retry"] if "Lambda.TooManyRequestsException" in r["ErrorEquals"]]
        assert retrier["ErrorEquals"] == ["Lambda.TooManyRequestsException"], name
        assert retrier["JitterStrategy"] == "FULL" and retrier["MaxAttempts"] >= 5, name
        assert sum(retry_waits(retrier)) >= 10, name
        # And a throttled step gives up well inside API Gateway's integration timeout
        assert sum(retry_waits(retrier)) < API_INTEGRATION_TIMEOUT_SECONDS / 2, name


def test_a_failed_ingest_run_answers_the_apis_system_error() -> None:
    from functions.services.http_api.responses import SYSTEM_ERROR, SYSTEM_ERROR_MESSAGE

    # Given the state that turns any failure of an ingest run into the answer
    error = json.loads(INGEST_ASL.read_text(encoding="utf-8"))["States"]["BuildSystemError"]["Parameters"]["error"]
    # Then it says what the API's mappings and the batch's per-message answers say
    assert (error["code"], error["message"]) == (SYSTEM_ERROR, SYSTEM_ERROR_MESSAGE)


def test_post_messages_starts_the_ingest_machine_synchronously(synth: Synthesized) -> None:
    # Given POST /messages
    integration = post_messages(synth)["Properties"]["Integration"]
    machine_id = state_machines(synth)["ingest"][0]
    # Then API Gateway calls Step Functions' StartSyncExecution itself (no Lambda proxy)
    assert integration["Type"] == "AWS"
    assert integration["IntegrationHttpMethod"] == "POST"
    assert joined(integration["Uri"]).endswith(":states:action/StartSyncExecution")
    assert integration["PassthroughBehavior"] == "NEVER"
    # And the request template builds the machine's input for this machine
    template = joined(integration["RequestTemplates"]["application/json"])
    assert f'"stateMachineArn":"<{machine_id}>"' in template
    for field in ("requestId", "senderId", "bodyBase64"):
        assert f'\\"{field}\\"' in template
    assert "$util.base64Encode($input.body)" in template
    assert "$!context.authorizer.senderId" in template
    assert "$context.requestId" in template


def test_request_template_cuts_oversized_bodies_just_over_the_limit(synth: Synthesized) -> None:
    # Given the request template and the request size validate accepts
    template = joined(post_messages(synth)["Properties"]["Integration"]["RequestTemplates"]["application/json"])
    settings = RelaySettings.defaults()
    from functions.domain.validation import ENVELOPE_ALLOWANCE_BYTES

    limit = settings.max_body_bytes + ENVELOPE_ALLOWANCE_BYTES
    cut = forwarded_base64_chars(limit)
    # Then a longer body is cut at a base64 length that decodes to more than the limit (-> 413),
    # and that still fits a Step Functions input of 256 KiB
    assert f"$bodyBase64.length() > {cut}" in template
    assert f"$bodyBase64.substring(0, {cut})" in template
    assert cut % 4 == 0
    assert cut // 4 * 3 > limit
    assert cut + 1024 < 256 * 1024


def test_the_api_role_may_only_start_the_two_ingest_machines_synchronously(synth: Synthesized) -> None:
    # Given the role the integrations assume
    integration = post_messages(synth)["Properties"]["Integration"]
    role_id = integration["Credentials"]["Fn::GetAtt"][0]
    machines = state_machines(synth)
    # Then API Gateway assumes it, and it allows exactly states:StartSyncExecution on the ingest machines
    trust = synth.resources[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [statement["Principal"] for statement in trust] == [{"Service": "apigateway.amazonaws.com"}]
    statements = role_statements(synth, role_id)
    assert [(actions_of(s), sorted(resources_of(s), key=str)) for s in statements] == [
        (
            ["states:StartSyncExecution"],
            sorted([{"Ref": machines["ingest"][0]}, {"Ref": machines["batch"][0]}], key=str),
        )
    ]
    # And POST /messages/batch uses that same role
    batch = post_batch(synth)["Properties"]["Integration"]
    assert batch["Credentials"] == integration["Credentials"]


def test_the_batch_machine_is_express_runs_the_same_definition_and_steps_and_marks_its_input(
    synth: Synthesized,
) -> None:
    # Given the two ingest machines
    machines = state_machines(synth)
    single, batch = machines["ingest"][1]["Properties"], machines["batch"][1]["Properties"]
    # Then the batch machine is EXPRESS, its definition the one ingest file's, with the single machine's
    # functions: only the request shape it hands to Validate differs
    assert batch["StateMachineType"] == "EXPRESS"
    assert batch["DefinitionString"] == single["DefinitionString"]
    assert {**batch["DefinitionSubstitutions"], "RequestShape": "message"} == single["DefinitionSubstitutions"]
    assert batch["DefinitionSubstitutions"]["RequestShape"] == "batch"
    rendered, expected = batch["DefinitionString"], INGEST_ASL.read_text(encoding="utf-8")
    for placeholder, value in batch["DefinitionSubstitutions"].items():
        rendered = rendered.replace("${" + placeholder + "}", joined(value))
        expected = expected.replace("${" + placeholder + "}", joined(value))
    assert rendered == expected
    # And its role may invoke exactly those four functions and reach no data itself
    lambda_actions, invoked = invoked_functions(synth, machine_role(machines["batch"][1]))
    assert lambda_actions == {"lambda:InvokeFunction"}
    assert sorted(invoked, key=str) == sorted(
        ({"Fn::GetAtt": [function_by_step(synth, step)[0], "Arn"]} for step in STEPS), key=str
    )
    assert data_grants(synth, machine_role(machines["batch"][1])) == {}
    # And it logs and traces like the single one, into a log group of its own
    assert batch["TracingConfiguration"] == {"Enabled": True}
    assert batch["LoggingConfiguration"]["Level"] == single["LoggingConfiguration"]["Level"]
    assert batch["LoggingConfiguration"] != single["LoggingConfiguration"]
    # And relay dev runs it as relay-ingest-batch
    assert build_topology(synth.template).state_machines["relay-ingest-batch"].type == "EXPRESS"


def test_post_messages_batch_starts_the_batch_machine_with_the_same_front_door(synth: Synthesized) -> None:
    from functions.domain.validation import MAX_BATCH_REQUEST_BYTES

    # Given POST /messages/batch beside POST /messages
    single, batch = post_messages(synth)["Properties"], post_batch(synth)["Properties"]
    batch_id = state_machines(synth)["batch"][0]
    integration = batch["Integration"]
    # Then it has the same authorizer and API key requirement
    for key in ("AuthorizationType", "AuthorizerId", "ApiKeyRequired"):
        assert batch[key] == single[key], key
    # And API Gateway calls StartSyncExecution of the batch machine with the same kind of input
    assert joined(integration["Uri"]).endswith(":states:action/StartSyncExecution")
    assert integration["PassthroughBehavior"] == "NEVER"
    template = joined(integration["RequestTemplates"]["application/json"])
    assert f'"stateMachineArn":"<{batch_id}>"' in template
    # And cuts the request just over the batch limit, within Step Functions' 256 KiB input
    cut = forwarded_base64_chars(MAX_BATCH_REQUEST_BYTES)
    assert f"$bodyBase64.substring(0, {cut})" in template
    assert cut + 1024 <= 256 * 1024
    assert forwarded_base64_chars(MAX_BATCH_REQUEST_BYTES + 3) + 1024 > 256 * 1024
    # And answers through the same integration responses
    assert integration["IntegrationResponses"] == single["Integration"]["IntegrationResponses"]
    codes = {response["StatusCode"] for response in batch["MethodResponses"]}
    assert codes == {"200", "400", "401", "403", "413", "415", "429", "500", "504"}


def test_responses_read_the_run_status_and_never_pass_aws_text_on(synth: Synthesized) -> None:
    # Given the integration responses
    responses = post_messages(synth)["Properties"]["Integration"]["IntegrationResponses"]
    by_pattern = {response.get("SelectionPattern"): response for response in responses}
    success = by_pattern[None]["ResponseTemplates"]["application/json"]
    # Then a successful call answers with the run's own statusCode and body only when it SUCCEEDED
    assert by_pattern[None]["StatusCode"] == "200"
    assert '"$!run.status" == "SUCCEEDED"' in success
    assert "$util.parseJson($run.output)" in success
    assert "$context.responseOverride.status = $answer.statusCode" in success
    assert "$answer.body" in success
    assert "$context.responseOverride.status = 500" in success
    # And failures of Step Functions itself (4xx, 5xx) become Relay's own error body
    assert set(by_pattern) == {None, r"4\d{2}", r"5\d{2}"}
    for template in (response["ResponseTemplates"]["application/json"] for response in responses):
        assert '"code":"SYSTEM_ERROR"' in template
        assert '"requestId":"$context.requestId"' in template
        for aws_field in ("$.error", "$.cause", "$.message", "$input.body", "$input.json"):
            assert aws_field not in template


def test_post_messages_declares_the_statuses_it_answers_with(synth: Synthesized) -> None:
    # Given the method responses
    codes = {response["StatusCode"] for response in post_messages(synth)["Properties"]["MethodResponses"]}
    # Then every status of the contract is declared
    assert {"200", "202", "400", "403", "409", "413", "429", "500"} <= codes


def test_gateway_errors_use_relays_error_shape(synth: Synthesized) -> None:
    # Given API Gateway's own responses (throttling, unsupported media type, defaults)
    responses = {
        value["Properties"]["ResponseType"]: value["Properties"]
        for value in synth.of_type("AWS::ApiGateway::GatewayResponse").values()
    }
    # Then each answers {"error": {code, message, requestId}} in JSON
    assert {"DEFAULT_4XX", "DEFAULT_5XX", "THROTTLED", "UNSUPPORTED_MEDIA_TYPE"} <= set(responses)
    for response in responses.values():
        template = response["ResponseTemplates"]["application/json"]
        rendered = template.replace("$context.error.messageString", '"text"')
        body = json.loads(rendered)
        assert set(body["error"]) == {"code", "message", "requestId"}
    assert responses["THROTTLED"]["StatusCode"] == "429"


def test_stage_is_traced_and_caps_no_callers_together_by_default(synth: Synthesized) -> None:
    # Given the API's stage as cdk.json leaves it
    _, stage = only(synth.of_type("AWS::ApiGateway::Stage"))
    props = stage["Properties"]
    # Then it is traced and logs no request data
    assert props["TracingEnabled"] is True
    settings = method_settings(stage)
    assert set(settings) == {EVERY_METHOD, *CONSOLE_SETTINGS}
    assert all(setting["DataTraceEnabled"] is False for setting in settings.values())
    # And no stage or method throttle caps all senders together (the account's limit is the only one;
    # the web console's static files have a throttle of their own)
    for path, setting in settings.items():
        if path not in CONSOLE_SETTINGS:
            assert "ThrottlingRateLimit" not in setting and "ThrottlingBurstLimit" not in setting


def test_the_accounts_cloudwatch_role_is_neither_set_nor_needed_by_default(synth: Synthesized) -> None:
    # Given the stack as cdk.json leaves `apiGatewayCloudWatchRole` (none)
    # Then the account's API Gateway CloudWatch role setting is left alone
    assert synth.of_type("AWS::ApiGateway::Account") == {}
    # And the stage enables no CloudWatch logging, which would fail the deploy on an account without one
    _, stage = only(synth.of_type("AWS::ApiGateway::Stage"))
    assert {setting["LoggingLevel"] for setting in method_settings(stage).values()} == {"OFF"}
    assert "AccessLogSetting" not in stage["Properties"]


def test_relay_dev_reads_the_same_api_from_the_template_as_from_the_functions(synth: Synthesized) -> None:
    from relay.local.apigateway.api_definition import definition_from_functions, definition_from_template

    # Given the synthesized template and the functions it is made from
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:relay-ingest"
    from_template = definition_from_template(synth.template, arn, source="template")
    from_functions = definition_from_functions(arn)
    # Then relay dev runs the same mappings, gateway responses and throttles either way
    assert replace(from_template, source="", credentials_role=None) == replace(from_functions, source="")
    # And the same batch route, once it knows the batch machine's local ARN
    batch_arn = arn + "-batch"
    batch_template = definition_from_template(synth.template, arn, "template", batch_arn)
    batch_functions = definition_from_functions(arn, batch_state_machine_arn=batch_arn)
    assert batch_template.batch_request_templates == batch_functions.batch_request_templates
    assert batch_arn in batch_template.batch_request_templates["application/json"]
    # And it knows the role API Gateway starts the machine with
    role_id = post_messages(synth)["Properties"]["Integration"]["Credentials"]["Fn::GetAtt"][0]
    assert from_template.credentials_role == role_id


def test_every_log_group_is_kept_one_month(synth: Synthesized) -> None:
    # Given every log group of the stack
    groups = synth.of_type("AWS::Logs::LogGroup")
    # Then there is one per function and per state machine, and none keeps logs forever
    assert len(groups) >= 6
    assert {group["Properties"]["RetentionInDays"] for group in groups.values()} == {30}


def test_outputs_name_what_a_deployment_needs(synth: Synthesized) -> None:
    # Given the stack outputs
    outputs = synth.template["Outputs"]
    # Then the API URL, table, queue and ingest machine are there
    assert {"ApiUrl", "MessagesUrl", "TableName", "QueueUrl", "IngestStateMachineArn"} <= set(outputs)
    assert outputs["IngestBatchStateMachineArn"]["Value"] == {"Ref": state_machines(synth)["batch"][0]}
    assert outputs["TableName"]["Value"] == {"Ref": table_id(synth)}
    assert outputs["QueueUrl"]["Value"] == {"Ref": queue_ids(synth)[0]}
    assert joined(outputs["MessagesUrl"]["Value"]).endswith("/messages")


def test_stack_is_environment_agnostic(synth: Synthesized) -> None:
    # Given the template
    text = json.dumps(synth.template)
    # Then no account or region was baked in (synth needs no credentials)
    assert "123456789012" not in text
    assert '"Ref": "AWS::Region"' in text


# -- checks --------------------------------------------------------------------------------------


def test_cdk_nag_reports_no_unacknowledged_finding(synth: Synthesized) -> None:
    # Given the AwsSolutions checks ran during synthesis
    reports = synth.report.get("pluginReports", [])
    # Then synthesis did not fail, and no report holds an open violation (error or warning)
    assert synth.error is None, synth.error
    open_findings = [
        (violation["ruleName"], [c["constructPath"] for c in violation.get("violatingConstructs", [])])
        for report in reports
        for violation in report.get("violations", [])
    ]
    assert open_findings == []
    assert any(report["pluginName"] == "AwsSolutions" for report in reports)


def test_every_acknowledged_finding_has_a_reason_and_is_expected(synth: Synthesized) -> None:
    # Given the findings acknowledged in the validation report
    suppressed = [
        violation
        for report in synth.report.get("pluginReports", [])
        for violation in report.get("suppressedViolations", [])
    ]
    # Then each carries a written reason, and the set is exactly the reviewed one
    assert suppressed
    for violation in suppressed:
        assert len(violation["reason"].strip()) > 40, violation
    assert {violation["ruleName"] for violation in suppressed} == EXPECTED_ACKNOWLEDGEMENTS


def test_cfn_lint_finds_nothing(synth: Synthesized) -> None:
    from cfnlint.api import ManualArgs, lint_file

    # Given the synthesized template
    template_file = synth.outdir / "Relay.template.json"
    # When cfn-lint checks it. W3005 (DependsOn already enforced by a GetAtt) is ignored: CDK adds
    # an explicit DependsOn from each function and state machine to its role's default policy, and
    # cfn-lint flags the role part of it as redundant; it is CDK's output, harmless and not ours.
    matches = lint_file(template_file, config=ManualArgs(ignore_checks=["W3005"], regions=["us-east-1"]))
    # Then there is nothing to report
    assert [str(match) for match in matches] == []
