"""Outcome callbacks and operational notifications (issue 18 items 3 and 4).

A callback or a notification is a Relay message of its own, stored and enqueued by the function
that recorded what it reports (functions/services/outcomes.py): the dispatcher and the lanes'
deliver and finalize steps. Each of them gets exactly what that needs: PutItem on message and
activity items (the content and the head, the sender's activity minute), the delivery queue, a read
of the sender's notification setting (GetItem on the table, which they have), and PutEvents on this
stack's own bus, where every notification also goes (source `relay`) for users' EventBridge rules.
The API function writes the notification settings (PUT/DELETE /notifications): NOTIFY# items only.
"""

from __future__ import annotations

from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_events as events
from constructs import Construct

from functions.contract.key_prefixes import ACTIVITY_PREFIX, MESSAGE_PREFIX, NOTIFICATION_PREFIX
from functions.contract.settings_names import Setting
from stacks.constructs.api import Api
from stacks.constructs.functions import Foundation, RelayFunction


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
            function.grant_item_writes(
                table.table_arn, "dynamodb:PutItem", "dynamodb:UpdateItem", prefixes=(MESSAGE_PREFIX, ACTIVITY_PREFIX)
            )
            function.grant([table.table_arn], "dynamodb:GetItem")
            function.grant([queue.queue_arn], "sqs:SendMessage")
            function.grant([self.bus.event_bus_arn], "events:PutEvents")
        api_function.grant_item_writes(
            table.table_arn, "dynamodb:PutItem", "dynamodb:DeleteItem", prefixes=(NOTIFICATION_PREFIX,)
        )
        # PUT/GET/DELETE /notifications: the API function, behind the authorizer like every route.
        integration = apigateway.LambdaIntegration(api_function.function, proxy=True, allow_test_invoke=False)
        resource = api.rest_api.root.add_resource("notifications")
        self.methods = [resource.add_method(verb, integration) for verb in ("PUT", "GET", "DELETE")]
