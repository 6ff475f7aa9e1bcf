"""The reconciler's sweep finds every message whose ingest died between its store and its enqueue,
whether its sender sent one message that minute or many, through one store container or several.

Runs the real ingest handlers (validate, dedup, store; never enqueue: the run "dies" there) and the
sweep as the reconciler's role on the embedded AWS, with IAM enforced.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.adapters.repository import MessageRepository
from functions.domain.config import get_settings
from functions.domain.model import MessageKey
from functions.services import activity, ingest, reconciler
from functions.services.reconciler import RoundBudget, sweep_unclaimed
from relay.local import iam
from tests.conftest import ingest_input, make_message

STEPS_BEFORE_ENQUEUE = ("relay-validate", "relay-dedup", "relay-store")


@pytest.fixture(autouse=True)
def one_store_container() -> Iterator[None]:
    """Each test starts as a fresh store container (nothing noted yet)."""
    activity.forget_activity()
    yield
    activity.forget_activity()


def store_but_never_enqueue(local: Any, sender_id: str) -> MessageKey:
    """A message accepted by the store step whose ingest run then died: stored PENDING, never queued."""
    message = make_message(senderId=sender_id)
    state = {**ingest_input(message), "shape": "message"}
    for step in STEPS_BEFORE_ENQUEUE:
        state = local.invoke(step, state)
        assert "response" not in state, state
    return MessageKey(sender_id, message["messageId"])


def sweep_later(local: Any, budget: RoundBudget | None = None) -> Any:
    """The reconciler's sweep once the messages are old enough to be looked at."""
    settings = get_settings()
    later = datetime.now(UTC) + timedelta(seconds=settings.redrive_after_seconds + 1)
    with iam.acting_as(local.role_of("relay-reconciler")):
        return sweep_unclaimed(MessageRepository(settings.table_name), settings, later, budget)


def due_keys(keys: list[MessageKey]) -> set[MessageKey]:
    repository = MessageRepository(get_settings().table_name)
    return {head.key for head in repository.get_heads(keys) if head.due_at is not None}


def test_never_enqueued_messages_of_many_senders_and_of_a_busy_one_are_all_marked_due(local_aws: Any) -> None:
    # Given five senders whose one message each was stored but never queued
    run = uuid.uuid4().hex[:6]
    single = [store_but_never_enqueue(local_aws, f"one-{run}-{n}") for n in range(5)]
    # And a sender whose four messages went through the same store container (it is marked busy)
    busy = [store_but_never_enqueue(local_aws, f"busy-{run}") for _ in range(4)]

    # When the reconciler's sweep runs once they are old enough
    outcome = sweep_later(local_aws)

    # Then every one of them is due for a re-drive, and the sweep got through its window
    assert due_keys(single + busy) == set(single + busy)
    assert outcome.marked == len(single + busy)
    assert outcome.finished


def test_a_sender_stored_by_more_containers_than_its_activity_names_is_swept_whole(local_aws: Any) -> None:
    # Given one sender whose messages were stored by twelve store containers, one message each
    # (more containers than one activity item names)
    sender_id = f"fleet-{uuid.uuid4().hex[:6]}"
    keys = []
    for _ in range(12):
        activity.forget_activity()  # the next message lands on another container
        keys.append(store_but_never_enqueue(local_aws, sender_id))

    # When the reconciler's sweep runs
    outcome = sweep_later(local_aws)

    # Then all twelve are due for a re-drive
    assert due_keys(keys) == set(keys)
    assert outcome.marked == 12


def test_a_sweep_whose_budget_ran_out_says_so_and_the_next_one_finishes(local_aws: Any) -> None:
    # Given a message stored but never queued
    key = store_but_never_enqueue(local_aws, f"late-{uuid.uuid4().hex[:6]}")

    # When a sweep has no time left
    cut_short = sweep_later(local_aws, RoundBudget(0))

    # Then it marks nothing and says it did not finish
    assert cut_short.marked == 0 and not cut_short.finished
    assert due_keys([key]) == set()
    # And the next round's sweep marks the message
    assert sweep_later(local_aws).finished
    assert due_keys([key]) == {key}


def test_a_sender_with_steady_traffic_is_swept_minute_after_minute(local_aws: Any) -> None:
    # Given a sender whose messages one store container took over three minutes, one or two a
    # minute (the container meets the sender again the next minute: it marks it busy at once)
    settings = get_settings()
    repository = MessageRepository(settings.table_name)
    sender_id = f"steady-{uuid.uuid4().hex[:6]}"
    start = datetime.now(UTC).replace(second=5, microsecond=0) - timedelta(minutes=3)
    keys = []
    for minute, count in ((0, 1), (1, 2), (2, 1)):
        for number in range(count):
            message = make_message(senderId=sender_id)
            state = local_aws.invoke(
                "relay-dedup", local_aws.invoke("relay-validate", {**ingest_input(message), "shape": "message"})
            )
            with iam.acting_as(local_aws.role_of("relay-store")):
                ingest.store(state, repository, settings, now=start + timedelta(minutes=minute, seconds=number))
            keys.append(MessageKey(sender_id, message["messageId"]))

    # When the sweep runs once the last of them is old enough
    later = start + timedelta(minutes=2, seconds=settings.redrive_after_seconds + 1)
    with iam.acting_as(local_aws.role_of("relay-reconciler")):
        outcome = sweep_unclaimed(repository, settings, later)

    # Then all four are due for a re-drive
    assert due_keys(keys) == set(keys)
    assert outcome.marked == 4 and outcome.finished


def test_a_sweep_cut_short_has_marked_a_busy_senders_oldest_messages_first(
    local_aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a busy sender whose six messages, a second apart, are spread over its acceptance shards
    settings = get_settings()
    repository = MessageRepository(settings.table_name)
    sender_id = f"backlog-{uuid.uuid4().hex[:6]}"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    keys = []
    for second in range(6):
        message = make_message(senderId=sender_id)
        state = local_aws.invoke(
            "relay-dedup", local_aws.invoke("relay-validate", {**ingest_input(message), "shape": "message"})
        )
        with iam.acting_as(local_aws.role_of("relay-store")):
            ingest.store(state, repository, settings, now=start + timedelta(seconds=second))
        keys.append(MessageKey(sender_id, message["messageId"]))
    # And a sweep that reads one head at a time and has time for three reads only
    monkeypatch.setattr(reconciler, "SWEEP_READERS", 1)
    monkeypatch.setattr(reconciler, "_HEADS_PER_READ", 1)
    ticks = iter([0.0, 0.0, 0.0, 0.0, 10.0])
    budget = RoundBudget(1.0, clock=lambda: next(ticks, 10.0))

    # When the sweep runs once they are old enough
    later = start + timedelta(seconds=5 + settings.redrive_after_seconds + 1)
    with iam.acting_as(local_aws.role_of("relay-reconciler")):
        outcome = sweep_unclaimed(repository, settings, later, budget)

    # Then it marked the three oldest, said it did not finish, and left the newer ones for the next round
    assert not outcome.finished
    assert due_keys(keys) == set(keys[:3])


def test_a_second_queue_copy_of_a_waiting_message_waits_for_its_turn_and_is_not_counted_again(
    local_aws: Any,
) -> None:
    # Given a sender's target limited to 1/s whose token is taken, and a message whose queue copy
    # was counted into the target's queue (it waits for its turn)
    from functions.adapters.stores.target_store import TargetRepository
    from functions.domain.flow import Permit, Target
    from functions.services.delivery import dependencies
    from functions.services.delivery.dispatch import DispatchOutcome, dispatch
    from functions.services.delivery.payloads import RunInput

    settings = get_settings()
    sender_id = f"turns-{uuid.uuid4().hex[:6]}"
    target = Target("https://example.com", rate_per_second=1.0)
    targets = TargetRepository(settings.table_name)
    targets.put(sender_id, target)
    key = store_but_never_enqueue(local_aws, sender_id)
    repository = MessageRepository(settings.table_name)

    def queue_end() -> int:
        bucket = targets.flow_snapshots(sender_id, [target])[target.origin].buckets[0]
        assert bucket is not None
        return bucket.queue_us

    with iam.acting_as(local_aws.role_of("relay-dispatcher")):
        deps = dependencies(settings)
        assert isinstance(deps.flow.acquire(sender_id, target.origin), Permit)
        assert dispatch(RunInput(key), deps) == DispatchOutcome.DEFERRED
        head = repository.get_head(key)
        assert head is not None and head.turn_at is not None
        counted_once = queue_end()

        # When a second copy of the same run comes while it waits (a re-drive's, say)
        second = dispatch(RunInput(key), deps)

    # Then that copy waits too, the message keeps its one turn, and the target's queue did not grow
    assert second == DispatchOutcome.DEFERRED
    again = repository.get_head(key)
    assert again is not None and again.turn_at == head.turn_at
    assert queue_end() == counted_once
