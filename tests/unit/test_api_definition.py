"""relay dev reads API Gateway's rules from a template, resolving it to the local resources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from relay.local.apigateway.api_definition import (
    FROM_FUNCTIONS,
    GatewayResponseRule,
    TemplateError,
    Throttle,
    definition_from_template,
    load_api_definition,
)

ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:relay-ingest"


def template(request_template: Any, stage_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parts of a synthesized template that describe POST /messages and the front door."""
    return {
        "Resources": {
            "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {}},
            "Messages": {
                "Type": "AWS::ApiGateway::Resource",
                "Properties": {"ParentId": {"Fn::GetAtt": ["Api", "RootResourceId"]}, "PathPart": "messages"},
            },
            "PostMessages": {
                "Type": "AWS::ApiGateway::Method",
                "Properties": {
                    "HttpMethod": "POST",
                    "ResourceId": {"Ref": "Messages"},
                    "Integration": {
                        "Credentials": {"Fn::GetAtt": ["StartRole", "Arn"]},
                        "PassthroughBehavior": "NEVER",
                        "RequestTemplates": {"application/json": request_template},
                        "IntegrationResponses": [
                            {"StatusCode": "200", "ResponseTemplates": {"application/json": "$input.body"}},
                            {"StatusCode": "500", "SelectionPattern": "5\\d{2}", "ResponseTemplates": {}},
                        ],
                    },
                },
            },
            "Denied": {
                "Type": "AWS::ApiGateway::GatewayResponse",
                "Properties": {
                    "ResponseType": "ACCESS_DENIED",
                    "StatusCode": "403",
                    "ResponseTemplates": {"application/json": '{"denied":"$context.requestId"}'},
                    "ResponseParameters": {"gatewayresponse.header.X-Why": "'denied'"},
                },
            },
            "Plan": {
                "Type": "AWS::ApiGateway::UsagePlan",
                "Properties": {"Throttle": {"RateLimit": 5, "BurstLimit": 9}},
            },
            "Stage": {
                "Type": "AWS::ApiGateway::Stage",
                "Properties": {"MethodSettings": [{"HttpMethod": "*", "ResourcePath": "/*", **(stage_settings or {})}]},
            },
        },
        "Outputs": {"IngestStateMachineArn": {"Value": {"Ref": "Ingest"}}},
    }


JOINED = {"Fn::Join": ["", ['{"stateMachineArn":"', {"Ref": "Ingest"}, '","region":"', {"Ref": "AWS::Region"}, '"}']]}


def test_the_template_is_read_with_its_references_resolved_to_the_local_resources() -> None:
    # Given a template whose request template names the ingest machine by Ref
    # When relay dev reads it
    definition = definition_from_template(template(JOINED), ARN, source="t.json")
    # Then the template text carries the local machine's ARN and region
    assert json.loads(definition.request_templates["application/json"]) == {
        "stateMachineArn": ARN,
        "region": "us-east-1",
    }
    # And the integration responses, gateway responses, plan, role and passthrough are the template's
    assert [(rule.status_code, rule.selection_pattern) for rule in definition.integration_responses] == [
        ("200", None),
        ("500", "5\\d{2}"),
    ]
    assert definition.gateway_responses == {
        "ACCESS_DENIED": GatewayResponseRule(
            "403", {"application/json": '{"denied":"$context.requestId"}'}, {"X-Why": "denied"}
        )
    }
    assert (definition.sender_throttle, definition.stage_throttle) == (Throttle(5, 9), None)
    assert (definition.credentials_role, definition.passthrough_behavior, definition.source) == (
        "StartRole",
        "NEVER",
        "t.json",
    )


def test_a_stage_throttle_in_the_template_caps_all_callers() -> None:
    settings = {"ThrottlingRateLimit": 30, "ThrottlingBurstLimit": 60}
    assert definition_from_template(template("{}", settings), ARN, "t").stage_throttle == Throttle(30, 60)


def test_what_relay_dev_cannot_resolve_is_an_error_not_a_guess() -> None:
    with pytest.raises(TemplateError, match="cannot resolve"):
        definition_from_template(template({"Fn::ImportValue": "elsewhere"}), ARN, "t")
    broken = template("{}")
    del broken["Resources"]["PostMessages"]
    with pytest.raises(TemplateError, match="POST /messages"):
        definition_from_template(broken, ARN, "t")


def test_a_given_template_file_is_read_and_the_functions_say_where_they_came_from(tmp_path: Path) -> None:
    # Given a template file
    path = tmp_path / "Relay.template.json"
    path.write_text(json.dumps(template(JOINED)), encoding="utf-8")
    # Then relay dev reads it when given, and says so
    assert load_api_definition(ARN, path).source == str(path)
    # And a definition made from the functions says where it came from
    from relay.local.apigateway.api_definition import definition_from_functions

    assert definition_from_functions(ARN, relay_context={}).source == FROM_FUNCTIONS
