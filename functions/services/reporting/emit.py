"""Messages Relay sends on its own behalf (outcome callbacks, operational notifications, and any
later sender-less firing): stored and enqueued through ingest's own store path, so they are signed
with the sender's secret, retried, listed and re-driven exactly like a message the sender posted.

Exactly once per occurrence: the id is derived from what happened (the message, its run and the
outcome; or the event), and the id is also the store's request id. The head's conditional put is
the dedup point, and a retried emit that finds the head its own earlier try stored goes on and
enqueues again (the dispatcher's claim makes a second queue copy harmless).

Who re-drives a failed emit: the caller emits AFTER the outcome it reports is written, from the
step that wrote it, and raises when the emit fails, so that step's retry (the lane's, the queue's
redelivery, the reconciler's re-drive) emits again; each of those paths, finding the outcome
already written by the same run, emits instead of stopping. Once stored, the message itself is
Relay's to deliver: an enqueue SQS does not take is recorded due now (ENQUEUE_FAILED), and the
sender's activity minute is noted first, so the reconciler finds it as it finds any stored message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from functions.adapters.observability import logger
from functions.adapters.queue import DeliveryQueue
from functions.adapters.repository import MessageRepository
from functions.domain.clock import iso
from functions.domain.config import Settings
from functions.domain.model import EMITTED_FIELD, MessageKey
from functions.services.ingest import record_enqueue_failed, store_item
from functions.services.ingest_payloads import ValidatedItem


@dataclass(frozen=True)
class Emission:
    """One message Relay sends for a sender: a JSON body POSTed to `target_url`."""

    sender_id: str
    message_id: str
    target_url: str
    body: dict[str, Any]


def _content(emission: Emission, now: datetime) -> dict[str, Any]:
    """The stored message, normalised as validation would store it."""
    return {
        "messageId": emission.message_id,
        "senderId": emission.sender_id,
        "timestamp": iso(now),
        "targetUrl": emission.target_url,
        "method": "POST",
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(emission.body, separators=(",", ":"), ensure_ascii=False),
        # Its own outcome calls nothing back and notifies nothing (no chain of notifications).
        EMITTED_FIELD: "relay",
    }


def emit(
    emission: Emission,
    repository: MessageRepository,
    queue: DeliveryQueue,
    settings: Settings,
    now: datetime | None = None,
) -> bool:
    """Store and enqueue `emission` once; True when this call stored or re-enqueued it, False when it
    was already accepted by another request. Raises when it could not be stored; once stored it is
    never lost (an enqueue SQS does not take is recorded due now, for the reconciler)."""
    # Loaded here: validation (and jsonschema) is the validate function's cold start, not delivery's.
    from functions.domain.validation import content_hash

    now = now or datetime.now(UTC)
    message = _content(emission, now)
    # The derived id is the request id too: a retried emit is "this very request" to store_item.
    item: ValidatedItem = {"requestId": emission.message_id, "message": message, "contentHash": content_hash(message)}
    stored = store_item(item, repository, settings, now=now)
    if "response" in stored:
        return False  # stored by an earlier emit of the same occurrence, which enqueued it
    key = MessageKey(emission.sender_id, emission.message_id)
    if queue.send_keys([key]) == [None]:
        record_enqueue_failed(item, None, repository, now)
    logger.info("Emitted a message", extra={"emittedId": emission.message_id})
    return True
