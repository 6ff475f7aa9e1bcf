"""Delivery: dispatch, attempt, and how a lane run ends.

    payloads.py      what the queue, the lanes' tasks and the runs hand each other (typed), and the outcomes
    dependencies.py  the clients, built once per process
    rules.py         an attempt's outcome rules (retryable codes, Retry-After, retry budget) and its events
    attempt.py       one attempt: counted, sent, its result recorded; failures raised for the ASL
    lane_endings.py  MarkFailed, MoveToSlowLane, GiveBack
    dispatch.py      the dispatcher: the claim and the first attempt inline

The dispatcher makes a message's first attempt itself (`delivery.firstAttempt: inline`, the
default): a message its target takes at once costs no state machine run. Only a retryable failure
starts a fast-lane run, which continues with the next attempt. The retrying itself is not here:
the delivery state machines' Retry policies re-run `attempt` whenever it raises DeliveryRetryable.
"""

from functions.services.delivery.attempt import attempt
from functions.services.delivery.dependencies import DeliveryDependencies, dependencies
from functions.services.delivery.dispatch import dispatch, dispatch_batch
from functions.services.delivery.lane_endings import fail_message, failure_reason, finish_run, move_to_slow_lane
from functions.services.delivery.payloads import (
    DispatchOutcome,
    EndingOutcome,
    LaneEvent,
    PayloadInvalid,
    QueuedRecord,
    RunInput,
)
from functions.services.delivery.rules import (
    INTERRUPTED_ERROR,
    is_retryable_status,
    next_retry_wait,
    retry_delay,
    run_attempts,
)

__all__ = [
    "INTERRUPTED_ERROR",
    "DeliveryDependencies",
    "DispatchOutcome",
    "EndingOutcome",
    "LaneEvent",
    "PayloadInvalid",
    "QueuedRecord",
    "RunInput",
    "attempt",
    "dependencies",
    "dispatch",
    "dispatch_batch",
    "fail_message",
    "failure_reason",
    "finish_run",
    "is_retryable_status",
    "move_to_slow_lane",
    "next_retry_wait",
    "retry_delay",
    "run_attempts",
]
