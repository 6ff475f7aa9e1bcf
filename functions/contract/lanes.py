"""Relay's delivery lanes, by their two names, defined once.

`Lane` is what an attempt names as its `lane` (the ATTEMPT_STARTED event's detail, the lanes'
Deliver payloads in statemachines/delivery_*.asl.json, the label in a run's execution name).
`DeliveryLane` names a lane's state machine: its key under `relay.delivery` in cdk.json (the retry
policy overrides) and the `workflow` of its runs in `GET /messages/{id}`. No imports: the stack
loads this module too.
"""

from enum import StrEnum


class Lane(StrEnum):
    # The dispatcher's own first attempt (no state machine run).
    INLINE = "inline"
    # The EXPRESS fast lane: the first retries, short waits.
    FAST = "fast"
    # The STANDARD slow lane: long waits, up to the retry horizon.
    SLOW = "slow"


class DeliveryLane(StrEnum):
    FAST = "fastLane"
    SLOW = "slowLane"
