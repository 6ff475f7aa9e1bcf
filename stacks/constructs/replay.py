"""Bulk replay: POST /messages/replay, GET /replays/{jobId}, and the job's state machine.

    POST /messages/replay   (the api function) checks the filter, looks at the window's first page,
                            writes the job record and starts the replay machine: 202 {jobId, matched}
    replay machine (STANDARD, statemachines/replay.asl.json): ReplayPage -> more? -> Wait 1 s -> ...
    replay function (ReplayPage): a run of pages of the job from the cursor on its record, each
                            message replayed as the single-message replay does (head update +
                            delivery queue), each page's counts and the cursor on the job record
    GET /replays/{jobId}    (the api function) the job's state and counters

The routes are served by the Operations construct's `api` function; this construct adds their
methods, the machine's ARN to that function's environment, and exactly the grants they need.
"""

from __future__ import annotations

import json

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from functions.contract.key_prefixes import MESSAGE_PREFIX, REPLAY_JOB_PREFIX
from functions.contract.settings_names import Setting
from stacks.constructs.api import Api
from stacks.constructs.base.functions import Foundation, RelayFunction
from stacks.constructs.base.workflow import check_placeholders, relay_state_machine
from stacks.constructs.storage import STATUS_INDEX
from stacks.definitions import read_definition

REPLAY_DEFINITION = "replay.asl.json"
REPLAY_PAGE_PLACEHOLDER = "ReplayPageFunctionArn"
# A run: pages of 50 replays (one query, one BatchGetItem, then a read and a write plus a queue send
# each) until pagesPerRun pages are done or less than RUN_RESERVE_MS is left of this timeout.
PAGE_TIMEOUT = Duration.seconds(60)


def replay_definition() -> str:
    return json.dumps(read_definition(REPLAY_DEFINITION), indent=2)


class BulkReplay(Construct):
    """The replay function and machine; the two routes on the api function."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        foundation: Foundation,
        api: Api,
        api_function: RelayFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        table, queue = foundation.table, foundation.queue
        self.function = foundation.function(
            self,
            "ReplayPage",
            "replay",
            "Relay bulk replay: replay a run of pages of a job's matching messages",
            foundation.environment(with_queue=True),
            timeout=PAGE_TIMEOUT,
        )
        functions = {REPLAY_PAGE_PLACEHOLDER: self.function}
        self.state_machine, self.logs = relay_state_machine(
            self,
            log_name="replay",
            machine_type=sfn.StateMachineType.STANDARD,
            definition=check_placeholders(REPLAY_DEFINITION, replay_definition(), dict.fromkeys(functions, "")),
            functions=functions,
            tracing=foundation.settings.tracing,
        )

        # ReplayPage: the job record (GetItem), the window of the sparse byStatus index (keys), the
        # messages (BatchGetItem), each replay's head read and conditional update, the job's counters
        # and cursor (UpdateItem), and the new run on the delivery queue.
        self.function.grant([f"{table.table_arn}/index/{STATUS_INDEX}"], "dynamodb:Query")
        self.function.grant([table.table_arn], "dynamodb:GetItem", "dynamodb:BatchGetItem")
        self.function.grant_item_writes(
            table.table_arn, "dynamodb:UpdateItem", prefixes=(MESSAGE_PREFIX, REPLAY_JOB_PREFIX)
        )
        self.function.grant_history_moves(table.table_arn)
        self.function.grant([queue.queue_arn], "sqs:SendMessage")

        # The api function: its first look at the window uses the byStatus index and BatchGetItem it
        # already has, and writing the job record its PutItem on REPLAY# items (Operations); it starts this
        # machine, and no other.
        api_function.function.add_environment(Setting.REPLAY_MACHINE_ARN, self.state_machine.state_machine_arn)
        api_function.grant([self.state_machine.state_machine_arn], "states:StartExecution")

        integration = apigateway.LambdaIntegration(api_function.function, proxy=True, allow_test_invoke=False)
        self.start = api.messages.add_resource("replay").add_method("POST", integration)
        self.show = api.rest_api.root.add_resource("replays").add_resource("{jobId}").add_method("GET", integration)
        self.methods = [self.start, self.show]
