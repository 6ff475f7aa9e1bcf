"""UpdateItem expressions built from named parts, for every store of the relay table.

Conditions compose (`when_run`, `when_status_in`, `when_owner`, ...): each transition of a message
is one conditional update, and a retried step finds its own earlier write instead of writing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from functions.adapters.messages.items import encode_event
from functions.domain.model import Event, EventType, Status


class UpdateBuilder:
    """One UpdateItem expression, built from named parts (every name goes through `#`).

    `condition()` gives the ConditionExpression: the item must exist, and every `when` holds."""

    def __init__(self) -> None:
        self.sets: list[str] = []
        self.removes: list[str] = []
        self.adds: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.conditions: list[str] = []

    def name(self, attribute: str) -> str:
        placeholder = f"#{attribute}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, label: str, value: Any) -> str:
        placeholder = f":{label}"
        self.values[placeholder] = value
        return placeholder

    def assign(self, attribute: str, value: Any) -> UpdateBuilder:
        self.sets.append(f"{self.name(attribute)} = {self.value(attribute, value)}")
        return self

    def set_once(self, attribute: str, value: Any) -> UpdateBuilder:
        name = self.name(attribute)
        self.sets.append(f"{name} = if_not_exists({name}, {self.value(attribute, value)})")
        return self

    def remove(self, *attributes: str) -> UpdateBuilder:
        self.removes.extend(self.name(attribute) for attribute in attributes)
        return self

    def add(self, attribute: str, amount: int) -> UpdateBuilder:
        self.adds.append(f"{self.name(attribute)} {self.value(attribute, amount)}")
        return self

    def append_events(self, events: Sequence[Event], previous_arn: str | None = None) -> UpdateBuilder:
        encoded = []
        for event in events:
            encoded.append(encode_event(event, previous_arn))
            if event.type == EventType.ATTEMPT_STARTED and event.details.get("executionArn"):
                previous_arn = str(event.details["executionArn"])
        name = self.name("ev")
        self.sets.append(f"{name} = list_append({name}, {self.value('ev', encoded)})")
        return self

    def when(self, condition: str) -> UpdateBuilder:
        self.conditions.append(condition)
        return self

    def when_run(self, run: int) -> UpdateBuilder:
        return self.when(f"{self.name('r')} = {self.value('run', run)}")

    def when_status_in(self, statuses: frozenset[Status] | set[Status]) -> UpdateBuilder:
        labels = ", ".join(self.value(f"st{index}", status.value) for index, status in enumerate(sorted(statuses)))
        return self.when(f"{self.name('s')} IN ({labels})")

    def when_lease_free(self, now: int) -> UpdateBuilder:
        lease = self.name("l")
        return self.when(f"(attribute_not_exists({lease}) OR {lease} < {self.value('now', now)})")

    def when_no_attempt_in_flight(self, now: int) -> UpdateBuilder:
        lease = self.name("al")
        return self.when(f"(attribute_not_exists({lease}) OR {lease} < {self.value('attemptNow', now)})")

    def when_nobody_delivering(self, now: int, lease_free_at: int | None = None) -> UpdateBuilder:
        """No run holds the message (its lease has run out by `lease_free_at`, default `now`) and no
        attempt may still be sending (the attempt lease has run out by `now`): the one rule every
        claim, re-drive and dispatcher pause checks before it takes a message over."""
        return self.when_lease_free(now if lease_free_at is None else lease_free_at).when_no_attempt_in_flight(now)

    def when_owner(self, *tokens: str) -> UpdateBuilder:
        labels = ", ".join(self.value(f"own{index}", token) for index, token in enumerate(dict.fromkeys(tokens)))
        return self.when(f"{self.name('o')} IN ({labels})")

    def when_attempts(self, attempts: int) -> UpdateBuilder:
        return self.when(f"{self.name('a')} = {self.value('expectedAttempts', attempts)}")

    def condition(self) -> str:
        return " AND ".join(["attribute_exists(pk)", *self.conditions])

    def expression(self) -> str:
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.adds:
            parts.append("ADD " + ", ".join(self.adds))
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        return " ".join(parts)
