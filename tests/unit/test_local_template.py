"""Reading a CloudFormation template for relay dev: intrinsics, local names, staleness."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from functions.contract.settings_names import Setting
from relay.local.synth import is_current
from relay.local.template import Template, TemplateError, build_topology

FUNCTION = {
    "Type": "AWS::Lambda::Function",
    "Properties": {
        "Handler": "functions.finalize.handler.lambda_handler",
        "Role": {"Fn::GetAtt": ["FinalizeRoleAB12CD34", "Arn"]},
        "Environment": {"Variables": {Setting.FAILED_QUEUE_URL: {"Ref": "FailedQueue0A1B2C3D"}}},
    },
}
DOCUMENT: dict[str, Any] = {
    "Resources": {
        "FinalizeRoleAB12CD34": {"Type": "AWS::IAM::Role", "Properties": {}},
        "FinalizeFunction11223344": FUNCTION,
        "FailedQueue0A1B2C3D": {"Type": "AWS::SQS::Queue", "Properties": {}},
        "Table99887766": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {"AttributeDefinitions": [], "KeySchema": [], "BillingMode": "PAY_PER_REQUEST"},
        },
        "FinalizePolicy55667788": {
            "Type": "AWS::IAM::Policy",
            "Properties": {
                "Roles": [{"Ref": "FinalizeRoleAB12CD34"}],
                "PolicyDocument": {
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "sqs:SendMessage",
                            "Resource": {"Fn::GetAtt": ["FailedQueue0A1B2C3D", "Arn"]},
                        }
                    ]
                },
            },
        },
    }
}


@pytest.mark.parametrize(
    ("value", "resolved"),
    [
        ({"Ref": "AWS::Region"}, "us-east-1"),
        ({"Fn::Join": [":", ["a", {"Ref": "AWS::AccountId"}]]}, "a:123456789012"),
        ({"Fn::Sub": "arn:${AWS::Partition}:x:${AWS::Region}"}, "arn:aws:x:us-east-1"),
        ({"Fn::Sub": ["${Name}-${FailedQueue0A1B2C3D.QueueName}", {"Name": "n"}]}, "n-relay-failed"),
        ({"Fn::Select": [1, {"Fn::Split": ["/", "a/b/c"]}]}, "b"),
        ({"Ref": "Table99887766"}, "relay-local"),
        ({"Ref": "FailedQueue0A1B2C3D"}, "https://sqs.us-east-1.amazonaws.com/123456789012/relay-failed"),
        (
            {"Fn::GetAtt": ["FinalizeFunction11223344", "Arn"]},
            "arn:aws:lambda:us-east-1:123456789012:function:relay-finalize",
        ),
    ],
)
def test_intrinsics_resolve_to_local_names_and_arns(value: Any, resolved: str) -> None:
    # Given the template's resources / When a value is resolved / Then it is the local name or ARN
    assert Template(DOCUMENT).resolve(value) == resolved


def test_an_intrinsic_the_runtime_cannot_resolve_is_named() -> None:
    # Given a condition function / When resolved / Then the error names it rather than guessing
    with pytest.raises(TemplateError, match="Fn::If"):
        Template(DOCUMENT).resolve({"Fn::If": ["C", "a", "b"]})


def test_functions_take_handler_environment_and_role_from_the_template() -> None:
    # Given a function whose role's policy allows one queue
    topology = build_topology(DOCUMENT)
    spec = topology.functions["relay-finalize"]
    # Then relay dev runs its handler with its environment, under its role with that policy
    assert spec.handler == "functions.finalize.handler.lambda_handler"
    assert spec.environment == {
        Setting.FAILED_QUEUE_URL: "https://sqs.us-east-1.amazonaws.com/123456789012/relay-failed"
    }
    [statement] = topology.policies[spec.role_arn]
    assert statement["Resource"] == "arn:aws:sqs:us-east-1:123456789012:relay-failed"


def test_the_template_is_current_only_when_newer_than_every_source(tmp_path: Path) -> None:
    # Given sources and a template written after them
    (tmp_path / "stacks").mkdir()
    source = tmp_path / "stacks" / "stack.py"
    source.write_text("x = 1\n")
    template = tmp_path / "cdk.out" / "Relay.template.json"
    template.parent.mkdir()
    template.write_text("{}")
    os.utime(source, (1_000, 1_000))
    os.utime(template, (2_000, 2_000))
    assert is_current(template, tmp_path)
    # When a source changes after the template / Then it must be synthesized again
    os.utime(source, (3_000, 3_000))
    assert not is_current(template, tmp_path)
