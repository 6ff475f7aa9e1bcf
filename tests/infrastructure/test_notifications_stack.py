"""Outcome callbacks and operational notifications, as synthesized (stacks/constructs/notifications.py):
one EventBridge bus, and PutEvents on it for the functions that report outcomes, nobody else."""

from __future__ import annotations

from typing import Any

import pytest
from infra_support import (
    Synthesized,
    actions_of,
    function_by_step,
    only,
    resources_of,
    role_statements,
    step_environment,
    step_role,
)

from functions.contract.settings_names import Setting

REPORTERS = ("dispatcher", "deliver", "finalize", "handoff")


def bus_ref(synth: Synthesized) -> tuple[dict[str, Any], dict[str, Any]]:
    bus_id, _ = only(synth.of_type("AWS::Events::EventBus"))
    return {"Ref": bus_id}, {"Fn::GetAtt": [bus_id, "Arn"]}


def put_events_resources(synth: Synthesized, role: str) -> list[Any]:
    return [
        resource
        for statement in role_statements(synth, role)
        if "events:PutEvents" in actions_of(statement)
        for resource in resources_of(statement)
    ]


def test_the_stack_has_one_event_bus_its_reporters_know(synth: Synthesized) -> None:
    # Given the synthesized stack, Then it has one bus, and each reporting function is told its name
    name, _ = bus_ref(synth)
    for step in REPORTERS:
        assert step_environment(synth, step)[Setting.EVENT_BUS_NAME] == name


@pytest.mark.parametrize("step", REPORTERS)
def test_a_reporting_function_may_put_events_on_that_bus_only(synth: Synthesized, step: str) -> None:
    # Given a function that reports outcomes, Then it may put events on the stack's bus and nowhere else
    _, arn = bus_ref(synth)
    assert put_events_resources(synth, step_role(synth, step)) == [arn]


def test_no_other_function_may_put_events(synth: Synthesized) -> None:
    # Given every other function of the stack, Then none may put events anywhere
    functions = synth.of_type("AWS::Lambda::Function")
    reporter_ids = {function_by_step(synth, step)[0] for step in REPORTERS}
    for logical_id, function in functions.items():
        if logical_id in reporter_ids:
            continue
        role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        assert put_events_resources(synth, role) == [], logical_id
        assert Setting.EVENT_BUS_NAME not in function["Properties"].get("Environment", {}).get("Variables", {})


@pytest.mark.parametrize("step", REPORTERS)
def test_a_reporting_function_may_write_activity_items_only_beyond_its_own(synth: Synthesized, step: str) -> None:
    # Given its statements that allow a PutItem or an UpdateItem, Then each names the kinds of item:
    # messages (put and updated), the sender's activity items (updated only, to name a callback), and
    # for updates its targets' own items (flow and health)
    def patterns(action: str) -> set[str]:
        statements = [s for s in role_statements(synth, step_role(synth, step)) if action in actions_of(s)]
        return {p for s in statements for p in s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]}

    assert patterns("dynamodb:PutItem") == {"MSG#*"}
    assert patterns("dynamodb:UpdateItem") == {"MSG#*", "ACTIVE#*", "TARGET#*"}


def test_the_bus_is_an_output_and_the_stack_has_no_findings(synth: Synthesized) -> None:
    # Given the stack outputs, Then operators find the bus to write rules for; cdk-nag found nothing
    name, _ = bus_ref(synth)
    assert synth.template["Outputs"]["EventBusName"]["Value"] == name
    assert synth.error is None, synth.error
