"""The local API Gateway applies the deployed rules: authorizer, throttles, media types, mappings, timeouts."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from relay.local.apigateway.api_definition import definition_from_functions
from relay.local.apigateway.gateway import Answer, ApiGateway, Caller, GatewayRequest
from stacks.api_mapping import FORBIDDEN_MESSAGE, SYSTEM_ERROR_MESSAGE, UNSUPPORTED_MEDIA_TYPE_MESSAGE

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:relay-ingest"
ACCEPTED = {"statusCode": 202, "body": json.dumps({"status": "PENDING"})}


def policy(effect: str) -> dict[str, Any]:
    resource = "arn:aws:execute-api:us-east-1:123456789012:local/v1/*/*"
    return {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
    }


class FakeAws:
    """The authorizer's answers by token, and StartSyncExecution's by what the run should do."""

    def __init__(self) -> None:
        self.run: Any = {"status": "SUCCEEDED", "output": json.dumps(ACCEPTED)}
        self.limits: dict[str, dict[str, Any]] = {}
        self.started: list[tuple[str, dict[str, Any]]] = []

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        token = event["authorizationToken"].removeprefix("Bearer ")
        if token == "broken":
            raise RuntimeError("table unreachable")
        if not token.startswith("rly_"):
            raise Exception("Unauthorized")
        sender = token.removeprefix("rly_")
        effect = "Deny" if sender == "disabled" else "Allow"
        return {"principalId": sender, "policyDocument": policy(effect), "context": {"senderId": sender, "n": 1}}

    def start(self, arn: str, execution_input: dict[str, Any]) -> dict[str, Any]:
        self.started.append((arn, execution_input))
        if isinstance(self.run, Exception):
            raise self.run
        if self.run == "slow":
            time.sleep(0.5)
        return dict(self.run) if isinstance(self.run, dict) else {}


def gateway(aws: FakeAws, context: dict[str, Any] | None = None, timeout: float = 29.0) -> ApiGateway:
    return ApiGateway(
        definition_from_functions(ARN, relay_context=context or {}),
        invoke=aws.invoke,
        start_sync_execution=aws.start,
        sender_limits=lambda sender: aws.limits.get(sender, {}),
        integration_timeout=timeout,
    )


def request(token: str | None = "rly_shop", content_type: str | None = "application/json") -> GatewayRequest:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if content_type is not None:
        headers["content-type"] = content_type
    return GatewayRequest("POST", "/messages", headers, {}, b'{"messageId":"m"}', "127.0.0.1", "req-1")


def post(api: ApiGateway, incoming: GatewayRequest) -> Answer:
    caller = api.admit(incoming)
    return caller if isinstance(caller, Answer) else api.post_messages(incoming, caller)


def error(answer: Answer) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(answer.body)["error"]
    return body


# -- the authorizer -----------------------------------------------------------------------------------


def test_the_authorizers_context_reaches_the_integration_as_strings() -> None:
    aws = FakeAws()
    caller = gateway(aws).admit(request())
    assert caller == Caller("shop", {"senderId": "shop", "n": "1"}, None)


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [(None, 401, "UNAUTHORIZED"), ("nonsense", 401, "UNAUTHORIZED"), ("broken", 500, "SYSTEM_ERROR")],
)
def test_no_token_an_unknown_one_or_a_failing_authorizer(token: str | None, status: int, code: str) -> None:
    answer = post(gateway(FakeAws()), request(token))
    assert (answer.status, error(answer)["code"], error(answer)["requestId"]) == (status, code, "req-1")
    if status == 401:
        assert answer.headers == {"WWW-Authenticate": "Bearer"}


def test_a_denied_sender_gets_forbiddens_text() -> None:
    answer = post(gateway(FakeAws()), request("rly_disabled"))
    assert (answer.status, error(answer)["code"], error(answer)["message"]) == (403, "FORBIDDEN", FORBIDDEN_MESSAGE)


# -- throttling ---------------------------------------------------------------------------------------


def admitted(api: ApiGateway, token: str, count: int) -> int:
    return sum(not isinstance(api.admit(request(token)), Answer) for _ in range(count))


def test_each_sender_has_its_own_bucket_from_its_limits_or_the_default_plan() -> None:
    # Given a default plan of burst 3, and one sender created with a burst of 10
    aws = FakeAws()
    aws.limits["big"] = {"ratePerSecond": 0.001, "burst": 10}
    api = gateway(aws, {"senderRateLimit": 1, "senderBurstLimit": 3})
    # When each sends 20 requests at once
    # Then each gets its own burst, whatever the other did
    assert (admitted(api, "rly_shop", 20), admitted(api, "rly_big", 20), admitted(api, "rly_other", 20)) == (3, 10, 3)


def test_no_cap_on_all_senders_together_unless_the_stage_sets_one() -> None:
    uncapped = gateway(FakeAws(), {"senderRateLimit": 1, "senderBurstLimit": 5})
    assert sum(admitted(uncapped, f"rly_s{n}", 5) for n in range(10)) == 50
    capped = gateway(
        FakeAws(),
        {"senderRateLimit": 1, "senderBurstLimit": 5, "apiThrottlingRateLimit": 1, "apiThrottlingBurstLimit": 8},
    )
    assert sum(admitted(capped, f"rly_s{n}", 5) for n in range(10)) == 8
    answer = capped.admit(request("rly_s99"))
    assert isinstance(answer, Answer) and (answer.status, error(answer)["code"]) == (429, "THROTTLED")


# -- POST /messages -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "application/json; charset=utf-8", "APPLICATION/JSON"]
)
def test_json_media_types_reach_the_machine(content_type: str | None) -> None:
    aws = FakeAws()
    answer = post(gateway(aws), request(content_type=content_type))
    assert (answer.status, json.loads(answer.body)) == (202, {"status": "PENDING"})
    ((arn, execution_input),) = aws.started
    assert arn == ARN and execution_input["senderId"] == "shop" and execution_input["requestId"] == "req-1"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"])
def test_other_media_types_are_415_in_relays_error_shape(content_type: str) -> None:
    aws = FakeAws()
    answer = post(gateway(aws), request(content_type=content_type))
    assert (answer.status, error(answer)["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert error(answer)["message"] == UNSUPPORTED_MEDIA_TYPE_MESSAGE and aws.started == []


class AwsError(Exception):
    def __init__(self, code: str, status: int) -> None:
        super().__init__("internal AWS detail")
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


@pytest.mark.parametrize(
    ("run", "status", "code"),
    [
        ({"status": "FAILED"}, 500, "SYSTEM_ERROR"),
        (AwsError("ThrottlingException", 400), 429, "THROTTLED"),
        (AwsError("AccessDeniedException", 400), 500, "SYSTEM_ERROR"),
        (AwsError("InternalFailure", 500), 500, "SYSTEM_ERROR"),
    ],
)
def test_what_step_functions_answers_is_mapped_by_the_integration_responses(run: Any, status: int, code: str) -> None:
    aws = FakeAws()
    aws.run = run
    answer = post(gateway(aws), request())
    assert (answer.status, error(answer)["code"]) == (status, code)
    assert "AWS detail" not in answer.body


def test_no_answer_within_the_integration_timeout_is_504() -> None:
    aws = FakeAws()
    aws.run = "slow"
    answer = post(gateway(aws, timeout=0.05), request())
    assert (answer.status, error(answer)["code"], error(answer)["message"]) == (
        504,
        "SYSTEM_ERROR",
        SYSTEM_ERROR_MESSAGE,
    )


def test_a_role_that_may_not_start_the_machine_is_a_system_error() -> None:
    # Given IAM that refuses the integration's role states:StartSyncExecution (as LocalAws does)
    checked = []

    def denied_start(arn: str, execution_input: dict[str, Any]) -> dict[str, Any]:
        checked.append(arn)
        raise AwsError("AccessDeniedException", 400)

    aws = FakeAws()
    api = ApiGateway(
        definition_from_functions(ARN, relay_context={}),
        invoke=aws.invoke,
        start_sync_execution=denied_start,
        sender_limits=lambda sender: {},
    )
    # When a message is posted
    answer = post(api, request())
    # Then the machine never starts and the caller gets SYSTEM_ERROR, without AWS's text
    assert (answer.status, error(answer)["code"]) == (500, "SYSTEM_ERROR")
    assert checked == [ARN] and aws.started == []
