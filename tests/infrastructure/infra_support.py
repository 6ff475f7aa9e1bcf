"""Synthesis helper shared by the infrastructure tests (one synthesis per test module)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Synthesized:
    """One synthesis of the app: the template, the validation report and any synth error."""

    outdir: Path
    template: dict[str, Any]
    report: dict[str, Any]
    error: str | None

    @property
    def resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.template["Resources"]
        return resources

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {key: value for key, value in self.resources.items() if value["Type"] == resource_type}


def synthesize(outdir: Path, context: dict[str, Any] | None = None) -> Synthesized:
    """Build and synthesize the app once; cdk-nag findings fail synth, so keep the error to assert on."""
    from stacks.application import build_app

    app, stack = build_app(context=context, outdir=str(outdir))
    error: str | None = None
    try:
        app.synth()
    except RuntimeError as failure:  # jsii surfaces the ValidationFailed error as RuntimeError
        error = str(failure)
    template = json.loads((outdir / stack.template_file).read_text(encoding="utf-8"))
    report_file = outdir / "validation-report.json"
    report = json.loads(report_file.read_text(encoding="utf-8")) if report_file.exists() else {}
    return Synthesized(outdir=outdir, template=template, report=report, error=error)


# -- reading the template ------------------------------------------------------------------------

DATA_ACTION = re.compile(r"^(dynamodb|sqs|kms|secretsmanager|states):")


def only(resources: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    assert len(resources) == 1, sorted(resources)
    return next(iter(resources.items()))


def handler_of(step: str) -> str:
    return f"functions.{step}.handler.lambda_handler"


def function_by_step(synth: Synthesized, step: str) -> tuple[str, dict[str, Any]]:
    """The one function whose handler is functions/<step>/handler.py."""
    handler = handler_of(step)
    return only(
        {
            key: value
            for key, value in synth.of_type("AWS::Lambda::Function").items()
            if value["Properties"]["Handler"] == handler
        }
    )


def step_role(synth: Synthesized, step: str) -> str:
    role_id: str = function_by_step(synth, step)[1]["Properties"]["Role"]["Fn::GetAtt"][0]
    return role_id


def step_environment(synth: Synthesized, step: str) -> dict[str, Any]:
    variables: dict[str, Any] = function_by_step(synth, step)[1]["Properties"]["Environment"]["Variables"]
    return variables


def role_statements(synth: Synthesized, role_logical_id: str) -> list[dict[str, Any]]:
    """Every statement granted to a role: its attached AWS::IAM::Policy resources and inline policies."""
    statements: list[dict[str, Any]] = []
    for policy in synth.of_type("AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    for inline in synth.resources[role_logical_id]["Properties"].get("Policies", []):
        statements.extend(inline["PolicyDocument"]["Statement"])
    return statements


def actions_of(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def resources_of(statement: dict[str, Any]) -> list[Any]:
    resources = statement["Resource"]
    return resources if isinstance(resources, list) else [resources]


def assert_actions_named(synth: Synthesized, step: str) -> None:
    """Every action of a step's role is named, and only X-Ray (which has no resource-level
    permissions) is allowed on `Resource: *`."""
    for statement in role_statements(synth, step_role(synth, step)):
        assert all("*" not in action for action in actions_of(statement)), statement
        if "*" in resources_of(statement):
            assert all(action.startswith("xray:") for action in actions_of(statement)), statement


def data_grants(synth: Synthesized, role_logical_id: str) -> dict[str, list[Any]]:
    """DynamoDB/SQS/KMS/Secrets Manager/Step Functions action -> resources it is allowed on."""
    grants: dict[str, list[Any]] = {}
    for statement in role_statements(synth, role_logical_id):
        assert statement["Effect"] == "Allow"
        for action in actions_of(statement):
            if DATA_ACTION.match(action):
                grants.setdefault(action, []).extend(resources_of(statement))
    return {action: refs(*resources) for action, resources in grants.items()}


def refs(*resources: Any) -> list[Any]:
    """Resources in a canonical order (CDK orders merged statements its own way)."""
    return sorted(resources, key=lambda resource: json.dumps(resource, sort_keys=True))


def table_id(synth: Synthesized) -> str:
    return only(synth.of_type("AWS::DynamoDB::Table"))[0]


def table_arn(synth: Synthesized) -> dict[str, Any]:
    return {"Fn::GetAtt": [table_id(synth), "Arn"]}


def index_arn(synth: Synthesized, index: str) -> dict[str, Any]:
    return {"Fn::Join": ["", [table_arn(synth), f"/index/{index}"]]}


def queue_ids(synth: Synthesized) -> tuple[str, str]:
    """(delivery queue, its dead-letter queue): the queue with a redrive policy, and its target."""
    queues = synth.of_type("AWS::SQS::Queue")
    main = only({key: value for key, value in queues.items() if "RedrivePolicy" in value["Properties"]})[0]
    dead: str = queues[main]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    return main, dead


def failed_queue_id(synth: Synthesized) -> str:
    """The failed-messages queue: the one queue that is neither the delivery queue nor its dead letters."""
    return only({key: value for key, value in synth.of_type("AWS::SQS::Queue").items() if key not in queue_ids(synth)})[
        0
    ]


def queue_arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def state_machines(synth: Synthesized) -> dict[str, tuple[str, dict[str, Any]]]:
    """'ingest' / 'batch' / 'fast' / 'slow' / 'replay' -> (logical id, resource), told apart by their definition."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for key, value in synth.of_type("AWS::StepFunctions::StateMachine").items():
        definition = json.loads(value["Properties"]["DefinitionString"])
        if definition["StartAt"] == "Validate":
            batch = value["Properties"]["DefinitionSubstitutions"]["RequestShape"] == "batch"
            found["batch" if batch else "ingest"] = (key, value)
        elif "WaitBeforeSlowLane" in definition["States"]:
            found["slow"] = (key, value)
        elif definition["StartAt"] == "ReplayPage":
            found["replay"] = (key, value)
        else:
            found["fast"] = (key, value)
    assert len(found) == len(synth.of_type("AWS::StepFunctions::StateMachine")), sorted(found)
    return found


def machine_role(machine: dict[str, Any]) -> str:
    role_id: str = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    return role_id


def invoked_functions(synth: Synthesized, role_id: str) -> tuple[set[str], list[Any]]:
    """(Lambda actions, function ARNs) a role is allowed."""
    statements = role_statements(synth, role_id)
    actions = {action for s in statements for action in actions_of(s) if action.startswith("lambda:")}
    resources = [
        resource
        for statement in statements
        if any(action.startswith("lambda:") for action in actions_of(statement))
        for resource in resources_of(statement)
    ]
    return actions, resources


def joined(value: Any) -> str:
    """Flatten an Fn::Join into text, with references as <LogicalId>."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        return "".join(joined(part) for part in value["Fn::Join"][1])
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    raise AssertionError(f"unexpected intrinsic {value}")


def api_resource_id(synth: Synthesized, path: str) -> str:
    """The AWS::ApiGateway::Resource of a path such as /messages/{messageId}/replay."""
    resources = synth.of_type("AWS::ApiGateway::Resource")

    def path_of(logical_id: str) -> str:
        props = resources[logical_id]["Properties"]
        parent = props["ParentId"]
        prefix = path_of(parent["Ref"]) if "Ref" in parent else ""
        return f"{prefix}/{props['PathPart']}"

    return only({key: value for key, value in resources.items() if path_of(key) == path})[0]


def api_method(synth: Synthesized, http_method: str, path: str) -> dict[str, Any]:
    resource_id = api_resource_id(synth, path)
    return only(
        {
            key: value
            for key, value in synth.of_type("AWS::ApiGateway::Method").items()
            if value["Properties"]["ResourceId"] == {"Ref": resource_id}
            and value["Properties"]["HttpMethod"] == http_method
        }
    )[1]


# The stage's settings for every method ("/*"), and the web console's files (throttled on their own).
EVERY_METHOD = "/*"
CONSOLE_SETTINGS = ("/~1console", "/~1console~1{asset}")


def method_settings(stage: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A stage's MethodSettings by resource path ("/*": every method)."""
    return {setting["ResourcePath"]: setting for setting in stage["Properties"]["MethodSettings"]}
