"""The reconciler: every minute, re-drive messages that are overdue with no live run.

It also runs the circuit breaker's probes and re-drives the PAUSED messages of a target that
recovered (functions/services/targeting/target_health.py). It is what makes "nothing lost" hold when a queue
send, a Lambda or a run fails between steps:
it reads the sparse `due` index, re-enqueues a stuck message (or fails it for good after a few
re-drives, like the finalize step: FAILED plus the failed-messages queue).
"""

from __future__ import annotations

from aws_cdk import aws_sqs as sqs
from constructs import Construct

from functions.contract.key_prefixes import MESSAGE_PREFIX, TARGET_PREFIX
from functions.contract.settings_names import Setting
from stacks.constructs.base.functions import Foundation
from stacks.constructs.storage import DUE_INDEX, SENDER_INDEX, STATUS_INDEX


class Reconciler(Construct):
    """The reconciler function and the EventBridge rule that runs it every minute."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        foundation: Foundation,
        failed_queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        table, queue = foundation.table, foundation.queue
        # A missed round is made up by the next one a minute later.
        self.function, self.rule = foundation.periodic_function(
            self,
            "reconciler",
            "Relay: re-drive messages that are overdue with no live delivery run",
            {
                Setting.FAILED_QUEUE_URL: failed_queue.queue_url,
                Setting.DEAD_LETTER_QUEUE_URL: dead_letter_queue.queue_url,
                **foundation.settings.delivery_environment(),
            },
        )
        # The due index; the senders (byStatus) and their recent messages (bySender) for the sweep of
        # messages never claimed, whose heads it batch-reads.
        self.function.grant(
            [f"{table.table_arn}/index/{index}" for index in (DUE_INDEX, STATUS_INDEX, SENDER_INDEX)],
            "dynamodb:Query",
        )
        # Circuit breaker: targets that closed (BREAKER#RESUMING) and their paused messages are
        # ranges of the sparse byStatus index (queried above); the heads they name are read in one
        # BatchGetItem.
        # The sweep's senders active per minute are partitions of the table itself (ACTIVE#).
        self.function.grant([table.table_arn], "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")
        self.function.grant_item_writes(
            table.table_arn, "dynamodb:UpdateItem", prefixes=(MESSAGE_PREFIX, TARGET_PREFIX)
        )
        self.function.grant_history_moves(table.table_arn)
        self.function.grant([queue.queue_arn, failed_queue.queue_arn], "sqs:SendMessage")
        # Dispatches that failed too often land in the dead-letter queue; each round takes them back.
        self.function.grant([dead_letter_queue.queue_arn], "sqs:ReceiveMessage", "sqs:DeleteMessage")
