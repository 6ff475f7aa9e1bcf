"""The ingest steps as plain functions over the data-access layer.

Each takes and returns the ingest state machine's state. A step that has answered the request
puts the answer under `response`; the machine's Choice states then skip to the end, and the
machine's output is exactly that HTTP answer.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.shared.clock import iso
from functions.shared.config import Settings
from functions.shared.exceptions import PayloadTooLarge, QueueUnavailable, RelayError, SenderMismatch
from functions.shared.metric_names import Metric
from functions.shared.model import Event, EventType, MessageHead, MessageKey, Status
from functions.shared.observability import logger, metrics
from functions.shared.queue import DeliveryQueue
from functions.shared.repository import MessageRepository
from functions.shared.responses import (
    MESSAGE_ID_CONFLICT,
    error_response,
    http_response,
    response_for_rejection,
)


def _key(state: dict[str, Any]) -> MessageKey:
    message = state["message"]
    return MessageKey(message["senderId"], message["messageId"])


def duplicate_response(head: MessageHead) -> dict[str, Any]:
    body = {
        "duplicate": True,
        "messageId": head.key.message_id,
        "senderId": head.key.sender_id,
        "status": head.status.value,
        "attempts": head.attempts,
        "acceptedAt": iso(head.accepted_at),
        "updatedAt": iso(head.updated_at),
        "expiresAt": iso(head.expires_at),
    }
    return http_response(200, body)


def conflict_response(key: MessageKey, request_id: str) -> dict[str, Any]:
    return error_response(
        409,
        MESSAGE_ID_CONFLICT,
        f"Message '{key.message_id}' was already accepted with different content.",
        request_id,
    )


def _answer_existing(head: MessageHead, content_hash: str, key: MessageKey, request_id: str) -> dict[str, Any]:
    if head.content_hash == content_hash:
        metrics.add_metric(name=Metric.DUPLICATE, unit=MetricUnit.Count, value=1)
        return duplicate_response(head)
    metrics.add_metric(name=Metric.CONFLICTING, unit=MetricUnit.Count, value=1)
    return conflict_response(key, request_id)


# Step Functions refuses states over 256 KiB; control characters grow sixfold once JSON-escaped, so
# the escaped message is checked, leaving room for the rest of the state.
MAX_STATE_MESSAGE_BYTES = 200_000


def _check_state_size(message: dict[str, Any]) -> None:
    size = len(json.dumps(message).encode("utf-8"))
    if size > MAX_STATE_MESSAGE_BYTES:
        raise PayloadTooLarge(
            "$.body", f"The message is {size} bytes once JSON-escaped; the limit is {MAX_STATE_MESSAGE_BYTES}."
        )


def validate_step(state: dict[str, Any], settings: Settings) -> dict[str, Any]:
    # Imported here so dedup, store and enqueue (which share this module) never load jsonschema
    # at cold start; only the validate function pays for it.
    from functions.shared.validation import decode_request_body, validate_message

    request_id = str(state.get("requestId") or "unknown")
    authenticated = state.get("senderId") or None
    try:
        if authenticated is None and settings.require_sender:
            raise SenderMismatch("The request has no authenticated sender.")
        document = decode_request_body(state.get("bodyBase64"), settings)
        if isinstance(document, dict) and isinstance(document.get("messageId"), str):
            logger.set_correlation_id(document["messageId"])
        valid = validate_message(document, settings, authenticated_sender_id=authenticated)
        _check_state_size(valid.message)
    except RelayError as rejection:
        metrics.add_metric(name=Metric.REJECTED, unit=MetricUnit.Count, value=1)
        logger.info("Message rejected", extra={"reason": type(rejection).__name__})
        return {"requestId": request_id, "response": response_for_rejection(rejection, request_id)}
    return {"requestId": request_id, "message": valid.message, "contentHash": valid.content_hash}


def dedup_step(
    state: dict[str, Any], repository: MessageRepository, settings: Settings, now: datetime | None = None
) -> dict[str, Any]:
    """Fast path for repeats: answer from the stored head. Store's conditional write stays the guard."""
    key = _key(state)
    head = repository.get_head(key, consistent=False)
    if head is None:
        return state
    _redrive_if_never_enqueued(repository, settings, head, now or datetime.now(UTC))
    return {**state, "response": _answer_existing(head, state["contentHash"], key, state["requestId"])}


def _redrive_if_never_enqueued(
    repository: MessageRepository, settings: Settings, head: MessageHead, now: datetime
) -> None:
    """A sender repeating a message whose first request failed after it was stored (the ingest run
    died before its enqueue and before it could mark the message due): no dispatcher ever claimed it.
    Mark it due, so the reconciler re-drives it; the message is never left behind."""
    never_claimed = head.status == Status.PENDING and head.enqueued_run < head.run and head.due_at is None
    if never_claimed and (now - head.accepted_at).total_seconds() > settings.redrive_after_seconds:
        repository.set_due(head.key, int(now.timestamp()))


def store_step(
    state: dict[str, Any], repository: MessageRepository, settings: Settings, now: datetime | None = None
) -> dict[str, Any]:
    """Store the content, then the head (PENDING, with RECEIVED): the head's put is the dedup point."""
    key = _key(state)
    request_id = state["requestId"]
    content_hash = state["contentHash"]
    now = now or datetime.now(UTC)
    ttl = int(now.timestamp()) + settings.ttl_seconds

    if not repository.put_content(key, state["message"], content_hash, ttl):
        head = repository.get_head(key)
        if head is not None:
            return {**state, "response": _answer_existing(head, content_hash, key, request_id)}
        return {**state, "response": conflict_response(key, request_id)}

    # The ingest run's ARN (the machine passes $$.Execution.Id), so `relay trace` can link the run.
    details = {"requestId": request_id}
    if state.get("executionArn"):
        details["executionArn"] = str(state["executionArn"])
    received = Event(EventType.RECEIVED, now, 0, None, details)
    existing: MessageHead | None = None
    if not repository.create_head(key, content_hash, request_id, now, ttl, received):
        existing = repository.get_head(key)
        if existing is None:  # pragma: no cover - a head never disappears before its TTL
            return {**state, "response": conflict_response(key, request_id)}
        if existing.accept_request_id != request_id:
            return {**state, "response": _answer_existing(existing, content_hash, key, request_id)}
        # This very request stored it on an earlier try of this step: go on with what it stored.
    accepted_at = existing.accepted_at if existing else now
    stored_ttl = existing.ttl if existing else ttl
    return {
        **state,
        "acceptedAt": iso(accepted_at),
        "expiresAt": iso(datetime.fromtimestamp(stored_ttl, UTC)),
        "ttl": stored_ttl,
    }


def enqueue_step(
    state: dict[str, Any], repository: MessageRepository, queue: DeliveryQueue, now: datetime | None = None
) -> dict[str, Any]:
    """Send the message to the delivery queue. ENQUEUED is recorded by the dispatcher's claim (with
    SQS's sent time), so the success path writes nothing here."""
    key = _key(state)
    now = now or datetime.now(UTC)
    try:
        queue.send(key)
    except QueueUnavailable:
        # The message is stored and stays PENDING; mark it due now so the reconciler re-drives it
        # even though this request ends in SYSTEM_ERROR. Best effort: a repeat of the request also
        # marks it (dedup_step).
        record_enqueue_failed(state, repository, now)
        raise
    metrics.add_metric(name=Metric.ACCEPTED, unit=MetricUnit.Count, value=1)
    body = {
        "messageId": key.message_id,
        "senderId": key.sender_id,
        "status": Status.PENDING.value,
        "acceptedAt": state["acceptedAt"],
        "expiresAt": state["expiresAt"],
    }
    return {"requestId": state["requestId"], "response": http_response(202, body)}


def record_enqueue_failed(state: dict[str, Any], repository: MessageRepository, now: datetime) -> None:
    """ENQUEUE_FAILED (once per request) and a due time of now, so the reconciler re-drives it."""
    details = {"executionArn": state["executionArn"]} if state.get("executionArn") else {}
    failed = Event(EventType.ENQUEUE_FAILED, now, 0, None, details)
    try:
        repository.record_enqueue_failed(_key(state), failed, str(state["requestId"]), int(now.timestamp()))
    except RelayError:
        logger.exception("Could not record the failed enqueue")
