"""RelayStack: one deployable stack, composed of one construct per capability.

Later capabilities (delivery workflow, dispatcher, authorizer, reconciler, ...) are more
constructs in stacks/constructs/, wired here from the attributes the existing ones expose
(`storage.table`, `storage.queue`, `function_package`, `api.rest_api`, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from stacks import bundling
from stacks.constructs.api import Api
from stacks.constructs.functions import FunctionPackage
from stacks.constructs.ingest_workflow import IngestWorkflow
from stacks.constructs.storage import Storage
from stacks.settings import RelaySettings


class RelayStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: RelaySettings,
        function_source: Path | None = None,
        dependency_layer: Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.settings = settings

        self.storage = Storage(self, "Storage")
        self.function_package = FunctionPackage(
            self,
            "FunctionPackage",
            source_dir=function_source or bundling.stage_function_source(),
            layer_dir=dependency_layer or bundling.ensure_dependency_layer(),
        )
        self.ingest = IngestWorkflow(
            self,
            "Ingest",
            package=self.function_package,
            table=self.storage.table,
            queue=self.storage.queue,
            settings=settings,
        )
        self.api = Api(self, "Api", ingest_state_machine=self.ingest.state_machine, settings=settings)

        CfnOutput(self, "ApiUrl", value=self.api.url, description="Base URL of the Relay API")
        CfnOutput(self, "MessagesUrl", value=self.api.messages_url, description="POST messages here")
        CfnOutput(self, "TableName", value=self.storage.table.table_name, description="Message table")
        CfnOutput(self, "QueueUrl", value=self.storage.queue.queue_url, description="Delivery queue")
        CfnOutput(
            self,
            "DeadLetterQueueUrl",
            value=self.storage.dead_letter_queue.queue_url,
            description="Delivery dead-letter queue",
        )
        CfnOutput(
            self,
            "IngestStateMachineArn",
            value=self.ingest.state_machine.state_machine_arn,
            description="Ingest state machine (EXPRESS)",
        )
