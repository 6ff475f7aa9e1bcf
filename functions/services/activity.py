"""Activity notes: how the reconciler's sweep of never-claimed messages finds them.

A message whose ingest run dies between its store and its enqueue is PENDING with nothing queued
and no due time: only the sweep (reconciler.sweep_unclaimed) can find it. The store step notes each
message in its sender's activity item for the minute (`ACTIVE#<minute>#<shard>`) before it stores
it, so the sweep's reads follow the messages accepted in its window, not the number of senders.
This module decides what a warm container writes there, at most one write per sender and minute
on steady traffic.
"""

from __future__ import annotations

import threading
from datetime import datetime

from functions.adapters import aws
from functions.adapters.repository import MessageRepository
from functions.domain.config import Settings
from functions.domain.model import MessageKey

# What this process has written to each (sender, minute) activity item: NAMED once its first
# message of that sender and minute is named there, BUSY once the sender is marked busy (nothing
# more to write that minute). A lock: a batch stores its messages on several threads.
_NAMED, _BUSY = "named", "busy"
_ACTIVITY_NOTED: dict[tuple[str, int], str] = {}
_ACTIVITY_LOCK = threading.Lock()


def forget_activity() -> None:
    """Forget what this container noted (as a cold start does). The notes are bound to one table:
    `relay dev` and the tests forget them whenever an embedded AWS starts or stops."""
    with _ACTIVITY_LOCK:
        _ACTIVITY_NOTED.clear()


aws.on_reset(forget_activity)


def note_activity(repository: MessageRepository, key: MessageKey, now: datetime, settings: Settings) -> None:
    """Record the message in its sender's activity item before it is stored, so the reconciler's
    sweep finds it should its ingest run die before its enqueue (reconciler.sweep_unclaimed).

    A sender this container met the minute before is marked busy at once (steady traffic: the
    sweep reads its acceptance index for the minute); otherwise the container's first message of
    the sender and minute is named and its second marks the sender busy. Later ones write nothing.
    So steady traffic writes once per sender, minute and container, and a sender with one message
    names it: the sweep's reads follow the messages, whatever the number of senders.

    The note is remembered only once its write succeeded: a failed write (the step is retried)
    must not leave a message the sweep cannot find. Two threads racing write twice, harmlessly
    (a name and a busy mark are both idempotent)."""
    minute = int(now.timestamp()) // 60
    with _ACTIVITY_LOCK:
        noted = _ACTIVITY_NOTED.get((key.sender_id, minute))
        if noted == _BUSY:
            return
        steady = (key.sender_id, minute - 1) in _ACTIVITY_NOTED
    name_it = noted is None and not steady
    # Kept a day past the sweep's window: the sweep reads minutes at most an hour old.
    ttl = int(now.timestamp()) + max(86_400, settings.redrive_after_seconds * 4)
    if name_it:
        repository.note_activity(key.sender_id, key.message_id, now, ttl)
    else:
        repository.note_busy_sender(key.sender_id, now, ttl)
    with _ACTIVITY_LOCK:
        if len(_ACTIVITY_NOTED) > 10_000:
            _ACTIVITY_NOTED.clear()
        if _ACTIVITY_NOTED.get((key.sender_id, minute)) != _BUSY:
            _ACTIVITY_NOTED[(key.sender_id, minute)] = _NAMED if name_it else _BUSY
