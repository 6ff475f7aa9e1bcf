"""Authentication, the read-and-act routes, the reconciler and observability, as synthesized."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from infra_support import (
    Synthesized,
    actions_of,
    api_method,
    api_resource_id,
    data_grants,
    failed_queue_id,
    function_by_step,
    index_arn,
    joined,
    only,
    queue_arn,
    queue_ids,
    refs,
    resources_of,
    role_statements,
    state_machines,
    step_environment,
    step_role,
    table_arn,
    table_id,
)

from functions.contract.resource_tags import USAGE_PLAN_TABLE_TAG
from functions.contract.settings_names import Setting
from relay.local.apigateway.api_definition import definition_from_template
from relay.local.template import build_topology
from stacks.settings import RelaySettings

ROUTES = [
    ("POST", "/messages"),
    ("POST", "/messages/batch"),
    ("GET", "/messages"),
    ("GET", "/messages/{messageId}"),
    ("POST", "/messages/{messageId}/replay"),
    ("POST", "/messages/{messageId}/cancel"),
    ("POST", "/messages/replay"),
    ("GET", "/replays/{jobId}"),
    ("PUT", "/targets"),
    ("GET", "/targets"),
    ("DELETE", "/targets/{targetId}"),
    ("GET", "/targets/health"),
    ("POST", "/targets/resume"),
    ("GET", "/schedules"),
    ("PUT", "/schedules/{name}"),
    ("GET", "/schedules/{name}"),
    ("DELETE", "/schedules/{name}"),
    ("POST", "/schedules/{name}/pause"),
    ("POST", "/schedules/{name}/resume"),
    ("PUT", "/notifications"),
    ("GET", "/notifications"),
    ("DELETE", "/notifications"),
]
OPERATION_ROUTES = ROUTES[2:]
# The web console's static files: the only methods without the authorizer (they read no data).
CONSOLE_ROUTES = [("GET", "/console"), ("GET", "/console/{asset}")]
RELAY_METRICS = (
    "MessagesAccepted",
    "MessagesDuplicate",
    "MessagesRejected",
    "DeliveryAttempts",
    "DeliveryAttemptsFailed",
    "MessagesDelivered",
    "MessagesFailed",
    "DeliveryLatency",
)


def authorizer(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    return only(synth.of_type("AWS::ApiGateway::Authorizer"))


def function_ref(synth: Synthesized, step: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [function_by_step(synth, step)[0], "Arn"]}


# -- authentication ------------------------------------------------------------------------------


def test_the_authorizer_reads_the_bearer_token_and_is_cached_five_minutes(synth: Synthesized) -> None:
    # Given the API's authorizer
    _, resource = authorizer(synth)
    props = resource["Properties"]
    # Then it is a TOKEN authorizer on the Authorization header, answered by the authorizer function
    assert props["Type"] == "TOKEN"
    assert props["IdentitySource"] == "method.request.header.Authorization"
    assert props["AuthorizerResultTtlInSeconds"] == 300
    uri = props["AuthorizerUri"]["Fn::Join"][1]
    assert uri[-3:] == [":lambda:path/2015-03-31/functions/", function_ref(synth, "authorizer"), "/invocations"]


def test_the_authorizer_function_may_only_get_items(synth: Synthesized) -> None:
    # Given the authorizer's role
    role_id = step_role(synth, "authorizer")
    # Then it may GetItem on the table (token hashes and senders), and nothing else beyond logs and X-Ray
    assert data_grants(synth, role_id) == {"dynamodb:GetItem": [table_arn(synth)]}
    other = {
        action
        for statement in role_statements(synth, role_id)
        for action in actions_of(statement)
        if not action.startswith(("logs:", "xray:", "dynamodb:"))
    }
    assert other == set()


def test_api_keys_come_from_the_authorizer(synth: Synthesized) -> None:
    # Given the REST API
    _, api = only(synth.of_type("AWS::ApiGateway::RestApi"))
    # Then API Gateway takes each request's API key from the authorizer's usageIdentifierKey
    assert api["Properties"]["ApiKeySourceType"] == "AUTHORIZER"


@pytest.mark.parametrize(("http_method", "path"), ROUTES)
def test_every_route_requires_the_authorizer_and_an_api_key(synth: Synthesized, http_method: str, path: str) -> None:
    # Given one route of the API
    props = api_method(synth, http_method, path)["Properties"]
    # Then it is behind the token authorizer and needs the sender's API key (per-sender throttling)
    assert props["AuthorizationType"] == "CUSTOM"
    assert props["AuthorizerId"] == {"Ref": authorizer(synth)[0]}
    assert props["ApiKeyRequired"] is True


def test_the_api_has_no_other_methods(synth: Synthesized) -> None:
    # Given every method of the API
    methods = synth.of_type("AWS::ApiGateway::Method").values()
    # Then they are exactly the routes above and the console's, so none but the console's files
    # escapes the authorizer
    assert len(methods) == len(ROUTES) + len(CONSOLE_ROUTES)
    open_methods = {
        (method["Properties"]["HttpMethod"], method["Properties"]["ResourceId"]["Ref"])
        for method in methods
        if method["Properties"]["AuthorizationType"] != "CUSTOM"
    }
    assert open_methods == {(http_method, api_resource_id(synth, path)) for http_method, path in CONSOLE_ROUTES}


def test_post_messages_takes_the_sender_from_the_authorizer(synth: Synthesized) -> None:
    # Given the ingest request template of POST /messages
    integration = api_method(synth, "POST", "/messages")["Properties"]["Integration"]
    template = joined(integration["RequestTemplates"]["application/json"])
    # Then the execution input's senderId is the authorizer's senderId, never a request value
    assert '#set($senderId = "$!context.authorizer.senderId")' in template
    assert '\\"senderId\\":\\"$senderId\\"' in template
    assert "$input.params" not in template


def test_a_default_usage_plan_throttles_each_sender_on_the_stage(synth: Synthesized) -> None:
    # Given the usage plan
    _, plan = only(synth.of_type("AWS::ApiGateway::UsagePlan"))
    settings = RelaySettings.defaults()
    api_id = only(synth.of_type("AWS::ApiGateway::RestApi"))[0]
    stage_id = only(synth.of_type("AWS::ApiGateway::Stage"))[0]
    # Then it covers the API's stage and throttles every key on its own with the senders' default limits
    (stage,) = plan["Properties"]["ApiStages"]
    assert (stage["ApiId"], stage["Stage"]) == ({"Ref": api_id}, {"Ref": stage_id})
    assert plan["Properties"]["Throttle"] == {
        "RateLimit": settings.sender_rate_limit,
        "BurstLimit": settings.sender_burst_limit,
    }
    # And its id is an output for `relay senders create`
    assert synth.template["Outputs"]["UsagePlanId"]["Value"] == {
        "Ref": only(synth.of_type("AWS::ApiGateway::UsagePlan"))[0]
    }
    # And it carries the table's name, so `relay senders create --table T` finds it
    assert plan["Properties"]["Tags"] == [{"Key": USAGE_PLAN_TABLE_TAG, "Value": {"Ref": table_id(synth)}}]
    # And every method behind the authorizer requires the API key that the plan holds (the only open
    # ones are the console's static files)
    methods = [method["Properties"] for _, method in synth.of_type("AWS::ApiGateway::Method").items()]
    guarded = [method for method in methods if method["AuthorizationType"] != "NONE"]
    assert guarded and all(method["ApiKeyRequired"] is True for method in guarded)
    assert len(methods) - len(guarded) == 2


@pytest.mark.parametrize(
    ("response_type", "status", "code"),
    [
        ("UNAUTHORIZED", "401", "UNAUTHORIZED"),
        ("ACCESS_DENIED", "403", "FORBIDDEN"),
        ("INVALID_API_KEY", "403", "FORBIDDEN"),
        ("THROTTLED", "429", "THROTTLED"),
        ("QUOTA_EXCEEDED", "429", "THROTTLED"),
        # An unknown path or method (API Gateway says "Missing Authentication Token").
        ("MISSING_AUTHENTICATION_TOKEN", "404", "NOT_FOUND"),
    ],
)
def test_authentication_throttling_and_routing_errors_use_relays_error_shape(
    synth: Synthesized, response_type: str, status: str, code: str
) -> None:
    # Given API Gateway's own answer of one type
    responses = [
        value["Properties"]
        for value in synth.of_type("AWS::ApiGateway::GatewayResponse").values()
        if value["Properties"]["ResponseType"] == response_type
    ]
    (response,) = responses
    # Then it has the status and Relay's {"error": {code, message, requestId}} body
    assert response["StatusCode"] == status
    body = json.loads(response["ResponseTemplates"]["application/json"])
    assert body["error"]["code"] == code
    assert body["error"]["requestId"] == "$context.requestId"
    assert body["error"]["message"]


def test_a_disabled_senders_key_gets_the_same_answer_as_a_denied_sender(synth: Synthesized) -> None:
    # Given the answers to a denied sender and to a disabled (or missing) API key: while API Gateway
    # still serves a disabled sender's token from the authorizer cache, its disabled key refuses it
    bodies = {
        value["Properties"]["ResponseType"]: json.loads(value["Properties"]["ResponseTemplates"]["application/json"])
        for value in synth.of_type("AWS::ApiGateway::GatewayResponse").values()
        if value["Properties"]["ResponseType"] in ("INVALID_API_KEY", "ACCESS_DENIED")
    }
    # Then both are 403 FORBIDDEN with FORBIDDEN's text
    assert bodies["INVALID_API_KEY"]["error"] == bodies["ACCESS_DENIED"]["error"]
    assert "disabled" in bodies["INVALID_API_KEY"]["error"]["message"]


def test_unauthorized_names_the_bearer_scheme(synth: Synthesized) -> None:
    # Given the 401 answer
    (response,) = [
        value["Properties"]
        for value in synth.of_type("AWS::ApiGateway::GatewayResponse").values()
        if value["Properties"]["ResponseType"] == "UNAUTHORIZED"
    ]
    # Then it tells the client which scheme to use
    assert response["ResponseParameters"] == {"gatewayresponse.header.WWW-Authenticate": "'Bearer'"}


# -- the read-and-act routes ---------------------------------------------------------------------


@pytest.mark.parametrize(("http_method", "path"), OPERATION_ROUTES)
def test_operation_routes_proxy_to_the_api_function(synth: Synthesized, http_method: str, path: str) -> None:
    # Given one of the read-and-act routes
    integration = api_method(synth, http_method, path)["Properties"]["Integration"]
    # Then API Gateway hands the whole request to the api function (Lambda proxy)
    assert integration["Type"] == "AWS_PROXY"
    assert integration["IntegrationHttpMethod"] == "POST"
    assert f"/functions/<{function_by_step(synth, 'api')[0]}.Arn>/invocations" in joined(integration["Uri"])


@pytest.mark.parametrize(("http_method", "path"), CONSOLE_ROUTES)
def test_the_console_is_served_by_the_api_function_without_the_authorizer(
    synth: Synthesized, http_method: str, path: str
) -> None:
    # Given one of the web console's routes
    props = api_method(synth, http_method, path)["Properties"]
    # Then the api function serves it (Lambda proxy): its static files, to anyone, with no API key
    assert props["Integration"]["Type"] == "AWS_PROXY"
    assert f"/functions/<{function_by_step(synth, 'api')[0]}.Arn>/invocations" in joined(props["Integration"]["Uri"])
    assert props["AuthorizationType"] == "NONE" and "AuthorizerId" not in props
    assert props["ApiKeyRequired"] is False


def test_the_console_has_a_throttle_of_its_own_and_only_text_answers(synth: Synthesized) -> None:
    # Given the stage's method settings and the REST API
    _, stage = only(synth.of_type("AWS::ApiGateway::Stage"))
    settings = {(item["ResourcePath"], item["HttpMethod"]): item for item in stage["Properties"]["MethodSettings"]}
    _, api = only(synth.of_type("AWS::ApiGateway::RestApi"))
    # Then anonymous requests for the console's files are throttled on their own, all callers together
    for resource_path in ("/~1console", "/~1console~1{asset}"):
        throttle = settings[(resource_path, "GET")]
        assert (throttle["ThrottlingRateLimit"], throttle["ThrottlingBurstLimit"]) == (10, 40)
        assert (throttle["LoggingLevel"], throttle["DataTraceEnabled"]) == ("OFF", False)  # as the stage
    # And the API declares no binary media types, so the files' text passes through unchanged
    assert "BinaryMediaTypes" not in api["Properties"]
    # And the findings of open methods are acknowledged with a reason, nothing else fails synthesis
    assert synth.error is None


def test_the_api_function_may_make_exactly_the_calls_its_routes_make(synth: Synthesized) -> None:
    # Given what each route of the api function calls (functions/services/http_api/operations.py and repository.py)
    main, _ = queue_ids(synth)
    table, status_index = table_arn(synth), index_arn(synth, "byStatus")
    replay_machine = {"Ref": state_machines(synth)["replay"][0]}
    sender_index = index_arn(synth, "bySender")
    needs: dict[str, dict[str, list[Any]]] = {
        # the head and the content in one consistent batch read
        "GET /messages/{messageId}": {"dynamodb:BatchGetItem": [table], "dynamodb:Query": [table]},
        # the indexes hold keys only: a page of keys, then the messages it names in one batch
        "GET /messages?status=": {"dynamodb:Query": [sender_index, status_index], "dynamodb:BatchGetItem": [table]},
        # one conditional update of the head (status and event); a replay is enqueued
        "POST /messages/{messageId}/replay": {
            "dynamodb:GetItem": [table],
            "dynamodb:UpdateItem": [table],
            "sqs:SendMessage": [queue_arn(main)],
        },
        "POST /messages/{messageId}/cancel": {"dynamodb:GetItem": [table], "dynamodb:UpdateItem": [table]},
        # a bulk replay counts its matches (byStatus keys, contents), writes its job, starts its run
        "POST /messages/replay": {
            "dynamodb:Query": [status_index],
            "dynamodb:BatchGetItem": [table],
            "dynamodb:PutItem": [table],
            "states:StartExecution": [replay_machine],
        },
        "GET /replays/{jobId}": {"dynamodb:GetItem": [table]},
        # functions/services/targeting/targets.py: a target's limits item; the listing's keys, then the limits and
        # flow items they name; a deletion removes the limits, reads which flow items exist, removes those
        "PUT /targets": {"dynamodb:PutItem": [table]},
        "GET /targets": {"dynamodb:Query": [status_index], "dynamodb:BatchGetItem": [table]},
        "DELETE /targets/{targetId}": {"dynamodb:DeleteItem": [table], "dynamodb:BatchGetItem": [table]},
        # functions/services/scheduling/schedules.py: one schedule item each; a deletion or pause cancels the
        # firings already created (their heads, read and updated by key)
        "PUT /schedules/{name}": {"dynamodb:GetItem": [table], "dynamodb:PutItem": [table]},
        "GET /schedules": {"dynamodb:Query": [table]},
        "DELETE /schedules/{name}": {"dynamodb:DeleteItem": [table], "dynamodb:UpdateItem": [table]},
        # a sender's notification setting: one item (functions/adapters/stores/notification_store.py)
        "PUT /notifications": {"dynamodb:PutItem": [table]},
        "GET /notifications": {"dynamodb:GetItem": [table]},
        "DELETE /notifications": {"dynamodb:DeleteItem": [table]},
    }
    required: dict[str, list[Any]] = {}
    for calls in needs.values():
        for action, resources in calls.items():
            required.setdefault(action, [])
            required[action] += [resource for resource in resources if resource not in required[action]]
    # Then its role grants every one of those calls on exactly those resources (a missing grant is a
    # 500 on AWS, as BatchGetItem was for the listing), and nothing else: the one run it may start is
    # a bulk replay's
    assert data_grants(synth, step_role(synth, "api")) == {
        action: refs(*resources) for action, resources in required.items()
    }


def test_the_api_function_writes_only_messages_targets_replay_jobs_and_schedules(synth: Synthesized) -> None:
    # Given the api function's statements that allow a DynamoDB write
    writes = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
    statements = [s for s in role_statements(synth, step_role(synth, "api")) if writes & set(actions_of(s))]
    # Then each is limited to the items whose partition key is a message's, a target's or a replay
    # job's: the function that parses the internet's requests cannot rewrite a sender or a token
    assert statements
    for statement in statements:
        assert statement["Condition"] == {
            "ForAllValues:StringLike": {
                "dynamodb:LeadingKeys": ["MSG#*", "TARGET#*", "REPLAY#*", "SCHEDULE#*", "NOTIFY#*"]
            }
        }


def test_no_function_may_write_every_item_of_the_table(synth: Synthesized) -> None:
    # Given every statement of the stack that allows a DynamoDB item write
    writes = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
    statements = [
        statement
        for policy in synth.of_type("AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if writes & set(actions_of(statement))
    ]
    # Then each names the kinds of item it may write (LeadingKeys), and only message, target and
    # replay job items (and the Relay's own: activity minutes, schedules, notification settings, the
    # scheduler's cursors): sender records and token hashes are written by `relay senders` alone
    assert statements
    for statement in statements:
        patterns = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        allowed = {"MSG#*", "TARGET#*", "REPLAY#*", "ACTIVE#*", "SCHEDULE#*", "NOTIFY#*", "CURSOR#*"}
        assert set(patterns) <= allowed, statement


def test_the_api_function_is_configured_for_replays(synth: Synthesized) -> None:
    # Given the api function's environment
    variables = step_environment(synth, "api")
    settings = RelaySettings.defaults()
    main, _ = queue_ids(synth)
    # Then it knows the table, the delivery queue and when the reconciler takes over a replay
    assert variables[Setting.TABLE_NAME] == {"Ref": table_id(synth)}
    assert variables[Setting.QUEUE_URL] == {"Ref": main}
    assert variables[Setting.REDRIVE_AFTER_SECONDS] == str(settings.redrive_after_seconds)


def test_api_gateway_may_invoke_the_functions_behind_it(synth: Synthesized) -> None:
    # Given the functions' resource policies
    permissions = synth.of_type("AWS::Lambda::Permission").values()
    invoked = {
        (json.dumps(p["Properties"]["FunctionName"], sort_keys=True), p["Properties"]["Principal"]) for p in permissions
    }
    # Then API Gateway may invoke the api function and the authorizer
    for step in ("api", "authorizer"):
        assert (json.dumps(function_ref(synth, step), sort_keys=True), "apigateway.amazonaws.com") in invoked


# -- reconciler ----------------------------------------------------------------------------------


def rule_of(synth: Synthesized, step: str) -> dict[str, Any]:
    """The EventBridge rule whose one target is the function of `step`."""
    (rule,) = [
        rule["Properties"]
        for rule in synth.of_type("AWS::Events::Rule").values()
        if [target["Arn"] for target in rule["Properties"]["Targets"]] == [function_ref(synth, step)]
    ]
    return rule


@pytest.mark.parametrize("step", ["reconciler", "scheduler"])
def test_the_reconciler_and_the_scheduler_run_every_minute(synth: Synthesized, step: str) -> None:
    # Given the function's schedule rule
    props = rule_of(synth, step)
    # Then it runs the function every minute, without retrying old rounds
    assert props["ScheduleExpression"] == "rate(1 minute)"
    assert props["State"] == "ENABLED"
    (target,) = props["Targets"]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    # And a round ends before the next one starts
    assert function_by_step(synth, step)[1]["Properties"]["Timeout"] < 60


def test_the_stack_has_exactly_the_two_schedule_rules(synth: Synthesized) -> None:
    assert len(synth.of_type("AWS::Events::Rule")) == 2


def test_the_scheduler_may_read_its_shards_store_firings_and_queue(synth: Synthesized) -> None:
    # Given the scheduler's role
    main, _ = queue_ids(synth)
    # Then it queries the due index, reads and writes items by key, and sends to the delivery queue:
    # nothing else
    assert data_grants(synth, step_role(synth, "scheduler")) == {
        "dynamodb:Query": [index_arn(synth, "due")],
        "dynamodb:GetItem": [table_arn(synth)],
        "dynamodb:UpdateItem": [table_arn(synth), table_arn(synth)],
        "dynamodb:PutItem": [table_arn(synth)],
        "sqs:SendMessage": [queue_arn(main)],
    }
    # And its writes reach messages and schedules, and (updates only) the senders' activity minutes
    # and its shards' cursors
    writes = {"dynamodb:PutItem", "dynamodb:UpdateItem"}
    statements = [s for s in role_statements(synth, step_role(synth, "scheduler")) if writes & set(actions_of(s))]
    reach = {
        tuple(sorted(actions_of(s))): s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        for s in statements
    }
    assert reach == {
        ("dynamodb:PutItem", "dynamodb:UpdateItem"): ["MSG#*", "SCHEDULE#*"],
        ("dynamodb:UpdateItem",): ["ACTIVE#*", "CURSOR#*"],
    }


def test_the_reconciler_may_query_the_due_index_redrive_and_fail(synth: Synthesized) -> None:
    # Given the reconciler's role
    main, dead_letter = queue_ids(synth)
    # Then it queries the sparse due and byStatus indexes (senders, a target's PAUSED range, the targets
    # that closed) and bySender (the sweep), reads and updates heads and target health, re-enqueues
    # and dead-letters: nothing else
    assert data_grants(synth, step_role(synth, "reconciler")) == {
        # the table itself too: the senders active per minute (ACTIVE#) for the sweep
        "dynamodb:Query": refs(
            index_arn(synth, "due"), index_arn(synth, "byStatus"), index_arn(synth, "bySender"), table_arn(synth)
        ),
        "dynamodb:GetItem": [table_arn(synth)],
        "dynamodb:BatchGetItem": [table_arn(synth)],
        "dynamodb:UpdateItem": [table_arn(synth)],
        "dynamodb:PutItem": [table_arn(synth)],  # older events to an overflow item
        "sqs:SendMessage": refs(queue_arn(main), queue_arn(failed_queue_id(synth))),
        # dispatches that failed too often are taken back from the dead-letter queue
        "sqs:ReceiveMessage": [queue_arn(dead_letter)],
        "sqs:DeleteMessage": [queue_arn(dead_letter)],
    }


def test_the_reconciler_is_configured_like_the_delivery_functions(synth: Synthesized) -> None:
    # Given the reconciler's environment
    variables = step_environment(synth, "reconciler")
    main, _ = queue_ids(synth)
    # Then it knows both queues and the delivery settings fail_message uses
    assert variables[Setting.QUEUE_URL] == {"Ref": main}
    assert variables[Setting.FAILED_QUEUE_URL] == {"Ref": failed_queue_id(synth)}
    assert variables[Setting.ALLOW_PRIVATE_TARGETS] == "false"
    assert variables[Setting.SLOW_LANE_LEASE_SECONDS] == str(RelaySettings.defaults().slow_lane_lease_seconds)


@pytest.mark.parametrize("step", ["authorizer", "api", "reconciler", "scheduler"])
def test_no_operations_function_has_wildcard_actions(synth: Synthesized, step: str) -> None:
    # Given a function's role
    # Then every action is named, and only X-Ray (no resource-level permissions) is on `*`
    for statement in role_statements(synth, step_role(synth, step)):
        assert all("*" not in action for action in actions_of(statement)), statement
        if "*" in resources_of(statement):
            assert all(action.startswith("xray:") for action in actions_of(statement)), statement


# -- observability -------------------------------------------------------------------------------


def alarms(synth: Synthesized) -> list[dict[str, Any]]:
    return [value["Properties"] for value in synth.of_type("AWS::CloudWatch::Alarm").values()]


def alarm_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """The plain metrics an alarm reads (single-metric or metric-math form)."""
    if "MetricName" in alarm:
        return [{"MetricName": alarm["MetricName"], "Namespace": alarm["Namespace"], "Dimensions": alarm["Dimensions"]}]
    return [query["MetricStat"]["Metric"] for query in alarm["Metrics"] if "MetricStat" in query]


def alarms_on(synth: Synthesized, metric_name: str) -> list[dict[str, Any]]:
    return [alarm for alarm in alarms(synth) if any(m["MetricName"] == metric_name for m in alarm_metrics(alarm))]


def test_an_alarm_fires_when_a_message_lands_on_the_failed_queue(synth: Synthesized) -> None:
    # Given the alarms on queue depth
    failed = [
        alarm
        for alarm in alarms_on(synth, "ApproximateNumberOfMessagesVisible")
        if alarm_metrics(alarm)[0]["Dimensions"]
        == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [failed_queue_id(synth), "QueueName"]}}]
    ]
    # Then one fires as soon as the failed-messages queue holds any message
    (alarm,) = failed
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


@pytest.mark.parametrize("lane", ["fast", "slow"])
def test_an_alarm_fires_when_a_lanes_runs_fail(synth: Synthesized, lane: str) -> None:
    # Given the alarms on failed executions
    machine = {"Ref": state_machines(synth)[lane][0]}
    matching = [
        alarm
        for alarm in alarms_on(synth, "ExecutionsFailed")
        if {"Name": "StateMachineArn", "Value": machine} in alarm_metrics(alarm)[0]["Dimensions"]
    ]
    # Then one watches this lane (timed-out runs count too)
    (alarm,) = matching
    assert {m["MetricName"] for m in alarm_metrics(alarm)} >= {"ExecutionsFailed", "ExecutionsTimedOut"}
    assert alarm["Threshold"] == 0


def test_an_alarm_fires_on_api_5xx(synth: Synthesized) -> None:
    # Given the alarm on the API's server errors
    (alarm,) = alarms_on(synth, "5XXError")
    # Then it watches this API by name
    (metric,) = alarm_metrics(alarm)
    assert metric["Namespace"] == "AWS/ApiGateway"
    api = only(synth.of_type("AWS::ApiGateway::RestApi"))[1]
    assert metric["Dimensions"] == [{"Name": "ApiName", "Value": api["Properties"]["Name"]}]


def test_an_alarm_fires_on_the_delivery_failure_rate(synth: Synthesized) -> None:
    # Given the failure-rate alarm (metric math over Relay's own metrics)
    (alarm,) = alarms_on(synth, "MessagesDelivered")
    expressions = [query["Expression"] for query in alarm["Metrics"] if "Expression" in query]
    by_id = {query["Id"]: query["MetricStat"]["Metric"] for query in alarm["Metrics"] if "MetricStat" in query}
    # Then it divides failed by delivered + failed, from the Powertools namespace and service
    (expression,) = expressions
    assert re.fullmatch(r"FILL\(failed, 0\) / \(FILL\(delivered, 0\) \+ FILL\(failed, 0\)\)", expression)
    assert by_id["failed"]["MetricName"] == "MessagesFailed"
    assert by_id["delivered"]["MetricName"] == "MessagesDelivered"
    for metric in by_id.values():
        assert metric["Namespace"] == "Relay"
        assert metric["Dimensions"] == [{"Name": "service", "Value": "relay"}]
    assert 0 < alarm["Threshold"] < 1


def test_an_alarm_fires_when_deliveries_find_no_signing_secret(synth: Synthesized) -> None:
    # Given the alarm on Relay's SigningSecretMissing metric (emitted by the deliver function)
    (alarm,) = alarms_on(synth, "SigningSecretMissing")
    # Then the first such attempt alarms, and the description tells the operator how to fix it
    (metric,) = alarm_metrics(alarm)
    assert metric["Namespace"] == "Relay"
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert "rotate-secret" in alarm["AlarmDescription"]


def test_the_open_targets_alarm_stays_on_while_a_target_is_open(synth: Synthesized) -> None:
    # Given the alarm on the OpenTargets gauge (the reconciler counts open targets every minute)
    (alarm,) = alarms_on(synth, "OpenTargets")
    # Then it reads the gauge's maximum, so it is on in every period some target is open, not only
    # in the one where it opened
    statistics = {alarm.get("Statistic")} | {
        q["MetricStat"]["Stat"] for q in alarm.get("Metrics", []) if "MetricStat" in q
    }
    assert statistics - {None} == {"Maximum"}
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert "relay targets resume" in alarm["AlarmDescription"]


def test_alarms_treat_missing_data_as_fine(synth: Synthesized) -> None:
    # Given every alarm
    # Then quiet periods (no traffic) never alarm
    assert alarms(synth)
    assert {alarm["TreatMissingData"] for alarm in alarms(synth)} == {"notBreaching"}


def test_one_dashboard_shows_the_whole_path(synth: Synthesized) -> None:
    # Given the dashboard
    dashboard_id, dashboard = only(synth.of_type("AWS::CloudWatch::Dashboard"))
    body = joined(dashboard["Properties"]["DashboardBody"])
    # Then it charts Relay's metrics, the latency percentiles, the queues and the runs
    for name in RELAY_METRICS:
        assert f'"{name}"' in body, name
    assert '"stat":"p50"' in body
    assert '"stat":"p99"' in body
    assert "ApproximateNumberOfMessagesVisible" in body
    for lane in ("fast", "slow"):
        assert f"<{state_machines(synth)[lane][0]}>" in body
    assert "ExecutionsStarted" in body
    # And its name is an output
    assert synth.template["Outputs"]["DashboardName"]["Value"] == {"Ref": dashboard_id}


def test_outputs_name_what_operators_need(synth: Synthesized) -> None:
    # Given the stack outputs
    outputs = synth.template["Outputs"]
    # Then the earlier ones are kept and the new ones added
    assert {
        "ApiUrl",
        "MessagesUrl",
        "TableName",
        "QueueUrl",
        "DeadLetterQueueUrl",
        "IngestStateMachineArn",
        "UsagePlanId",
        "FailedQueueUrl",
        "FastLaneArn",
        "SlowLaneArn",
        "DashboardName",
    } <= set(outputs)
    assert synth.error is None, synth.error


def test_relay_dev_reads_post_messages_and_the_gateway_responses_from_the_template(synth: Synthesized) -> None:
    # Given the API as relay dev reads it from the synthesized template
    topology = build_topology(synth.template)
    ingest_arn = "arn:aws:states:us-east-1:123456789012:stateMachine:relay-ingest"
    api = definition_from_template(synth.template, ingest_arn, source="template")
    # Then POST /messages starts the local ingest machine, as the integration's role from the template
    assert ingest_arn in api.request_templates["application/json"]
    # (POST /messages/batch starts the batch machine with the same role)
    methods = [
        resource["Properties"]
        for resource in synth.of_type("AWS::ApiGateway::Method").values()
        if "StartSyncExecution" in json.dumps(resource["Properties"].get("Integration", {}))
    ]
    assert len(methods) == 2
    (role_id,) = {method["Integration"]["Credentials"]["Fn::GetAtt"][0] for method in methods}
    assert topology.api_start_role_arn is not None and role_id.split("Role")[0] in topology.api_start_role_arn
    # And each gateway response keeps its status, template and headers
    unauthorized = api.gateway_responses["UNAUTHORIZED"]
    assert unauthorized.status_code == "401" and unauthorized.headers.get("WWW-Authenticate") == "Bearer"
    assert '"code":"UNAUTHORIZED"' in unauthorized.templates["application/json"]


def test_the_replay_job_is_a_standard_machine_whose_step_replays_pages_and_nothing_else(synth: Synthesized) -> None:
    # Given the replay machine and its ReplayPage function
    machine_id, machine = state_machines(synth)["replay"]
    main, _ = queue_ids(synth)
    table, status_index = table_arn(synth), index_arn(synth, "byStatus")
    # Then it is STANDARD (a job outlives an Express run's 5 minutes), a bounded loop with a Wait
    assert machine["Properties"]["StateMachineType"] == "STANDARD"
    definition = json.loads(machine["Properties"]["DefinitionString"])
    assert {name: state["Type"] for name, state in definition["States"].items()} == {
        "ReplayPage": "Task",
        "MorePages": "Choice",
        "Throttle": "Wait",
        "RecordFailure": "Task",
        "JobFailed": "Fail",
        "Done": "Succeed",
    }
    # And the ReplayPage function reads the window and the messages, updates heads and the job, and
    # enqueues the new runs: nothing else
    assert data_grants(synth, step_role(synth, "replay")) == {
        "dynamodb:Query": refs(status_index),
        "dynamodb:GetItem": refs(table),
        "dynamodb:BatchGetItem": refs(table),
        "dynamodb:UpdateItem": refs(table),
        "dynamodb:PutItem": refs(table),  # older events to an overflow item
        "sqs:SendMessage": refs(queue_arn(main)),
    }
    # And the api function is told which machine to start
    assert step_environment(synth, "api")[Setting.REPLAY_MACHINE_ARN] == {"Ref": machine_id}
