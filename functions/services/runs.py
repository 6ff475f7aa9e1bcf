"""A message's Step Functions runs, each with its type and a console link that opens it.

Why here: `GET /messages/{id}` and `relay trace` list the same runs, and the console opens the two
kinds of run differently. A STANDARD run lives in Step Functions (`#/v2/executions/details/<arn>`).
An EXPRESS run has no history there: the console rebuilds it from the machine's CloudWatch Logs
with Logs Insights over a time window, so its page (`#/express-executions/details/<arn>`) also needs
`startDate`, the window's start in epoch milliseconds. Whether the run has anything to show depends
on the deployment's `stacks.tracing` (README, "Tracing in the Step Functions console").

The runs are read from the events that record them: RECEIVED (or ENQUEUE_FAILED) carries the ingest
run, ATTEMPT_STARTED the lane run that made the attempt, MOVED_TO_SLOW_LANE the slow-lane run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TypedDict
from urllib.parse import quote

from functions.contract.lanes import DeliveryLane, Lane
from functions.domain.clock import iso, parse_iso
from functions.domain.model import Event, EventType

# The longest an EXPRESS run lasts. An Express link's window opens this long before the run's
# first recorded event, so it covers the run's start whatever happened before that event.
EXPRESS_MAX_SECONDS = 300

# Console host per partition (the ARN's second field).
_CONSOLE_HOSTS = {
    "aws": "console.aws.amazon.com",
    "aws-cn": "console.amazonaws.cn",
    "aws-us-gov": "console.amazonaws-us-gov.com",
}


class ExecutionType(StrEnum):
    EXPRESS = "EXPRESS"
    STANDARD = "STANDARD"


class Workflow(StrEnum):
    """Relay's state machines, by the role they play in a message's life."""

    INGEST = "ingest"
    FAST_LANE = DeliveryLane.FAST.value
    SLOW_LANE = DeliveryLane.SLOW.value


# The type of each machine, as the stack creates it (stacks/constructs/*_workflow.py).
WORKFLOW_TYPES = {
    Workflow.INGEST: ExecutionType.EXPRESS,
    Workflow.FAST_LANE: ExecutionType.EXPRESS,
    Workflow.SLOW_LANE: ExecutionType.STANDARD,
}
# The `lane` an ATTEMPT_STARTED event names (the lanes' definitions pass it to deliver).
_LANES: dict[str, Workflow] = {Lane.FAST: Workflow.FAST_LANE, Lane.SLOW: Workflow.SLOW_LANE}


class RunView(TypedDict):
    """A run as GET /messages/{id} lists it (`executions`)."""

    executionArn: str
    type: str
    workflow: str
    run: int
    startedAt: str
    consoleUrl: str


@dataclass(frozen=True)
class Run:
    """One execution that worked on the message: which machine, for which run of the message, and when."""

    workflow: Workflow
    run: int  # 0 for the first delivery, n for the n-th replay
    execution_arn: str
    started_at: str  # the first event it recorded (RFC 3339)

    @property
    def execution_type(self) -> ExecutionType:
        return execution_type(self.execution_arn, self.workflow)

    @property
    def console_url(self) -> str:
        return console_link(self.execution_arn, self.execution_type, self.started_at)

    def to_dict(self) -> RunView:
        return {
            "executionArn": self.execution_arn,
            "type": self.execution_type.value,
            "workflow": self.workflow.value,
            "run": self.run,
            "startedAt": self.started_at,
            "consoleUrl": self.console_url,
        }


def execution_type(execution_arn: str, workflow: Workflow) -> ExecutionType:
    """EXPRESS for `arn:...:express:MACHINE:NAME:ID`; otherwise the type the machine is created with.

    AWS names every Express execution with `express:`; the local emulator (moto) names the runs it
    starts with StartExecution `execution:` whatever the machine's type, so the machine decides there.
    """
    if execution_arn.split(":")[5:6] == ["express"]:
        return ExecutionType.EXPRESS
    return WORKFLOW_TYPES[workflow]


def console_link(execution_arn: str, kind: ExecutionType, started_at: str) -> str:
    """The Step Functions console page of one execution."""
    fields = execution_arn.split(":")
    partition, region = fields[1], fields[3]
    base = f"https://{region}.{_CONSOLE_HOSTS.get(partition, _CONSOLE_HOSTS['aws'])}/states/home?region={region}"
    if kind == ExecutionType.STANDARD:
        # As the Standard links have always been written: the whole ARN percent-encoded.
        return f"{base}#/v2/executions/details/{quote(execution_arn, safe='')}"
    window_start = parse_iso(started_at) - timedelta(seconds=EXPRESS_MAX_SECONDS)
    return f"{base}#/express-executions/details/{execution_arn}?startDate={int(window_start.timestamp() * 1000)}"


def _workflow_of(event: Event) -> Workflow | None:
    if event.type in (EventType.RECEIVED, EventType.ENQUEUE_FAILED):
        return Workflow.INGEST
    if event.type == EventType.MOVED_TO_SLOW_LANE:
        return Workflow.SLOW_LANE
    if event.type == EventType.ATTEMPT_STARTED:
        return _LANES.get(str(event.details.get("lane", Lane.FAST)))
    return None


def message_runs(events: Iterable[Event]) -> list[Run]:
    """Every run the events name, oldest first, each once."""
    runs: dict[str, Run] = {}
    for event in sorted(events, key=lambda item: item.at):
        arn = str(event.details.get("executionArn") or "")
        workflow = _workflow_of(event)
        if not arn or workflow is None or arn in runs:
            continue
        runs[arn] = Run(workflow, event.run, arn, iso(event.at))
    return list(runs.values())
