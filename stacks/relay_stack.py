"""RelayStack: one deployable stack, composed of one construct per capability.

    Storage            table, delivery queue (+ dead letters)
    IngestWorkflow     POST /messages (/batch) -> ingest machine (batch machine; EXPRESS) -> delivery queue
    DeliveryWorkflow   dispatcher -> fast lane (EXPRESS) -> slow lane (STANDARD); failed messages
    SenderAuthentication  token authorizer in front of every route (per-sender API keys)
    Api                REST API, stage, usage plan, gateway responses
    Operations         GET /messages[/{id}], replay, cancel
    BulkReplay         POST /messages/replay, GET /replays/{id}, the replay job's machine
    Notifications      outcome callbacks and notifications: grants, PUT/GET/DELETE /notifications, the event bus
    Reconciler         re-drives overdue messages every minute
    Scheduler          queues delayed messages at their time, fires cron schedules, every minute
    Observability      alarms and the dashboard
    TraceSampling      X-Ray sampling rules for the API stage and the state machines

Each is wired here from the attributes the others expose (`storage.table`, `delivery.fast_lane`, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from functions.contract.resource_tags import USAGE_PLAN_TABLE_TAG
from stacks import bundling
from stacks.constructs.api import Api
from stacks.constructs.authentication import SenderAuthentication
from stacks.constructs.base.functions import Foundation, FunctionPackage
from stacks.constructs.delivery_workflow import DeliveryWorkflow
from stacks.constructs.ingest_workflow import IngestWorkflow
from stacks.constructs.notifications import Notifications
from stacks.constructs.observability import Observability, TraceSampling
from stacks.constructs.operations import Operations
from stacks.constructs.reconciler import Reconciler
from stacks.constructs.replay import BulkReplay
from stacks.constructs.scheduler import Scheduler
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

        self._build_storage(settings, function_source, dependency_layer)
        self._build_paths(settings)
        self._build_operations()
        self._build_observability(settings)
        self._add_outputs()

    def _build_storage(
        self, settings: RelaySettings, function_source: Path | None, dependency_layer: Path | None
    ) -> None:
        """The table and queues, and the code package every function runs."""
        self.storage = Storage(self, "Storage", settings=settings)
        self.function_package = FunctionPackage(
            self,
            "FunctionPackage",
            source_dir=function_source or bundling.stage_function_source(),
            layer_dir=dependency_layer or bundling.ensure_dependency_layer(),
            application_log_level=settings.application_log_level,
        )

    def _build_paths(self, settings: RelaySettings) -> None:
        """Ingest, delivery, sender authentication and the API in front of them."""
        foundation = self.foundation = Foundation(
            self.function_package, self.storage.table, self.storage.queue, settings
        )
        self.ingest = IngestWorkflow(self, "Ingest", foundation=foundation)
        self.delivery = DeliveryWorkflow(self, "Delivery", foundation=foundation)
        self.authentication = SenderAuthentication(self, "Authentication", foundation=foundation)
        self.api = Api(
            self,
            "Api",
            ingest_state_machine=self.ingest.state_machine,
            batch_state_machine=self.ingest.batch_state_machine,
            authorizer=self.authentication.authorizer,
            settings=settings,
        )
        # `relay senders create --table T` finds the plan every new sender's API key joins by this tag.
        Tags.of(self.api.usage_plan).add(USAGE_PLAN_TABLE_TAG, self.storage.table.table_name)

    def _build_operations(self) -> None:
        """The API function's routes, bulk replay and the reconciler."""
        foundation = self.foundation
        self.operations = Operations(self, "Operations", foundation=foundation, api=self.api)
        self.replay = BulkReplay(
            self, "BulkReplay", foundation=foundation, api=self.api, api_function=self.operations.function
        )
        delivery = self.delivery
        self.notifications = Notifications(
            self,
            "Notifications",
            foundation=foundation,
            reporters=[delivery.dispatcher, delivery.deliver, delivery.finalize, delivery.handoff],
            api_function=self.operations.function,
            api=self.api,
        )
        self.reconciler = Reconciler(
            self,
            "Reconciler",
            foundation=foundation,
            failed_queue=self.delivery.failed_queue,
            dead_letter_queue=self.storage.dead_letter_queue,
        )
        self.scheduler = Scheduler(self, "Scheduler", foundation=foundation)

    def _build_observability(self, settings: RelaySettings) -> None:
        """Alarms, the dashboard and X-Ray sampling."""
        queue = self.storage.queue
        self.observability = Observability(
            self,
            "Observability",
            rest_api=self.api.rest_api,
            ingest=self.ingest.state_machine,
            ingest_batch=self.ingest.batch_state_machine,
            fast_lane=self.delivery.fast_lane,
            slow_lane=self.delivery.slow_lane,
            queue=queue,
            dead_letter_queue=self.storage.dead_letter_queue,
            failed_queue=self.delivery.failed_queue,
            reconciler=self.reconciler.function.function,
        )
        self.trace_sampling = TraceSampling(
            self,
            "TraceSampling",
            stage=self.api.rest_api.deployment_stage,
            machines={
                "Ingest": self.ingest.state_machine,
                "IngestBatch": self.ingest.batch_state_machine,
                "Replay": self.replay.state_machine,
                "FastLane": self.delivery.fast_lane,
                "SlowLane": self.delivery.slow_lane,
            },
            rate=settings.xray_sampling_rate,
            reservoir_per_second=settings.xray_reservoir_per_second,
        )

    def _add_outputs(self) -> None:
        """What a deployment's users look up: URLs, names and ARNs."""
        table, queue, delivery = self.storage.table, self.storage.queue, self.delivery
        outputs = [
            ("ApiUrl", self.api.url, "Base URL of the Relay API"),
            ("MessagesUrl", self.api.messages_url, "POST messages here"),
            ("TableName", table.table_name, "Message table"),
            ("QueueUrl", queue.queue_url, "Delivery queue"),
            ("DeadLetterQueueUrl", self.storage.dead_letter_queue.queue_url, "Delivery dead-letter queue"),
            ("IngestStateMachineArn", self.ingest.state_machine.state_machine_arn, "Ingest state machine (EXPRESS)"),
            (
                "IngestBatchStateMachineArn",
                self.ingest.batch_state_machine.state_machine_arn,
                "Batch ingest state machine (EXPRESS): POST /messages/batch",
            ),
            (
                "UsagePlanId",
                self.api.usage_plan.usage_plan_id,
                "Usage plan that senders' API keys join (relay senders create --usage-plan-id)",
            ),
            ("FailedQueueUrl", delivery.failed_queue.queue_url, "Messages that ended FAILED, with their reason"),
            ("FastLaneArn", delivery.fast_lane.state_machine_arn, "Delivery fast lane (EXPRESS)"),
            ("SlowLaneArn", delivery.slow_lane.state_machine_arn, "Delivery slow lane (STANDARD)"),
            ("ReplayStateMachineArn", self.replay.state_machine.state_machine_arn, "Bulk replay jobs (STANDARD)"),
            ("DashboardName", self.observability.dashboard.dashboard_name, "CloudWatch dashboard of the whole path"),
            (
                "EventBusName",
                self.notifications.bus.event_bus_name,
                "Operational notifications (source relay): route them with EventBridge rules",
            ),
        ]
        for output_id, value, description in outputs:
            CfnOutput(self, output_id, value=value, description=description)
