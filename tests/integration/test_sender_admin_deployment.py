"""`relay senders` against a deployment: every sender gets an API key in a usage plan (every method
requires one) or is not created at all; the keys throttle each sender on its own.

The embedded AWS creates the template's default usage plan, tagged with the table, as the stack does.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from functions.adapters import aws
from functions.adapters.secrets import SigningSecrets
from functions.adapters.stores.senders import SenderRepository
from functions.authorizer.handler import lambda_handler as authorize
from functions.contract.resource_tags import USAGE_PLAN_TABLE_TAG
from functions.domain.config import get_settings
from functions.domain.exceptions import SenderExists, StorageUnavailable
from relay import admin as admin_module
from relay.admin import SenderAdmin, SenderNotCreated
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


def apigateway() -> Any:
    return boto3.client("apigateway", region_name="us-east-1")


def tagged_plan() -> dict[str, Any]:
    """The default plan the embedded AWS created from the template (tagged with the table)."""
    table = get_settings().table_name
    return next(
        p for p in apigateway().get_usage_plans()["items"] if (p.get("tags") or {}).get(USAGE_PLAN_TABLE_TAG) == table
    )


def assert_nothing_of(sender_id: str) -> None:
    """No record, token or API key of `sender_id` exists (and no plan of its own)."""
    senders = SenderRepository(get_settings().table_name)
    assert senders.get(sender_id) is None and senders.tokens(sender_id) == []
    assert f"relay-sender-{sender_id}" not in {key["name"] for key in apigateway().get_api_keys()["items"]}
    assert f"relay-sender-{sender_id}" not in {plan["name"] for plan in apigateway().get_usage_plans()["items"]}


def test_with_no_flags_a_sender_gets_a_key_in_the_plan_tagged_with_its_table(local_aws: Any) -> None:
    # When a sender is created knowing only the table (`relay senders create shop --table T`)
    created = SenderAdmin(get_settings().table_name).create("plain")
    # Then its key is in the stack's default plan, and the authorizer hands API Gateway that key
    keys = apigateway().get_usage_plan_keys(usagePlanId=tagged_plan()["id"])["items"]
    assert [key["name"] for key in keys] == ["relay-sender-plain"]
    policy = authorize(
        {
            "type": "TOKEN",
            "authorizationToken": f"Bearer {created['token']}",
            "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc/v1/GET/messages",
        },
        LocalLambdaContext("relay-authorizer"),
    )
    assert policy["usageIdentifierKey"] == keys[0]["value"]


def test_without_a_plan_creation_fails_clearly_before_writing_anything(local_aws: Any) -> None:
    # Given a deployment whose default plan cannot be found (deleted, or another table named)
    apigateway().delete_usage_plan(usagePlanId=tagged_plan()["id"])
    # When a sender is created
    with pytest.raises(SenderNotCreated) as refused:
        SenderAdmin(get_settings().table_name).create("orphan")
    # Then the error says what is missing and what to give, and nothing of the sender exists
    assert f"no usage plan tagged {USAGE_PLAN_TABLE_TAG}=" in str(refused.value)
    assert "--usage-plan-id" in str(refused.value) and "--stack" in str(refused.value)
    assert_nothing_of("orphan")
    # And a plan named that does not exist is refused the same way
    with pytest.raises(SenderNotCreated, match="usage plan 'nope'"):
        SenderAdmin(get_settings().table_name, usage_plan_id="nope").create("orphan")
    assert_nothing_of("orphan")


def test_a_step_that_fails_undoes_the_earlier_ones(local_aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given Secrets Manager failing at the last step of a creation (after the key, record and token)
    def unavailable(self: SigningSecrets, sender_id: str) -> str:
        raise StorageUnavailable("Secrets Manager could not be reached")

    monkeypatch.setattr(SigningSecrets, "get_or_create", unavailable)
    # When a sender with limits of its own (so also a plan of its own) is created
    with pytest.raises(SenderNotCreated, match="was not created: Secrets Manager could not be reached"):
        SenderAdmin(get_settings().table_name).create("halfway", rate_per_second=5, burst=10)
    # Then its key, its own plan, its record and its token are gone: nothing half-made is left
    assert_nothing_of("halfway")
    assert apigateway().get_usage_plan_keys(usagePlanId=tagged_plan()["id"])["items"] == []


class KeyCeiling:
    """API Gateway's client, refusing new API keys as it does past 10,000 in a region."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def create_api_key(self, **_: Any) -> Any:
        error = {"Error": {"Code": "LimitExceededException", "Message": "API key limit exceeded"}}
        raise ClientError(error, "CreateApiKey")  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_past_the_api_key_ceiling_creation_names_it_and_leaves_nothing(
    local_aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an account that holds API Gateway's 10,000 keys in this region
    real = aws.client
    monkeypatch.setattr(
        admin_module.aws,
        "client",
        lambda service: KeyCeiling(real(service)) if service == "apigateway" else real(service),
    )
    # When a sender is created
    with pytest.raises(SenderNotCreated) as refused:
        SenderAdmin(get_settings().table_name).create("one-too-many")
    # Then the error names the ceiling and what to do past it, and nothing of the sender exists
    assert "10,000 API keys per account and region" in str(refused.value)
    assert "deploy another Relay" in str(refused.value)
    assert_nothing_of("one-too-many")
