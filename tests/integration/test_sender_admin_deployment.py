"""`relay senders ... --stack` against a deployment: API keys in usage plans for per-sender throttling."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from functions.authorizer.handler import lambda_handler as authorize
from functions.domain.config import get_settings
from functions.domain.exceptions import SenderExists
from relay.admin import SenderAdmin
from relay.local.emulator import LocalLambdaContext


@pytest.fixture
def usage_plan(local_aws: Any) -> str:
    apigateway = boto3.client("apigateway", region_name="us-east-1")
    api = apigateway.create_rest_api(name="Relay")
    return str(
        apigateway.create_usage_plan(
            name="relay-default",
            apiStages=[{"apiId": api["id"], "stage": "v1"}],
            throttle={"rateLimit": 100, "burstLimit": 200},
        )["id"]
    )


def test_sender_gets_an_api_key_in_the_default_plan_which_the_authorizer_returns(usage_plan: str) -> None:
    admin = SenderAdmin(get_settings().table_name, usage_plan_id=usage_plan)
    created = admin.create("shop")
    apigateway = boto3.client("apigateway", region_name="us-east-1")
    keys = apigateway.get_usage_plan_keys(usagePlanId=usage_plan)["items"]
    assert [key["name"] for key in keys] == ["relay-sender-shop"]
    policy = authorize(
        {
            "type": "TOKEN",
            "authorizationToken": f"Bearer {created['token']}",
            "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc/v1/POST/messages",
        },
        LocalLambdaContext("relay-authorizer"),
    )
    assert policy["usageIdentifierKey"] == keys[0]["value"]


def test_sender_with_limits_gets_its_own_plan(usage_plan: str) -> None:
    admin = SenderAdmin(get_settings().table_name, usage_plan_id=usage_plan)
    admin.create("bulk", rate_per_second=5, burst=10)
    plans = boto3.client("apigateway", region_name="us-east-1").get_usage_plans()["items"]
    own = next(plan for plan in plans if plan["name"] == "relay-sender-bulk")
    assert own["throttle"] == {"rateLimit": 5.0, "burstLimit": 10}


def test_existing_sender_is_refused_before_any_key_is_made(usage_plan: str) -> None:
    admin = SenderAdmin(get_settings().table_name, usage_plan_id=usage_plan)
    admin.create("twice")
    with pytest.raises(SenderExists):
        admin.create("twice")
    keys = boto3.client("apigateway", region_name="us-east-1").get_api_keys()["items"]
    assert [key["name"] for key in keys].count("relay-sender-twice") == 1


def test_disabling_a_sender_disables_its_api_key(usage_plan: str) -> None:
    admin = SenderAdmin(get_settings().table_name, usage_plan_id=usage_plan)
    admin.create("paused")
    admin.set_status("paused", enabled=False)
    keys = boto3.client("apigateway", region_name="us-east-1").get_api_keys()["items"]
    assert next(key for key in keys if key["name"] == "relay-sender-paused")["enabled"] is False
