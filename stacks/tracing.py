"""`stacks.tracing`: which Step Functions runs the console can open, and what each machine logs for it.

Kept free of CDK so the stack (stacks/constructs/base/workflow.py) and the cost model (bench/) read the one
mapping. Why the mapping is what it is (Step Functions Developer Guide, "Standard and Express Workflow
executions in the console", "Log levels", "Logging using CloudWatch Logs"):
- An EXPRESS run has no history in Step Functions. The console rebuilds it from the machine's
  CloudWatch Logs (with Logs Insights), so a run opens only if its events were logged; with execution
  data the logged events carry each state's input and output, without it the page has none to show.
- At level ERROR only failure events are logged (ExecutionFailed, TaskFailed, ...; not
  ExecutionStarted or ExecutionSucceeded): failed runs open, successful ones have nothing to show.
  At ALL every event of every run is logged.
- A STANDARD run keeps its whole history in Step Functions (90 days) and always opens; its log only
  gathers failures, without data.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Tracing(StrEnum):
    """The modes of `stacks.tracing` in cdk.json."""

    ERRORS = "errors"  # failed EXPRESS runs and every STANDARD run open in the console (the default)
    ALL = "all"  # every run opens; CloudWatch Logs ingestion priced by `make bench`


@dataclass(frozen=True)
class LogSettings:
    """A machine's LoggingConfiguration without its destination."""

    level: str  # ALL | ERROR | FATAL | OFF, as Step Functions names them
    include_execution_data: bool


def execution_logging(machine_type: str, tracing: Tracing) -> LogSettings:
    """What a machine of this type (EXPRESS or STANDARD) logs in this tracing mode."""
    if machine_type == "EXPRESS":
        return LogSettings("ALL" if tracing == Tracing.ALL else "ERROR", include_execution_data=True)
    return LogSettings("ERROR", include_execution_data=False)
