"""Relay's domain exceptions, in one place.

The class names matter beyond Python: a Lambda error's `errorType` is the class name, and the
state machines' `Retry`/`Catch` clauses match on it (see statemachines/*.asl.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict


class PayloadInvalid(ValueError):
    """A step's input (or a queued message) that is not the shape its step reads: a state machine
    never hands one over, so it is a fault of Relay's, not the sender's (no RelayError)."""


class RelayError(Exception):
    """Base of every error Relay raises on purpose."""


class FieldDetail(TypedDict):
    """A FieldError as an error answer's `details` list it."""

    path: str
    message: str


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str

    def to_dict(self) -> FieldDetail:
        return {"path": self.path, "message": self.message}


class MessageInvalid(RelayError):
    """The request is not a valid message; `details` names every offending field."""

    def __init__(self, details: list[FieldError], message: str = "The message is invalid.") -> None:
        super().__init__(message)
        self.details = details


class MalformedRequest(RelayError):
    """The body is not JSON (or not UTF-8)."""


class PayloadTooLarge(RelayError):
    """The request or one of its parts is over a configured size limit."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class SenderMismatch(RelayError):
    """The body's senderId is not the authenticated sender."""


class StorageUnavailable(RelayError):
    """DynamoDB throttled or failed transiently; the step is retried by its state machine."""


class StorageError(RelayError):
    """DynamoDB refused a request for a reason a retry will not fix."""


class QueueUnavailable(RelayError):
    """SQS did not take the message; the step is retried, then the reconciler re-drives it."""


class MessageNotFound(RelayError):
    """No message with that key exists (or it belongs to another sender)."""


class DeliveryError(RelayError):
    """Base of the errors the delivery client raises instead of returning a response."""


class TargetBlocked(DeliveryError):
    """The target URL breaks a rule or resolves to a blocked address; retrying will not help."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TargetUnreachable(DeliveryError):
    """DNS failure, connection refused or reset, or a TLS error; a later attempt may succeed."""


class InvalidResponse(TargetUnreachable):
    """The target answered with something that is not an HTTP/1.x response (no or a malformed
    status line, too many or too large headers) before any 2xx status; a later attempt may succeed.
    After a 2xx status line nothing is an error: the delivery client returns the response."""


class TargetTimeout(DeliveryError):
    """The target did not connect or answer within the configured timeouts."""


class DeliveryRetryable(RelayError):
    """An attempt failed in a way a later attempt may fix (408/425/429/5xx, timeout, connection).

    The delivery state machines' Retry policies match this class name. `wait_seconds` is what the
    target's Retry-After asked for (capped), when it sent one.
    """

    def __init__(self, message: str, wait_seconds: int | None = None) -> None:
        super().__init__(message)
        self.wait_seconds = wait_seconds


class DeliveryRejected(RelayError):
    """An attempt failed for good (other 4xx, 3xx, blocked address, expired message).

    The delivery state machines catch this class name and mark the message FAILED at once.
    """


class DeliveryDeferred(RelayError):
    """An attempt failed retryably and the target's `Retry-After` asks for a longer wait than the
    lane's next retry would make: the lane waits `seconds` in a Wait state instead (the fast lane by
    moving the message to the slow lane at once). Its message is the bare number of seconds, which
    the slow lane reads back from the error's Cause (statemachines/delivery_slow.asl.json).
    """

    def __init__(self, seconds: int) -> None:
        super().__init__(str(int(seconds)))
        self.seconds = int(seconds)


class ClaimHeld(RelayError):
    """The queued message is claimed by an attempt that nothing else watches: SQS keeps it and
    delivers it again after its visibility timeout (by then a dead dispatcher's claim is over)."""


class WorkflowUnavailable(RelayError):
    """Step Functions did not start the run."""


class MessageNotFinished(RelayError):
    """Replay needs a finished message (DELIVERED, FAILED or CANCELLED)."""


class ReplayJobNotFound(RelayError):
    """No bulk replay job of that id for this sender."""


class MessageFinished(RelayError):
    """Cancel needs a message that has not finished."""


class MessageExpired(RelayError):
    """The message is past its expiry; it cannot be delivered again."""


class SenderExists(RelayError):
    """A sender with that id exists already."""


class SenderUnknown(RelayError):
    """No sender with that id."""


class DeliveryThrottled(RelayError):
    """The target is at its rate or concurrency limit (functions/services/targeting/flow_control.py): nothing was
    sent and no attempt counted. The lanes' Retry policies try again shortly without spending a
    delivery retry; the dispatcher puts the queued message back with a delay instead."""


class TargetNotFound(RelayError):
    """The sender has no limits set for that target."""


class NotificationsNotSet(RelayError):
    """The sender has no notification setting (GET or DELETE /notifications)."""


class DeliveryPaused(RelayError):
    """The message's target is OPEN (circuit breaker): the message is PAUSED, no attempt is spent,
    and its run ends. The delivery state machines catch this class name and end the run."""


class ScheduleNotFound(RelayError):
    """No schedule of that name for the sender (404 SCHEDULE_NOT_FOUND)."""
