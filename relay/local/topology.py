"""What the embedded AWS creates and runs, as read from the synthesized template
(relay/local/template.py reads it; relay/local/emulator.py starts it): functions, state machines,
queues and who consumes them, the table, the usage plans and every role's policies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    handler: str
    environment: dict[str, str]
    role_arn: str


@dataclass(frozen=True)
class StateMachineSpec:
    name: str
    definition: str
    type: str
    role_arn: str


@dataclass(frozen=True)
class QueueSpec:
    name: str
    attributes: dict[str, str]
    dead_letter_queue: str | None = None  # its name: create it first


@dataclass(frozen=True)
class QueueConsumerSpec:
    """An SQS event source mapping: which function consumes a queue, in batches of `batch_size`,
    at most `max_concurrency` invocations at once (ScalingConfig.MaximumConcurrency)."""

    queue: str
    function: str
    batch_size: int
    max_concurrency: int


@dataclass(frozen=True)
class TableSpec:
    definition: dict[str, Any]  # CreateTable arguments
    ttl_attribute: str | None


@dataclass(frozen=True)
class UsagePlanSpec:
    """A usage plan as the embedded AWS creates it: its throttle and tags (CreateUsagePlan's shape).
    Its API stages are left out: locally no REST API exists in API Gateway for them to name."""

    name: str
    throttle: dict[str, Any]
    tags: dict[str, str]


@dataclass(frozen=True)
class Topology:
    """Everything the embedded AWS creates and runs, with the local names and ARNs."""

    functions: dict[str, FunctionSpec]
    state_machines: dict[str, StateMachineSpec]
    queues: dict[str, QueueSpec]
    table: TableSpec
    # Role ARN -> the statements of every policy attached to it (identity policies).
    policies: dict[str, tuple[dict[str, Any], ...]]
    # The role API Gateway's POST /messages integration calls StartSyncExecution with (the rest of
    # the API, mappings and throttles, is read by relay/local/apigateway/api_definition.py).
    api_start_role_arn: str | None
    # Queue name -> the function that consumes it (the event source mappings).
    queue_consumers: dict[str, QueueConsumerSpec] = field(default_factory=dict)
    # The usage plans senders' API keys join (relay/admin.py finds the default one by its tag).
    usage_plans: tuple[UsagePlanSpec, ...] = ()
    # The EventBridge buses operational notifications are put on (their local names).
    event_buses: tuple[str, ...] = ()
    handlers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "handlers", {name: spec.handler for name, spec in self.functions.items()})
