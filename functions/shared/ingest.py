"""The ingest steps as plain functions over the data-access layer.

Each takes and returns the ingest state machine's state. A step that has answered the request
puts the answer under `response`; the machine's Choice states then skip to the end, and the
machine's output is exactly that HTTP answer.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.shared.clock import iso
from functions.shared.config import Settings
from functions.shared.exceptions import PayloadTooLarge, QueueUnavailable, RelayError, SenderMismatch
from functions.shared.metric_names import Metric
from functions.shared.model import EventType, MessageKey, Status
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


def duplicate_response(head: dict[str, Any]) -> dict[str, Any]:
    body = {
        "duplicate": True,
        "messageId": head["messageId"],
        "senderId": head["senderId"],
        "status": head["status"],
        "attempts": head.get("attempts", 0),
        "acceptedAt": head["acceptedAt"],
        "updatedAt": head.get("updatedAt", head["acceptedAt"]),
        "expiresAt": head["expiresAt"],
    }
    return http_response(200, body)


def conflict_response(key: MessageKey, request_id: str) -> dict[str, Any]:
    return error_response(
        409,
        MESSAGE_ID_CONFLICT,
        f"Message '{key.message_id}' was already accepted with different content.",
        request_id,
    )


def _answer_existing(head: dict[str, Any], content_hash: str, key: MessageKey, request_id: str) -> dict[str, Any]:
    if head.get("contentHash") == content_hash:
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


def dedup_step(state: dict[str, Any], repository: MessageRepository) -> dict[str, Any]:
    """Fast path for repeats: answer from the stored head. Store's conditional write stays the guard."""
    key = _key(state)
    head = repository.get_head(key, consistent=False)
    if head is None:
        return state
    return {**state, "response": _answer_existing(head, state["contentHash"], key, state["requestId"])}


def store_step(
    state: dict[str, Any], repository: MessageRepository, settings: Settings, now: datetime | None = None
) -> dict[str, Any]:
    key = _key(state)
    request_id = state["requestId"]
    content_hash = state["contentHash"]
    now = now or datetime.now(UTC)
    accepted_at = iso(now)
    ttl = int(now.timestamp()) + settings.ttl_seconds
    expires_at = iso(now + timedelta(seconds=settings.ttl_seconds))

    if not repository.record_received(key, state["message"], content_hash, request_id, accepted_at, ttl):
        head = repository.get_head(key)
        if head is not None:
            return {**state, "response": _answer_existing(head, content_hash, key, request_id)}
        return {**state, "response": conflict_response(key, request_id)}

    head = {
        "pk": key.partition_key,
        "senderId": key.sender_id,
        "messageId": key.message_id,
        "status": Status.PENDING.value,
        "attempts": 0,
        "run": 0,
        "contentHash": content_hash,
        "targetUrl": state["message"]["targetUrl"],
        "method": state["message"]["method"],
        "acceptedAt": accepted_at,
        "updatedAt": accepted_at,
        "expiresAt": expires_at,
        "ttl": ttl,
        "acceptRequestId": request_id,
        # Sparse index the reconciler reads: a message not picked up by then is re-driven.
        "dueAt": int(now.timestamp()) + settings.redrive_after_seconds,
        "dueShard": key.due_shard,
    }
    if not repository.create_head(head):
        existing = repository.get_head(key)
        if existing is None or existing.get("acceptRequestId") != request_id:
            if existing is None:  # pragma: no cover - a head never disappears before its TTL
                return {**state, "response": conflict_response(key, request_id)}
            return {**state, "response": _answer_existing(existing, content_hash, key, request_id)}
        head = existing  # this very request stored it on an earlier try of this step
    return {**state, "acceptedAt": head["acceptedAt"], "expiresAt": head["expiresAt"], "ttl": head["ttl"]}


def enqueue_step(
    state: dict[str, Any], repository: MessageRepository, queue: DeliveryQueue, now: datetime | None = None
) -> dict[str, Any]:
    key = _key(state)
    now = now or datetime.now(UTC)
    # The ingest run's ARN (the machine passes $$.Execution.Id), so `relay trace` can link the run.
    # Recorded here, not by store: only the run that created the head gets this far, while a twin's
    # run may have written the RECEIVED event. Both events are conditional puts under a fixed key, so
    # a retried Enqueue step of the same run finds its event and the first run's ARN stays.
    run = {"executionArn": state["executionArn"]} if state.get("executionArn") else {}
    try:
        queue_message_id = queue.send(key)
    except QueueUnavailable:
        # The message is stored and stays PENDING; mark it due now so the reconciler re-drives it
        # even though this request ends in SYSTEM_ERROR. Best effort: the head is due anyway.
        try:
            repository.append_event(
                key, EventType.ENQUEUE_FAILED, iso(now), state["ttl"], suffix=state["requestId"], **run
            )
            repository.set_due(key, int(now.timestamp()))
        except RelayError:
            logger.exception("Could not record the failed enqueue")
        raise
    repository.append_event(key, EventType.ENQUEUED, iso(now), state["ttl"], queueMessageId=queue_message_id, **run)
    metrics.add_metric(name=Metric.ACCEPTED, unit=MetricUnit.Count, value=1)
    body = {
        "messageId": key.message_id,
        "senderId": key.sender_id,
        "status": Status.PENDING.value,
        "acceptedAt": state["acceptedAt"],
        "expiresAt": state["expiresAt"],
    }
    return {"requestId": state["requestId"], "response": http_response(202, body)}
