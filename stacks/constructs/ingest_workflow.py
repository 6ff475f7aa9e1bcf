"""The ingest path: four step functions and the EXPRESS state machine that runs them.

The machine's definition is statemachines/ingest.asl.json, inlined into the template (so no
bootstrap bucket is needed for it) with its `${...Arn}` placeholders replaced by the functions.
"""

from __future__ import annotations

import re
from pathlib import Path

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.constructs.functions import LOG_RETENTION, FunctionPackage, RelayFunction
from stacks.nag import acknowledge
from stacks.settings import RelaySettings

STATEMACHINE_DIR = Path(__file__).resolve().parents[2] / "statemachines"
INGEST_DEFINITION = STATEMACHINE_DIR / "ingest.asl.json"

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def handler_path(step: str) -> str:
    return f"functions.{step}.handler.lambda_handler"


def load_definition(path: Path, substitutions: dict[str, str]) -> str:
    """The definition text, checked to use exactly the placeholders we substitute."""
    text = path.read_text(encoding="utf-8")
    placeholders = set(_PLACEHOLDER.findall(text))
    if placeholders != set(substitutions):
        raise ValueError(
            f"{path.name} uses placeholders {sorted(placeholders)} but the stack substitutes {sorted(substitutions)}"
        )
    return text


class IngestWorkflow(Construct):
    """Validate -> Dedup -> StorePending -> Enqueue, answered synchronously (StartSyncExecution)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        package: FunctionPackage,
        table: dynamodb.ITable,
        queue: sqs.IQueue,
        settings: RelaySettings,
    ) -> None:
        super().__init__(scope, construct_id)
        environment = {"RELAY_TABLE_NAME": table.table_name, **settings.function_environment()}

        def step(name: str, description: str, extra: dict[str, str] | None = None) -> RelayFunction:
            return RelayFunction(
                self,
                name.capitalize(),
                package=package,
                handler=handler_path(name),
                description=description,
                environment={**environment, **(extra or {})},
            )

        self.validate = step("validate", "Relay ingest: validate a message against the schema and rules")
        self.dedup = step("dedup", "Relay ingest: answer a repeated message from its stored head")
        self.store = step("store", "Relay ingest: store the message PENDING (conditional write)")
        self.enqueue = step(
            "enqueue",
            "Relay ingest: send the message to the delivery queue",
            {"RELAY_QUEUE_URL": queue.queue_url},
        )

        # Least privilege, per step. validate touches no data at all.
        self.dedup.grant([table.table_arn], "dynamodb:GetItem")
        self.store.grant([table.table_arn], "dynamodb:PutItem", "dynamodb:GetItem")
        self.enqueue.grant([table.table_arn], "dynamodb:PutItem", "dynamodb:UpdateItem")
        self.enqueue.grant([queue.queue_arn], "sqs:SendMessage")

        self.functions = {
            "ValidateFunctionArn": self.validate,
            "DedupFunctionArn": self.dedup,
            "StoreFunctionArn": self.store,
            "EnqueueFunctionArn": self.enqueue,
        }
        substitutions = {placeholder: fn.function.function_arn for placeholder, fn in self.functions.items()}
        definition = load_definition(INGEST_DEFINITION, substitutions)

        self.log_group = logs.LogGroup(
            self,
            "ExecutionLogs",
            # Step Functions' vended-log prefix keeps the account's CloudWatch Logs resource policy small.
            log_group_name=f"/aws/vendedlogs/states/{Stack.of(self).stack_name}-ingest",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_type=sfn.StateMachineType.EXPRESS,
            definition_body=sfn.DefinitionBody.from_string(definition),
            definition_substitutions=substitutions,
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group,
                level=sfn.LogLevel.ERROR,
                # Execution data holds message bodies and headers; they stay out of the logs.
                include_execution_data=False,
            ),
        )
        # The definition is a string, so CDK cannot see which functions it calls: allow exactly
        # these four, unqualified (the definition names no version or alias).
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[fn.function.function_arn for fn in self.functions.values()],
            )
        )
        acknowledge(
            self.state_machine,
            "AwsSolutions-SF1",
            "Logging ALL events writes some 30 history events per request (several KB even without "
            "execution data, a few dollars per million messages at CloudWatch's ingestion price: a large "
            "share of Relay's cost budget). ERROR still logs every failed step and run; X-Ray samples the rest.",
        )
        acknowledge(
            self.state_machine,
            "AwsSolutions-IAM5[Resource::*]",
            "CloudWatch Logs delivery (logs:CreateLogDelivery, ...) and X-Ray (xray:PutTraceSegments, "
            "...) actions that Step Functions needs for logging and tracing support no resource-level "
            "permissions.",
        )
