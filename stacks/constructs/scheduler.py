"""The scheduler: every minute, hand the delivery queue the delayed messages whose time is near and
fire the cron schedules whose next firing is near (functions/services/scheduling/scheduler.py).

It reads only the scheduler's shards of the `due` index (`SCHED#<n>`), never the reconciler's; a
firing is stored as an ordinary message (content and head) of the schedule's sender.
"""

from __future__ import annotations

from constructs import Construct

from functions.contract.key_prefixes import (
    ACTIVITY_PREFIX,
    MESSAGE_PREFIX,
    SCHEDULE_PREFIX,
    SCHEDULER_CURSOR_PREFIX,
)
from stacks.constructs.base.functions import Foundation
from stacks.constructs.storage import DUE_INDEX


class Scheduler(Construct):
    """The scheduler function and the EventBridge rule that runs it every minute."""

    def __init__(self, scope: Construct, construct_id: str, *, foundation: Foundation) -> None:
        super().__init__(scope, construct_id)
        table, queue = foundation.table, foundation.queue
        # A missed sweep is made up by the next one a minute later.
        self.function, self.rule = foundation.periodic_function(
            self, "scheduler", "Relay: queue delayed messages at their time and fire cron schedules"
        )
        # Its shards of the due index; then the heads and schedules they name.
        self.function.grant([f"{table.table_arn}/index/{DUE_INDEX}"], "dynamodb:Query")
        self.function.grant([table.table_arn], "dynamodb:GetItem")
        # Moving a never-claimed message's head to the reconciler's shard and clearing leftovers
        # (messages), storing a firing (content and head, messages; the sender's activity minute,
        # ACTIVE#), advancing a schedule (SCHEDULE#) and its shards' cursors (CURSOR#): nothing else.
        self.function.grant_item_writes(
            table.table_arn, "dynamodb:UpdateItem", "dynamodb:PutItem", prefixes=(MESSAGE_PREFIX, SCHEDULE_PREFIX)
        )
        self.function.grant_item_writes(
            table.table_arn, "dynamodb:UpdateItem", prefixes=(ACTIVITY_PREFIX, SCHEDULER_CURSOR_PREFIX)
        )
        self.function.grant([queue.queue_arn], "sqs:SendMessage")
