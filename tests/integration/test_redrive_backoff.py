"""Relay's own trouble never fails a message: past the re-drive budget it alarms and backs off.

Runs the reconciler's per-message step on the embedded AWS with no workers running, so nothing but
the test moves the message.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.adapters.repository import MessageRepository
from functions.domain.config import get_settings
from functions.domain.model import Event, EventType, MessageKey, Status
from functions.services.reconciler import MAX_REDRIVES, _reconcile_one
from tests.conftest import make_message


def test_redrives_past_the_budget_back_off_and_never_fail_a_message(local_aws: Any) -> None:
    # Given a message that Relay re-drove many times without progress (nothing claims it)
    repository = MessageRepository(get_settings().table_name)
    settings = get_settings()
    key = MessageKey("holder", f"stuck-{time.time_ns()}")
    now = datetime.now(UTC)
    received = Event(EventType.RECEIVED, now, 0, None, {})
    assert repository.put_content(
        key, make_message(senderId="holder", targetUrl="https://example.com/ok"), "h", int(now.timestamp()) + 3600
    )
    assert repository.create_head(key, "h", "rq", now, int(now.timestamp()) + 3600, received)
    sent: list[MessageKey] = []

    class Queue:
        def send(self, message_key: MessageKey, run: int = 0) -> None:
            sent.append(message_key)

    # When the reconciler re-drives it more than the re-drive budget
    for _ in range(MAX_REDRIVES + 3):
        repository.set_due(key, int(time.time()) - 1)
        head = repository.get_head(key)
        assert head is not None

        _reconcile_one(repository, Queue(), settings, lambda *_: pytest.fail("FAILED"), head, datetime.now(UTC))  # type: ignore[arg-type]
    # Then it is still PENDING, re-driven every time, with a growing delay past the budget
    head = repository.get_head(key)
    assert head is not None and head.status == Status.PENDING
    assert len(sent) == MAX_REDRIVES + 3
    assert head.redrives == MAX_REDRIVES + 3
    assert head.due_at is not None and head.due_at - int(time.time()) > settings.redrive_after_seconds * 4
