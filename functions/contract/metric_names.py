"""Relay's CloudWatch metric names and namespace, defined once.

The functions emit them (Powertools Metrics) and the stack's alarms and dashboard read them
(stacks/constructs/observability.py); a name changed here changes both. No imports: the stack
loads this module without the Lambda runtime's dependencies.
"""

from enum import StrEnum

NAMESPACE = "Relay"
SERVICE_NAME = "relay"


class Metric(StrEnum):
    ACCEPTED = "MessagesAccepted"
    DUPLICATE = "MessagesDuplicate"
    CONFLICTING = "MessagesConflicting"
    REJECTED = "MessagesRejected"
    DELIVERED = "MessagesDelivered"
    FAILED = "MessagesFailed"
    ATTEMPTS = "DeliveryAttempts"
    ATTEMPTS_FAILED = "DeliveryAttemptsFailed"
    LATENCY = "DeliveryLatency"
    REPLAYED = "MessagesReplayed"
    CANCELLED = "MessagesCancelled"
    REDRIVEN = "MessagesRedriven"
    # A message re-driven past the re-drive budget without progress: Relay's own trouble (alarmed;
    # the message keeps being re-driven with backoff, never FAILED for it).
    STUCK = "MessagesStuck"
    # A part of a reconciler round, or one due message, raised; the round went on.
    RECONCILER_ERRORS = "ReconcilerErrors"
    # A delivery found no signing secret for its sender: a configuration error an operator fixes.
    SIGNING_SECRET_MISSING = "SigningSecretMissing"
    # An attempt waited for its target's rate or concurrency limit (functions/services/targeting/flow_control.py).
    THROTTLED = "DeliveryThrottled"
    # Circuit breaker per target (functions/services/targeting/target_health.py).
    TARGET_OPENED = "TargetsOpened"
    TARGET_CLOSED = "TargetsClosed"
    # A gauge: targets OPEN or HALF_OPEN now, counted by the reconciler each round (its alarm stays on
    # while any target is open).
    OPEN_TARGETS = "OpenTargets"
    PAUSED = "MessagesPaused"
    RESUMED = "MessagesResumed"
