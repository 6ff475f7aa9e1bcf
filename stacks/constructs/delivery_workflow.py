"""The delivery path: dispatcher, the fast (EXPRESS) and slow (STANDARD) lanes, and failed messages.

    delivery queue --SqsEventSource--> dispatcher: first attempt inline (`delivery.firstAttempt`)
        --StartExecution, only when it fails retryably--> fast lane (EXPRESS)
        fast lane: Deliver (short Retry) -> Delivered | MarkFailed | MoveToSlowLane (handoff)
        handoff --StartExecution (name from the message key)--> slow lane (STANDARD)
        slow lane: Wait -> Deliver (long Retry) -> Delivered | MarkFailed
    MarkFailed (finalize): FAILED in DynamoDB + the message on the failed-messages queue

The definitions are statemachines/delivery_{fast,slow}.asl.json with the deployment's retry
policy (`relay.delivery` context) applied by stacks.definitions.render_definition; `relay dev` runs
the machines of the synthesized template, so both run the same definitions.

Each function receives only the ARNs it uses. That is also what keeps the template acyclic: a
machine's definition names its functions, so a function it invokes cannot name that machine.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from functions.contract.key_prefixes import MESSAGE_PREFIX, TARGET_PREFIX
from functions.contract.lanes import DeliveryLane
from functions.contract.secret_names import SENDER_SECRET_PREFIX
from functions.contract.settings_names import Setting
from functions.domain.config import MAX_PARALLEL_DISPATCH, FirstAttempt
from stacks.constructs.base.functions import DEFAULT_TIMEOUT, Foundation, RelayFunction
from stacks.constructs.base.workflow import check_placeholders, relay_state_machine
from stacks.definitions import render_definition
from stacks.nag import acknowledge
from stacks.settings import (
    DELIVER_PLACEHOLDER,
    DELIVERY_LANES,
    FAIL_PLACEHOLDER,
    HANDOFF_PLACEHOLDER,
    RelaySettings,
)

# Within functions/domain/config.MAX_PARALLEL_DISPATCH, so the batch is attempted all at once.
DISPATCH_BATCH_SIZE = MAX_PARALLEL_DISPATCH
DISPATCH_BATCHING_WINDOW = Duration.seconds(1)
FAILED_QUEUE_RETENTION = Duration.days(14)
# functions/adapters/secrets.py: one secret per sender, named relay/senders/<sender>/signing-secret.
SENDER_SECRETS = f"{SENDER_SECRET_PREFIX}*"


def lane_definition(settings: RelaySettings, lane: DeliveryLane) -> str:
    """A lane's definition with this deployment's policy applied, `${...}` placeholders kept for CDK."""
    return render_definition(DELIVERY_LANES[lane], None, settings.lane_policy(lane))


class DeliveryWorkflow(Construct):
    """Dispatcher, deliver, finalize and handoff functions; the two lanes; the failed-messages queue."""

    def __init__(self, scope: Construct, construct_id: str, *, foundation: Foundation) -> None:
        super().__init__(scope, construct_id)
        table, queue, settings = foundation.table, foundation.queue, foundation.settings
        self._foundation = foundation
        self._build_failed_queue()
        self._build_lanes(settings)
        self._build_dispatcher(queue, settings)
        self._grant(table.table_arn, queue, settings)
        self.functions = {
            "dispatcher": self.dispatcher,
            "deliver": self.deliver,
            "finalize": self.finalize,
            "handoff": self.handoff,
        }

    def _build_failed_queue(self) -> None:
        # Where a message that ends FAILED lands, with its reason, for operators to inspect or
        # replay (the delivery queue keeps its own dead-letter queue for dispatch failures).
        self.failed_queue = sqs.Queue(
            self,
            "FailedMessagesQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=FAILED_QUEUE_RETENTION,
        )
        acknowledge(
            self.failed_queue,
            "AwsSolutions-SQS3",
            "This queue is itself the end of the line: the finalize step puts every message that ended "
            "FAILED here for operators (an alarm fires on its depth). Nothing consumes it automatically, so "
            "there is no failed processing to redrive to a further dead-letter queue.",
        )

    def _step(
        self,
        name: str,
        description: str,
        extra: dict[str, str] | None = None,
        timeout: Duration = DEFAULT_TIMEOUT,
    ) -> RelayFunction:
        environment = {**self._foundation.settings.delivery_environment(), **(extra or {})}
        return self._foundation.step_function(self, name, description, environment, timeout=timeout)

    def _build_lanes(self, settings: RelaySettings) -> None:
        """The deliver, finalize and handoff functions and the two lanes that run them."""
        self._failed_queue_url: dict[str, str] = {Setting.FAILED_QUEUE_URL: self.failed_queue.queue_url}
        # The lanes' functions get the timeouts the fast lane's bound counts (settings.fast_lane_run).
        timeouts = settings.lane_function_timeouts()
        self.deliver = self._step(
            "deliver",
            "Relay delivery: one signed, SSRF-checked HTTP attempt, recorded in DynamoDB",
            # The whole HTTP attempt plus the function's own reads and writes.
            timeout=Duration.seconds(timeouts[DELIVER_PLACEHOLDER]),
        )
        self.finalize = self._step(
            "finalize",
            "Relay delivery: mark a message FAILED and put it on the failed-messages queue",
            self._failed_queue_url,
            timeout=Duration.seconds(timeouts[FAIL_PLACEHOLDER]),
        )

        # Machine roles, definitions and substitutions: the slow lane first (handoff starts it).
        slow_functions = {DELIVER_PLACEHOLDER: self.deliver, FAIL_PLACEHOLDER: self.finalize}
        self.slow_lane, self.slow_lane_logs = self._lane(settings, DeliveryLane.SLOW, slow_functions)

        self.handoff = self._step(
            "handoff",
            "Relay delivery: move a message that exhausted the fast lane to the slow lane",
            {Setting.SLOW_LANE_ARN: self.slow_lane.state_machine_arn},
            timeout=Duration.seconds(timeouts[HANDOFF_PLACEHOLDER]),
        )
        fast_functions = {
            DELIVER_PLACEHOLDER: self.deliver,
            FAIL_PLACEHOLDER: self.finalize,
            HANDOFF_PLACEHOLDER: self.handoff,
        }
        self.fast_lane, self.fast_lane_logs = self._lane(settings, DeliveryLane.FAST, fast_functions)

    def _lane(
        self, settings: RelaySettings, lane: DeliveryLane, functions: dict[str, RelayFunction]
    ) -> tuple[sfn.StateMachine, logs.LogGroup]:
        """A lane's machine: the fast lane EXPRESS (a short run), the slow lane STANDARD (hours of waits)."""
        fast = lane == DeliveryLane.FAST
        return relay_state_machine(
            _Lane(self, "FastLane" if fast else "SlowLane"),
            log_name="delivery-fast" if fast else "delivery-slow",
            machine_type=sfn.StateMachineType.EXPRESS if fast else sfn.StateMachineType.STANDARD,
            definition=check_placeholders(
                DELIVERY_LANES[lane], lane_definition(settings, lane), dict.fromkeys(functions, "")
            ),
            functions=functions,
            tracing=settings.tracing,
        )

    def _build_dispatcher(self, queue: sqs.IQueue, settings: RelaySettings) -> None:
        """The dispatcher, fed by the delivery queue: each message's first attempt."""
        self.dispatcher = self._step(
            "dispatcher",
            "Relay delivery: first attempt of each queued message; a fast-lane run when it fails retryably",
            {
                Setting.FAST_LANE_ARN: self.fast_lane.state_machine_arn,
                # An inline attempt whose target asks (Retry-After) for a long wait goes to the slow lane.
                Setting.SLOW_LANE_ARN: self.slow_lane.state_machine_arn,
                # A message whose target is at its limit goes back on the queue with a delay.
                Setting.QUEUE_URL: queue.queue_url,
                **self._failed_queue_url,
                **settings.dispatcher_environment(),
            },
            timeout=Duration.seconds(settings.dispatcher_timeout_seconds),
        )
        self.dispatcher.function.add_event_source(
            event_sources.SqsEventSource(
                queue,
                batch_size=DISPATCH_BATCH_SIZE,
                max_batching_window=DISPATCH_BATCHING_WINDOW,
                # Waiting messages can never take the account's concurrency from ingest (cdk.json).
                max_concurrency=settings.dispatcher_max_concurrency,
                # A failed record is retried alone (functions/dispatcher: process_partial_response).
                report_batch_item_failures=True,
            )
        )

    def _grant(self, table_arn: str, queue: sqs.IQueue, settings: RelaySettings) -> None:
        # Least privilege, per function; DynamoDB on the table only (no index is queried here).
        # Writes reach message and target items only (dynamodb:LeadingKeys), for every function here.
        self.dispatcher.grant([table_arn], "dynamodb:GetItem", "dynamodb:BatchGetItem")
        self.dispatcher.grant_item_writes(table_arn, "dynamodb:UpdateItem", prefixes=(MESSAGE_PREFIX, TARGET_PREFIX))
        inline = settings.first_attempt == FirstAttempt.INLINE
        if not inline:  # (inline, its attempt grants below include it)
            self.dispatcher.grant_history_moves(table_arn)
        # A first attempt answered with a long Retry-After goes straight to the slow lane (inline only).
        lanes = [self.fast_lane.state_machine_arn] + ([self.slow_lane.state_machine_arn] if inline else [])
        self.dispatcher.grant(lanes, "states:StartExecution")
        # An expired message is failed by the dispatcher itself (fail_message -> failed queue).
        self.dispatcher.grant([self.failed_queue.queue_arn], "sqs:SendMessage")

        attempting = [self.deliver]
        if inline:
            attempting.append(self.dispatcher)  # its first attempt is the same `attempt` as deliver's
            # A target at its limit: the queued message goes back with a delay (functions/services/delivery._defer).
            self.dispatcher.grant([queue.queue_arn], "sqs:SendMessage")
        for function in attempting:
            self._grant_attempts(function, table_arn)

        self.finalize.grant([table_arn], "dynamodb:GetItem")
        self.finalize.grant_item_writes(table_arn, "dynamodb:UpdateItem", prefixes=(MESSAGE_PREFIX, TARGET_PREFIX))
        self.finalize.grant_history_moves(table_arn)
        self.finalize.grant([self.failed_queue.queue_arn], "sqs:SendMessage")

        self.handoff.grant([table_arn], "dynamodb:GetItem")
        self.handoff.grant_item_writes(table_arn, "dynamodb:UpdateItem", prefixes=(MESSAGE_PREFIX, TARGET_PREFIX))
        self.handoff.grant_history_moves(table_arn)
        self.handoff.grant([self.slow_lane.state_machine_arn], "states:StartExecution")

    def _grant_attempts(self, function: RelayFunction, table_arn: str) -> None:
        """What `delivery.attempt` needs: the head and content (one BatchGetItem), its writes, the
        target's health (a GetItem at most every few seconds per target; an ADD on failure), a limited
        target's limits and flow state (BatchGetItem, one conditional UpdateItem per permit, GetItem when
        a write lost to another holder) and the sender's signing secret."""
        function.grant([table_arn], "dynamodb:GetItem", "dynamodb:BatchGetItem")
        function.grant_item_writes(table_arn, "dynamodb:UpdateItem", prefixes=(MESSAGE_PREFIX, TARGET_PREFIX))
        function.grant_history_moves(table_arn)
        sender_secrets = Stack.of(self).format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=SENDER_SECRETS,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        # Read only: senders are created with their secret (relay/admin.py); a sender without one
        # fails delivery rather than being sent unsigned (functions/services/delivery.attempt).
        function.grant([sender_secrets], "secretsmanager:GetSecretValue")
        acknowledge(
            function.role,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:{SENDER_SECRETS}]",
            "Each sender has its own signing secret, created with the sender (relay senders create), so the "
            "secrets are not known when the stack is deployed; the wildcard is limited to Relay's "
            f"{SENDER_SECRET_PREFIX} prefix and to reading (secretsmanager:GetSecretValue).",
        )


class _Lane(Construct):
    """Scope of one lane's machine and log group (FastLane/StateMachine, SlowLane/ExecutionLogs, ...)."""
