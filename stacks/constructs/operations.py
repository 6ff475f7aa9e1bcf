"""The read-and-act routes: a sender's messages, their status, replay and cancel (functions/api).

    GET  /messages?status=...                  list a sender's messages by status, newest first
    GET  /messages/{messageId}                 status, attempts, events, executions
    POST /messages/{messageId}/replay          deliver a finished message again
    POST /messages/{messageId}/cancel          stop a message that has not finished
    PUT  /targets                              set a target's limits (rate, concurrency)
    GET  /targets                              the sender's targets, their limits and live counts
    DELETE /targets/{id}                       forget a target's limits (id: the URL-encoded origin)
    GET  /targets/health?origin=...            a target's circuit breaker (CLOSED, OPEN, HALF_OPEN)
    POST /targets/resume                       close a target by hand, re-drive its PAUSED messages
    PUT|GET|DELETE /schedules/{name}           a cron schedule (each firing is a message)
    GET  /schedules                            the sender's schedules
    POST /schedules/{name}/pause|resume        stop or restart a schedule's firings
    GET  /console, GET /console/{asset}        the web console's static files (no authorizer)

One Lambda behind a proxy integration serves them all; like every method of the API they
require the sender token authorizer and its API key (stacks/constructs/api.py), and the
function takes the sender from the authorizer's context only. The console's two routes are the
exception: they serve the same static files to anyone (functions/services/http_api/console.py), read no
data and need no grant; every call the page makes carries the sender's token. A stage throttle of
their own (stacks/constructs/api.py) keeps them from spending the account's Lambda concurrency.
"""

from __future__ import annotations

from aws_cdk import aws_apigateway as apigateway
from constructs import Construct

from functions.contract.console_routes import ASSET_PARAMETER, CONSOLE_PATH
from functions.contract.key_prefixes import (
    MESSAGE_PREFIX,
    NOTIFICATION_PREFIX,
    REPLAY_JOB_PREFIX,
    SCHEDULE_PREFIX,
    TARGET_PREFIX,
)
from stacks.constructs.api import Api
from stacks.constructs.base.functions import Foundation
from stacks.constructs.storage import SENDER_INDEX, STATUS_INDEX
from stacks.nag import acknowledge


class Operations(Construct):
    """The `api` function and its routes under /messages and /targets."""

    def __init__(self, scope: Construct, construct_id: str, *, foundation: Foundation, api: Api) -> None:
        super().__init__(scope, construct_id)
        table, queue = foundation.table, foundation.queue
        # Replay enqueues the new run; until the queue takes it, the reconciler owns it.
        self.function = foundation.step_function(
            self, "api", "Relay API: message status, listing, replay and cancel; target limits", with_queue=True
        )
        # Status: the head and the content in one BatchGetItem; listing: the bySender or the sparse
        # byStatus index, which hold keys only, then the messages they name in one BatchGetItem per
        # page; replay and cancel: one conditional update of the head each (status and event);
        # a target's health: one GetItem; resuming it: its PAUSED range of byStatus, then updates.
        self.function.grant(
            [f"{table.table_arn}/index/{SENDER_INDEX}", f"{table.table_arn}/index/{STATUS_INDEX}"],
            "dynamodb:Query",
        )
        # A long history's older pages: the message's overflow items (a Query of its own partition).
        self.function.grant([table.table_arn], "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")
        self.function.grant([queue.queue_arn], "sqs:SendMessage")
        # Targets (functions/services/targeting/targets.py): PUT writes a target's limits, DELETE removes them and
        # the flow items it finds (a batch read); GET lists them from the byStatus index (granted above)
        # and reads their flow items.
        # Writes reach messages, targets, replay jobs, schedules and notification settings only: the
        # function that parses the internet's requests can never rewrite a sender's record or a token
        # hash (LeadingKeys).
        self.function.grant_item_writes(
            table.table_arn,
            "dynamodb:UpdateItem",
            "dynamodb:PutItem",
            "dynamodb:DeleteItem",
            prefixes=(MESSAGE_PREFIX, TARGET_PREFIX, REPLAY_JOB_PREFIX, SCHEDULE_PREFIX, NOTIFICATION_PREFIX),
        )

        self._add_routes(api)

    def _add_routes(self, api: Api) -> None:
        """The API's routes to the function: messages (status, listing, replay, cancel) and targets."""
        # API Gateway may invoke the function from these methods of the deployed stage only
        # (no extra permission for the console's test-invoke).
        integration = apigateway.LambdaIntegration(self.function.function, proxy=True, allow_test_invoke=False)
        messages = api.messages
        message = messages.add_resource("{messageId}")
        self.list_messages = messages.add_method("GET", integration)
        self.get_message = message.add_method("GET", integration)
        self.replay = message.add_resource("replay").add_method("POST", integration)
        self.cancel = message.add_resource("cancel").add_method("POST", integration)
        targets = api.rest_api.root.add_resource("targets")
        self.put_target = targets.add_method("PUT", integration)
        self.list_targets = targets.add_method("GET", integration)
        self.delete_target = targets.add_resource("{targetId}").add_method("DELETE", integration)
        self.target_health = targets.add_resource("health").add_method("GET", integration)
        self.resume_target = targets.add_resource("resume").add_method("POST", integration)
        self._add_schedule_routes(api, integration)
        self.methods = [
            self.list_messages,
            self.get_message,
            self.replay,
            self.cancel,
            self.put_target,
            self.list_targets,
            self.delete_target,
            self.target_health,
            self.resume_target,
            *self.schedule_methods,
        ]
        self._add_console(api, integration)

    def _add_schedule_routes(self, api: Api, integration: apigateway.LambdaIntegration) -> None:
        """Cron schedules (functions/services/scheduling/schedules.py): the sender's own, by name."""
        schedules = api.rest_api.root.add_resource("schedules")
        schedule = schedules.add_resource("{name}")
        self.schedule_methods = [
            schedules.add_method("GET", integration),
            schedule.add_method("PUT", integration),
            schedule.add_method("GET", integration),
            schedule.add_method("DELETE", integration),
            schedule.add_resource("pause").add_method("POST", integration),
            schedule.add_resource("resume").add_method("POST", integration),
        ]

    def _add_console(self, api: Api, integration: apigateway.Integration) -> None:
        """GET /console and GET /console/{asset}: static files, open to anyone (no authorizer, no key)."""

        def open_get(resource: apigateway.Resource) -> apigateway.Method:
            none = apigateway.AuthorizationType.NONE
            return resource.add_method("GET", integration, authorization_type=none, api_key_required=False)

        console = api.rest_api.root.add_resource(CONSOLE_PATH.strip("/"))
        self.console_page = open_get(console)
        self.console_asset = open_get(console.add_resource(f"{{{ASSET_PARAMETER}}}"))
        for method in (self.console_page, self.console_asset):
            for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
                acknowledge(
                    method,
                    rule,
                    "The web console's static files (HTML, JavaScript, CSS) hold no data and no secret; "
                    "every data call the page makes goes to the other routes with the sender's token, "
                    "through the authorizer. A stage throttle of their own bounds what they may cost.",
                )
