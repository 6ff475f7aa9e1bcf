"""The ingest path: four step functions and the EXPRESS state machine that runs them.

The machine's definition is statemachines/ingest.asl.json, built like every Relay machine
(stacks/constructs/workflow.py).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.constructs.functions import FunctionPackage, RelayFunction
from stacks.constructs.workflow import check_placeholders, handler_path, relay_state_machine
from stacks.settings import RelaySettings

STATEMACHINE_DIR = Path(__file__).resolve().parents[2] / "statemachines"
INGEST_DEFINITION = STATEMACHINE_DIR / "ingest.asl.json"


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
        self.dedup.grant([table.table_arn], "dynamodb:GetItem", "dynamodb:UpdateItem")
        self.store.grant([table.table_arn], "dynamodb:PutItem", "dynamodb:GetItem")
        self.enqueue.grant([table.table_arn], "dynamodb:UpdateItem")
        self.enqueue.grant([queue.queue_arn], "sqs:SendMessage")

        self.functions = {
            "ValidateFunctionArn": self.validate,
            "DedupFunctionArn": self.dedup,
            "StoreFunctionArn": self.store,
            "EnqueueFunctionArn": self.enqueue,
        }
        definition = check_placeholders(
            INGEST_DEFINITION.name, INGEST_DEFINITION.read_text(encoding="utf-8"), dict.fromkeys(self.functions, "")
        )
        self.state_machine, self.log_group = relay_state_machine(
            self,
            log_name="ingest",
            machine_type=sfn.StateMachineType.EXPRESS,
            definition=definition,
            functions=self.functions,
            tracing=settings.tracing,
        )
