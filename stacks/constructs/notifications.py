"""Outcome callbacks and operational notifications (issue 18 items 3 and 4).

A callback or a notification is a Relay message of its own, stored and enqueued by the function
that recorded what it reports (functions/services/reporting/outcomes.py): the dispatcher and the lanes'
deliver, finalize and handoff steps. Beyond what they have for their own work (PutItem and UpdateItem on
message items, GetItem on the table for the sender's notification setting), each gets: BatchGetItem
(the finished message's head and content), PutItem on
activity items (the sender's activity minute, so the reconciler finds an emitted message that was
never enqueued), SendMessage on the delivery queue, and PutEvents on this stack's own bus, where
every notification also goes (source `relay`) for users' EventBridge rules. The API function writes
the notification settings (PUT/DELETE /notifications, NOTIFY# items: its write grant is in
stacks/constructs/operations.py); its routes are added here.
"""

from __future__ import annotations

from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_events as events
from constructs import Construct

from functions.contract.key_prefixes import ACTIVITY_PREFIX
from functions.contract.settings_names import Setting
from stacks.constructs.api import Api
from stacks.constructs.base.functions import Foundation, RelayFunction


class Notifications(Construct):
    """The event bus and the grants of the functions that report outcomes."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        foundation: Foundation,
        reporters: list[RelayFunction],
        api_function: RelayFunction,
        api: Api,
    ) -> None:
        super().__init__(scope, construct_id)
        self.bus = events.EventBus(self, "Bus")
        table, queue = foundation.table, foundation.queue
        for function in reporters:
            function.function.add_environment(Setting.QUEUE_URL, queue.queue_url)
            function.function.add_environment(Setting.EVENT_BUS_NAME, self.bus.event_bus_name)
            # Message items: PutItem (content, head) and UpdateItem (a failed enqueue) they already
            # have for their own work; the sender's activity minute is the one new kind of item.
            function.grant_item_writes(table.table_arn, "dynamodb:UpdateItem", prefixes=(ACTIVITY_PREFIX,))
            # The finished message's head and content in one read (BatchGetItem), to report it.
            function.grant([table.table_arn], "dynamodb:BatchGetItem")
            function.grant([queue.queue_arn], "sqs:SendMessage")
            function.grant([self.bus.event_bus_arn], "events:PutEvents")
        # PUT/GET/DELETE /notifications: the API function, behind the authorizer like every route.
        integration = apigateway.LambdaIntegration(api_function.function, proxy=True, allow_test_invoke=False)
        resource = api.rest_api.root.add_resource("notifications")
        self.methods = [resource.add_method(verb, integration) for verb in ("PUT", "GET", "DELETE")]
