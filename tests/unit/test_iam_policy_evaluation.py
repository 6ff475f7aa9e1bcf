"""The local IAM check: which calls a role's statements allow, as AWS evaluates identity policies."""

from __future__ import annotations

from typing import Any

import pytest

from relay.local.iam import Request, is_allowed, requests_for

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/relay-local"
LEADING = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["MSG#*", "TARGET#*"]}}


def allow(actions: Any, resources: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources, **extra}


@pytest.mark.parametrize(
    ("statements", "request_", "allowed"),
    [
        # exact action and resource
        ([allow("dynamodb:GetItem", TABLE)], Request("dynamodb:GetItem", TABLE), True),
        # another action on the same table is not granted (the BatchGetItem gap)
        ([allow(["dynamodb:GetItem", "dynamodb:Query"], TABLE)], Request("dynamodb:BatchGetItem", TABLE), False),
        # a table grant does not cover its indexes; an index wildcard does
        ([allow("dynamodb:Query", TABLE)], Request("dynamodb:Query", f"{TABLE}/index/byStatus"), False),
        ([allow("dynamodb:Query", f"{TABLE}/index/*")], Request("dynamodb:Query", f"{TABLE}/index/byStatus"), True),
        # action wildcards, matched case-insensitively as IAM does
        ([allow("dynamodb:*Item", TABLE)], Request("dynamodb:UpdateItem", TABLE), True),
        ([allow("DynamoDB:getitem", TABLE)], Request("dynamodb:GetItem", TABLE), True),
        # resources are case-sensitive, and a dot is a dot (not a regular expression)
        (
            [allow("sqs:SendMessage", "arn:aws:sqs:*:*:relay.delivery")],
            Request("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:relayXdelivery"),
            False,
        ),
        # an explicit Deny wins over any Allow
        (
            [allow("dynamodb:*", "*"), {"Effect": "Deny", "Action": "dynamodb:DeleteItem", "Resource": TABLE}],
            Request("dynamodb:DeleteItem", TABLE),
            False,
        ),
        # NotAction / NotResource
        ([{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}], Request("sqs:SendMessage", "x"), True),
        ([{"Effect": "Allow", "Action": "sqs:*", "NotResource": "x"}], Request("sqs:SendMessage", "x"), False),
        # a conditional Allow grants nothing locally (its condition is not evaluated)
        (
            [allow("sqs:SendMessage", "*", Condition={"Bool": {"aws:SecureTransport": "true"}})],
            Request("sqs:SendMessage", "q"),
            False,
        ),
        # dynamodb:LeadingKeys: every item the call touches must match; no keys known, no grant
        (
            [allow("dynamodb:UpdateItem", TABLE, Condition=LEADING)],
            Request("dynamodb:UpdateItem", TABLE, ("MSG#s#m",)),
            True,
        ),
        (
            [allow("dynamodb:UpdateItem", TABLE, Condition=LEADING)],
            Request("dynamodb:UpdateItem", TABLE, ("TOKEN#abc",)),
            False,
        ),
        (
            [allow("dynamodb:BatchGetItem", TABLE, Condition=LEADING)],
            Request("dynamodb:BatchGetItem", TABLE, ("MSG#s#m", "SENDER#s")),
            False,
        ),
        ([allow("dynamodb:Query", TABLE, Condition=LEADING)], Request("dynamodb:Query", TABLE), False),
        # no statement: denied
        ([], Request("xray:PutTraceSegments", "*"), False),
    ],
)
def test_policy_evaluation(statements: list[dict[str, Any]], request_: Request, allowed: bool) -> None:
    # Given a role's statements and one authorization request
    # When it is evaluated
    # Then it is allowed exactly when AWS would allow it
    assert is_allowed(tuple(statements), request_) is allowed


def test_calls_map_to_the_actions_and_resources_aws_authorizes() -> None:
    # Given API calls as botocore makes them (signing name, operation, parameters)
    queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/relay-delivery"
    # Then each names the IAM action and the resource ARN AWS checks
    assert requests_for("dynamodb", "Query", {"TableName": "relay-local", "IndexName": "byStatus"}) == [
        Request("dynamodb:Query", f"{TABLE}/index/byStatus")
    ]
    assert requests_for("dynamodb", "BatchGetItem", {"RequestItems": {"relay-local": {}}}) == [
        Request("dynamodb:BatchGetItem", TABLE)
    ]
    # item calls carry the partition keys they touch (dynamodb:LeadingKeys)
    keys = [{"pk": {"S": "MSG#s#m"}, "sk": {"S": "H"}}, {"pk": {"S": "MSG#s#m"}, "sk": {"S": "C"}}]
    assert requests_for("dynamodb", "BatchGetItem", {"RequestItems": {"relay-local": {"Keys": keys}}}) == [
        Request("dynamodb:BatchGetItem", TABLE, ("MSG#s#m", "MSG#s#m"))
    ]
    assert requests_for("dynamodb", "UpdateItem", {"TableName": "relay-local", "Key": keys[0]}) == [
        Request("dynamodb:UpdateItem", TABLE, ("MSG#s#m",))
    ]
    assert requests_for("dynamodb", "PutItem", {"TableName": "relay-local", "Item": {"pk": {"S": "TARGET#s#o"}}}) == [
        Request("dynamodb:PutItem", TABLE, ("TARGET#s#o",))
    ]
    assert requests_for(
        "dynamodb", "TransactWriteItems", {"TransactItems": [{"Put": {"TableName": "relay-local"}}]}
    ) == [Request("dynamodb:PutItem", TABLE)]
    assert requests_for("sqs", "SendMessageBatch", {"QueueUrl": queue_url}) == [
        Request("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:relay-delivery")
    ]
    assert requests_for("lambda", "Invoke", {"FunctionName": "relay-deliver"}) == [
        Request("lambda:InvokeFunction", "arn:aws:lambda:us-east-1:123456789012:function:relay-deliver")
    ]
    [secret] = requests_for("secretsmanager", "GetSecretValue", {"SecretId": "relay/senders/dev/signing-secret"})
    assert secret.action == "secretsmanager:GetSecretValue"
    assert secret.resource.startswith("arn:aws:secretsmanager:us-east-1:123456789012:secret:relay/senders/dev/")
    assert requests_for("monitoring", "PutMetricData", {}) == [Request("cloudwatch:PutMetricData", "*")]
