"""How every Relay state machine is built from its statemachines/*.asl.json file.

The definition is inlined (DefinitionBody.from_string, so no bootstrap bucket is needed for it),
its `${...Arn}` placeholders replaced by `definition_substitutions`; it logs to its own log group
(how much: stacks/tracing.py), is traced, and may invoke exactly the functions it names.
"""

from __future__ import annotations

import re

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.constructs.base.functions import LOG_RETENTION, RelayFunction
from stacks.nag import acknowledge
from stacks.tracing import Tracing, execution_logging

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def check_placeholders(name: str, text: str, substitutions: dict[str, str]) -> str:
    """`text`, checked to use exactly the placeholders the stack substitutes."""
    placeholders = set(_PLACEHOLDER.findall(text))
    if placeholders != set(substitutions):
        raise ValueError(
            f"{name} uses placeholders {sorted(placeholders)} but the stack substitutes {sorted(substitutions)}"
        )
    return text


def relay_state_machine(
    scope: Construct,
    *,
    log_name: str,
    machine_type: sfn.StateMachineType,
    definition: str,
    functions: dict[str, RelayFunction],
    tracing: Tracing,
    values: dict[str, str] | None = None,
) -> tuple[sfn.StateMachine, logs.LogGroup]:
    """The machine (`StateMachine`) and its log group (`ExecutionLogs`), as children of `scope`.

    `functions` maps each placeholder of `definition` to the function it names, `values` any other
    placeholder to its text; `tracing` is the deployment's `stacks.tracing`.
    """
    substitutions = {placeholder: fn.function.function_arn for placeholder, fn in functions.items()}
    substitutions.update(values or {})
    log_group = logs.LogGroup(
        scope,
        "ExecutionLogs",
        # Step Functions' vended-log prefix keeps the account's CloudWatch Logs resource policy small.
        log_group_name=f"/aws/vendedlogs/states/{Stack.of(scope).stack_name}-{log_name}",
        retention=LOG_RETENTION,
        removal_policy=RemovalPolicy.DESTROY,
    )
    # What the console needs to open this machine's runs (stacks/tracing.py).
    logging = execution_logging(machine_type.value, tracing)
    machine = sfn.StateMachine(
        scope,
        "StateMachine",
        state_machine_type=machine_type,
        definition_body=sfn.DefinitionBody.from_string(definition),
        definition_substitutions=substitutions,
        tracing_enabled=True,
        logs=sfn.LogOptions(
            destination=log_group,
            level=sfn.LogLevel(logging.level),
            include_execution_data=logging.include_execution_data,
        ),
    )
    # The definition is a string, so CDK cannot see which functions it calls: allow exactly
    # these, unqualified (the definition names no version or alias).
    machine.add_to_role_policy(
        iam.PolicyStatement(
            actions=["lambda:InvokeFunction"],
            resources=[fn.function.function_arn for fn in functions.values()],
        )
    )
    _acknowledge_logging(machine, logging.level)
    return machine, log_group


def _acknowledge_logging(machine: sfn.StateMachine, level: str) -> None:
    """cdk-nag's findings on a machine's logging and tracing, each with its reason."""
    if level != "ALL":
        acknowledge(
            machine,
            "AwsSolutions-SF1",
            "Logging ALL events writes every history event of every run with its data (the cost per "
            "million messages is in bench/README.md); `stacks.tracing: all` turns it on for the EXPRESS "
            "machines. ERROR still logs every failed step and run; X-Ray samples the rest, and a STANDARD "
            "run keeps its full history in Step Functions.",
        )
    acknowledge(
        machine,
        "AwsSolutions-IAM5[Resource::*]",
        "CloudWatch Logs delivery (logs:CreateLogDelivery, ...) and X-Ray (xray:PutTraceSegments, "
        "...) actions that Step Functions needs for logging and tracing support no resource-level "
        "permissions.",
    )
