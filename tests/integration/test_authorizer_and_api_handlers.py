"""The authorizer and API Lambda handlers as API Gateway invokes them, against moto."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.authorizer.handler import lambda_handler as authorize
from functions.domain.config import get_settings
from relay.admin import SenderAdmin
from relay.local.emulator import LocalLambdaContext

METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/v1/POST/messages"


def token_event(token: str) -> dict[str, Any]:
    return {"type": "TOKEN", "authorizationToken": f"Bearer {token}", "methodArn": METHOD_ARN}


def test_valid_token_allows_every_route_and_names_the_sender(local_aws: Any) -> None:
    created = SenderAdmin(get_settings().table_name).create("shop")
    policy = authorize(token_event(created["token"]), LocalLambdaContext("relay-authorizer"))
    assert policy["principalId"] == "shop"
    assert policy["context"] == {"senderId": "shop"}
    [statement] = policy["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    # One policy for the whole API, so API Gateway's cache serves every route of the token
    assert statement["Resource"] == ["arn:aws:execute-api:us-east-1:123456789012:abc123/v1/*/*"]


def test_disabled_sender_is_denied(local_aws: Any) -> None:
    admin = SenderAdmin(get_settings().table_name)
    token = admin.create("gone")["token"]
    admin.set_status("gone", enabled=False)
    policy = authorize(token_event(token), LocalLambdaContext("relay-authorizer"))
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Deny"


@pytest.mark.parametrize("header", ["Bearer rly_unknown", "Basic abc", "", "Bearer "])
def test_unknown_or_malformed_token_is_unauthorized(local_aws: Any, header: str) -> None:
    event = {"type": "TOKEN", "authorizationToken": header, "methodArn": METHOD_ARN}
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        authorize(event, LocalLambdaContext("relay-authorizer"))


def api_event(method: str, path: str, sender: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {},
        "queryStringParameters": query,
        "requestContext": {"requestId": "req-1", "stage": "v1", "authorizer": {"senderId": sender}},
        "body": None,
        "isBase64Encoded": False,
    }


def test_api_handler_answers_in_relays_error_shape(local_aws: Any, post: Any) -> None:
    from tests.conftest import make_message

    message = make_message(senderId="shop")
    assert post(message)[0] == 202
    found = local_aws.invoke("relay-api", api_event("GET", f"/messages/{message['messageId']}", "shop"))
    assert found["statusCode"] == 200
    assert json.loads(found["body"])["status"] == "PENDING"
    # Another sender: 404, exactly like a missing message
    other = local_aws.invoke("relay-api", api_event("GET", f"/messages/{message['messageId']}", "intruder"))
    assert other["statusCode"] == 404
    assert json.loads(other["body"])["error"] == {
        "code": "MESSAGE_NOT_FOUND",
        "message": f"No message '{message['messageId']}'.",
        "requestId": "req-1",
    }
    # Replay of a message that has not finished is refused
    refused = local_aws.invoke("relay-api", api_event("POST", f"/messages/{message['messageId']}/replay", "shop"))
    assert (refused["statusCode"], json.loads(refused["body"])["error"]["code"]) == (409, "MESSAGE_NOT_FINISHED")
    # Cancel, then replay: a cancelled message is finished, so it starts a new run
    cancelled = local_aws.invoke("relay-api", api_event("POST", f"/messages/{message['messageId']}/cancel", "shop"))
    assert json.loads(cancelled["body"])["status"] == "CANCELLED"
    replayed = local_aws.invoke("relay-api", api_event("POST", f"/messages/{message['messageId']}/replay", "shop"))
    assert (replayed["statusCode"], json.loads(replayed["body"])["run"]) == (202, 1)


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# Each route with a JSON body, and a body whose field `field` holds JSON `levels` deep.
NESTING_ROUTES = {
    "POST /messages/replay": ("POST", "/messages/replay", '{{"status": "FAILED", "origin": {}}}', "$.origin"),
    "PUT /targets": ("PUT", "/targets", '{{"origin": "https://a.example", "ratePerSecond": {}}}', "$.ratePerSecond"),
    "POST /targets/resume": ("POST", "/targets/resume", '{{"origin": {}}}', "$.origin"),
}


@pytest.mark.parametrize("route", NESTING_ROUTES)
def test_every_route_answers_json_nested_past_the_limit_alike(local_aws: Any, post: Any, route: str) -> None:
    from tests.conftest import make_message

    # Given a body with one field nested 65 levels deep (the documented limit is 64)
    method, path, template, field = NESTING_ROUTES[route]
    event = {**api_event(method, path, "shop"), "body": template.format(deep(65))}
    # When the route is called
    answer = local_aws.invoke("relay-api", event)
    # Then it is a 400 VALIDATION_ERROR naming the field, as POST /messages answers a body nested as deep
    error = json.loads(answer["body"])["error"]
    assert (answer["statusCode"], error["code"]) == (400, "VALIDATION_ERROR")
    assert error["details"] == [{"path": field, "message": "is nested deeper than 64 levels"}]
    status, single = post(make_message(senderId="shop", body=json.loads(deep(65))))
    assert (status, single["error"]["code"]) == (400, "VALIDATION_ERROR")
    assert single["error"]["details"] == [{"path": "$.body", "message": "is nested deeper than 64 levels"}]
