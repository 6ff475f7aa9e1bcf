"""The ingest path: four step functions and the two EXPRESS state machines that run them.

POST /messages (one message) and POST /messages/batch (up to 100 messages in one run) each start
a machine of their own, both built from statemachines/ingest.asl.json like every Relay machine
(stacks/constructs/base/workflow.py) and running the same four functions. The only difference is the
request shape the definition's `${RequestShape}` placeholder hands to Validate: the one way a batch
is recognised (functions/contract/request_shapes.py). A machine per route keeps each route's runs,
logs, alarms and trace sampling apart, and the single path's cost unchanged.
"""

from __future__ import annotations

from functools import partial

from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from functions.contract.key_prefixes import ACTIVITY_PREFIX, MESSAGE_PREFIX
from functions.contract.request_shapes import SHAPE_PLACEHOLDER, RequestShape
from stacks.constructs.base.functions import Foundation
from stacks.constructs.base.workflow import check_placeholders, relay_state_machine
from stacks.paths import STATEMACHINE_DIR
from stacks.settings import RelaySettings

INGEST_DEFINITION = STATEMACHINE_DIR / "ingest.asl.json"


class IngestWorkflow(Construct):
    """Validate -> Dedup -> StorePending -> Enqueue, answered synchronously (StartSyncExecution),
    for one message (`state_machine`) and for a batch (`batch_state_machine`)."""

    def __init__(self, scope: Construct, construct_id: str, *, foundation: Foundation) -> None:
        super().__init__(scope, construct_id)
        table, queue, settings = foundation.table, foundation.queue, foundation.settings

        step = partial(foundation.step_function, self)
        self.validate = step("validate", "Relay ingest: validate a message against the schema and rules")
        self.dedup = step("dedup", "Relay ingest: answer a repeated message from its stored head")
        self.store = step("store", "Relay ingest: store the message PENDING (conditional write)")
        self.enqueue = step(
            "enqueue",
            "Relay ingest: send the message to the delivery queue",
            with_queue=True,
        )

        # Least privilege, per step. validate touches no data at all.
        # Writes reach message items only (dynamodb:LeadingKeys).
        self.dedup.grant([table.table_arn], "dynamodb:GetItem")
        self.dedup.grant_item_writes(table.table_arn, "dynamodb:UpdateItem", prefixes=(MESSAGE_PREFIX,))
        self.store.grant([table.table_arn], "dynamodb:GetItem")
        # Messages (content and head puts), and the sender's activity minute the reconciler's sweep
        # reads (an update that adds the message's id).
        self.store.grant_item_writes(table.table_arn, "dynamodb:PutItem", prefixes=(MESSAGE_PREFIX,))
        self.store.grant_item_writes(table.table_arn, "dynamodb:UpdateItem", prefixes=(ACTIVITY_PREFIX,))
        self.enqueue.grant_item_writes(table.table_arn, "dynamodb:UpdateItem", prefixes=(MESSAGE_PREFIX,))
        self.enqueue.grant([queue.queue_arn], "sqs:SendMessage")

        self.functions = {
            "ValidateFunctionArn": self.validate,
            "DedupFunctionArn": self.dedup,
            "StoreFunctionArn": self.store,
            "EnqueueFunctionArn": self.enqueue,
        }
        self.state_machine, self.log_group = self._machine(self, "ingest", RequestShape.MESSAGE, settings)
        # Its own scope: every machine's children are named StateMachine and ExecutionLogs.
        self.batch_state_machine, self.batch_log_group = self._machine(
            Construct(self, "Batch"), "ingest-batch", RequestShape.BATCH, settings
        )

    def _machine(
        self, scope: Construct, log_name: str, shape: RequestShape, settings: RelaySettings
    ) -> tuple[sfn.StateMachine, logs.LogGroup]:
        values = {SHAPE_PLACEHOLDER: shape.value}
        definition = check_placeholders(
            INGEST_DEFINITION.name,
            INGEST_DEFINITION.read_text(encoding="utf-8"),
            {**dict.fromkeys(self.functions, ""), **values},
        )
        return relay_state_machine(
            scope,
            log_name=log_name,
            machine_type=sfn.StateMachineType.EXPRESS,
            definition=definition,
            functions=self.functions,
            tracing=settings.tracing,
            values=values,
        )
