"""What the delivery steps hand each other, typed: parsed once where it comes in, written back with
the same JSON keys.

    delivery queue body, fast- and slow-lane run input   RunInput      {senderId, messageId, run, waitSeconds?}
    one SQS record of the dispatcher's batch              QueuedRecord  (Powertools' SQSRecord, parsed)
    the lanes' Deliver, MoveToSlowLane, MarkFailed and    LaneEvent     {senderId, messageId, run, lane, owner,
      GiveBack tasks (statemachines/delivery_*.asl.json)                 executionArn, retryCount, failure,
                                                                         waitSeconds, giveUp, reason}
    what those tasks answer (ResultSelector: outcome)     AttemptResult, EndingResult
    what the dispatcher did with a queued message         DispatchOutcome

A payload the functions cannot read raises PayloadInvalid naming the field (a step run by a state
machine never sends one; a queue record that does fails alone and is dead-lettered).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from functions.contract.lanes import Lane
from functions.domain.exceptions import PayloadInvalid
from functions.domain.model import MessageKey, Status, fencing_token

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


class DispatchOutcome(StrEnum):
    """What the dispatcher did with one queued message."""

    DELIVERED = "delivered"  # the inline attempt got a 2xx: no run at all
    FAILED = "failed"  # the inline attempt was refused for good
    STARTED = "started"  # a fast-lane run continues (or makes) the attempts
    DEFERRED = "deferred"  # back on the queue (target at its limit) or to the slow lane (Retry-After)
    PAUSED = "paused"  # its target is OPEN
    EXPIRED = "expired"  # FAILED before any attempt
    TERMINAL = "terminal"  # finished already (a redelivered queue message)
    STALE_RUN = "stale-run"  # a newer run (a replay) owns it
    ALREADY_RUNNING = "already-running"  # another claim holds it
    MISSING = "missing"  # no stored head: dropped


class AttemptOutcome(StrEnum):
    """The Deliver task's answer (its failures are raised, for the Retry and Catch clauses)."""

    DELIVERED = "DELIVERED"
    SKIPPED = "skipped"  # nothing to do: finished, another run's, or paused under another owner


class EndingOutcome(StrEnum):
    """The MarkFailed, MoveToSlowLane and GiveBack tasks' answer."""

    FAILED = "FAILED"
    MOVED_TO_SLOW_LANE = "MOVED_TO_SLOW_LANE"
    RELEASED = "released"
    SKIPPED = "skipped"  # the run does not own the message (any more)


def _text(event: Mapping[str, Any], name: str) -> str:
    """A required non-empty string field."""
    value = event.get(name)
    if not isinstance(value, str) or not value:
        raise PayloadInvalid(f"{name} must be a non-empty string, not {value!r}"[:200])
    return value


def _whole(event: Mapping[str, Any], name: str, default: int | None) -> int | None:
    value = event.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PayloadInvalid(f"{name} must be a whole number, not {value!r}"[:200]) from None


def _key(event: Mapping[str, Any]) -> MessageKey:
    return MessageKey(_text(event, "senderId"), _text(event, "messageId"))


def _run(event: Mapping[str, Any]) -> int:
    return _whole(event, "run", 0) or 0


@dataclass(frozen=True)
class RunInput:
    """One run of one message: a delivery queue body, and a lane run's input (`wait_seconds`: the
    target's Retry-After, waited before the run's first attempt)."""

    key: MessageKey
    run: int = 0
    wait_seconds: int | None = None
    # A queue copy sent back to wait for its turn at its target (the dispatcher's deferral): it was
    # counted in that target's queue then, and is not counted in again when it comes back.
    waited_turn: bool = False

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> RunInput:
        if not isinstance(event, Mapping):
            raise PayloadInvalid(f"a run's input must be a JSON object, not {type(event).__name__}")
        return cls(_key(event), _run(event), _whole(event, "waitSeconds", None), event.get("waitedTurn") is True)

    @classmethod
    def from_body(cls, body: str) -> RunInput:
        """A delivery queue message's body."""
        try:
            document = json.loads(body)
        except ValueError as error:
            raise PayloadInvalid(f"the queued message is not JSON: {error}") from None
        return cls.from_event(document)

    def to_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = {**self.key.to_dict(), "run": self.run}
        if self.wait_seconds is not None:
            payload["waitSeconds"] = self.wait_seconds
        if self.waited_turn:
            payload["waitedTurn"] = True
        return payload


@dataclass(frozen=True)
class QueuedRecord:
    """One delivery-queue record as the dispatcher receives it."""

    record_id: str
    message: RunInput
    sent_at: datetime | None = None  # SQS's SentTimestamp: when the message was enqueued

    @classmethod
    def from_sqs(cls, record: SQSRecord) -> QueuedRecord:
        try:
            sent = record.attributes.sent_timestamp
        except KeyError:  # a record without attributes (a hand-made event)
            sent = None
        sent_at = datetime.fromtimestamp(int(sent) / 1000, UTC) if sent else None
        return cls(record.message_id, RunInput.from_body(record.body), sent_at)


@dataclass(frozen=True)
class StepFailure:
    """A Catch's `{Error, Cause}`: the error's name, and Lambda's error JSON as Cause."""

    error: str
    cause: str = ""

    @classmethod
    def from_event(cls, raw: Any) -> StepFailure | None:
        if not raw:
            return None
        if not isinstance(raw, Mapping):
            raise PayloadInvalid(f"failure must be a Catch's {{Error, Cause}}, not {type(raw).__name__}")
        return cls(str(raw.get("Error", "Unknown")), str(raw.get("Cause") or ""))

    @property
    def message(self) -> str:
        """The failed function's `errorMessage` (or the Cause as it is when it is not Lambda's JSON)."""
        try:
            return str(json.loads(self.cause).get("errorMessage", ""))
        except (ValueError, AttributeError):
            return self.cause


# What a lane step sees when no Catch handed it a failure.
NO_FAILURE = StepFailure("Unknown")


@dataclass(frozen=True)
class LaneEvent:
    """What a lane's task passes its function (and the dispatcher or the reconciler, calling an
    ending directly): who asks (`owner`, the name the run was handed the message under, and
    `execution_arn`, the run's own), and for an ending why (`failure`, `reason`, `wait_seconds`)."""

    key: MessageKey
    run: int = 0
    lane: Lane = Lane.FAST
    owner: str = ""
    execution_arn: str = ""
    retry_count: int = 0  # the lane's retries of its Deliver step so far ($$.State.RetryCount)
    failure: StepFailure | None = None
    wait_seconds: int | None = None
    give_up: bool = False
    reason: str = ""

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> LaneEvent:
        if not isinstance(event, Mapping):
            raise PayloadInvalid(f"a lane step's input must be a JSON object, not {type(event).__name__}")
        try:
            lane = Lane(str(event.get("lane") or Lane.FAST))
        except ValueError:
            raise PayloadInvalid(f"lane must be one of {', '.join(Lane)}, not {event.get('lane')!r}"[:200]) from None
        return cls(
            key=_key(event),
            run=_run(event),
            lane=lane,
            owner=str(event.get("owner") or ""),
            execution_arn=str(event.get("executionArn") or ""),
            retry_count=_whole(event, "retryCount", 0) or 0,
            failure=StepFailure.from_event(event.get("failure")),
            wait_seconds=_whole(event, "waitSeconds", None),
            give_up=bool(event.get("giveUp")),
            reason=str(event.get("reason") or ""),
        )

    @property
    def tokens(self) -> tuple[str, ...]:
        """The fencing tokens the step shows: the name its run was handed the message under, then the
        run's own execution ARN (its first attempt takes the message over under the ARN)."""
        return tuple(fencing_token(token) for token in (self.owner, self.execution_arn) if token)


@dataclass(frozen=True)
class AttemptResult:
    outcome: AttemptOutcome
    attempt: int | None = None  # delivered: the attempt that got through, with its status code
    status_code: int | None = None
    status: Status | None = None  # skipped: the message's status, when it was read

    @classmethod
    def skipped(cls, status: Status | None = None) -> AttemptResult:
        return cls(AttemptOutcome.SKIPPED, status=status)

    def to_dict(self) -> dict[str, Any]:
        if self.outcome == AttemptOutcome.DELIVERED:
            return {"outcome": self.outcome.value, "attempt": self.attempt, "statusCode": self.status_code}
        return {"outcome": self.outcome.value, "status": self.status.value if self.status else None}


@dataclass(frozen=True)
class EndingResult:
    outcome: EndingOutcome
    reason: str | None = None  # FAILED: the reason recorded
    execution_arn: str | None = None  # MOVED_TO_SLOW_LANE: the slow-lane run

    def to_dict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"outcome": self.outcome.value}
        if self.reason is not None:
            answer["reason"] = self.reason
        if self.execution_arn is not None:
            answer["executionArn"] = self.execution_arn
        return answer


SKIPPED = EndingResult(EndingOutcome.SKIPPED)


@dataclass(frozen=True)
class FailedLetter:
    """What the failed-messages queue receives for a message that ended FAILED."""

    key: MessageKey
    run: int
    reason: str
    attempts: int
    failed_at: str

    def to_dict(self) -> dict[str, Any]:
        return {
            **RunInput(self.key, self.run).to_dict(),
            "reason": self.reason,
            "attempts": self.attempts,
            "failedAt": self.failed_at,
        }
