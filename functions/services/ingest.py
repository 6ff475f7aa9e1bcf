"""The ingest steps as plain functions over the data-access layer.

Each takes and returns the ingest state machine's state. A step that has answered the request
puts the answer under `response`; the machine's Choice states then skip to the end, and the
machine's output is exactly that HTTP answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.adapters.observability import logger, metrics
from functions.adapters.queue import DeliveryQueue
from functions.adapters.repository import MessageRepository
from functions.contract.metric_names import Metric
from functions.domain.clock import iso
from functions.domain.config import Settings
from functions.domain.exceptions import (
    FieldError,
    MessageInvalid,
    PayloadTooLarge,
    QueueUnavailable,
    RelayError,
    SenderMismatch,
)
from functions.domain.model import Event, EventType, MessageHead, MessageKey, Status
from functions.services.responses import (
    MESSAGE_ID_CONFLICT,
    SYSTEM_ERROR,
    SYSTEM_ERROR_MESSAGE,
    error_response,
    http_response,
    response_for_rejection,
)
from functions.services.status import head_summary


def _key(state: dict[str, Any]) -> MessageKey:
    message = state["message"]
    return MessageKey(message["senderId"], message["messageId"])


def duplicate_response(head: MessageHead) -> dict[str, Any]:
    return http_response(200, {"duplicate": True, **head_summary(head)})


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
    from functions.domain.validation import decode_request_body

    request_id = str(state.get("requestId") or "unknown")
    authenticated = state.get("senderId") or None
    try:
        _check_sender(authenticated, settings)
        document = decode_request_body(state.get("bodyBase64"), settings)
    except RelayError as rejection:
        return _rejected(rejection, request_id)
    if isinstance(document, dict) and isinstance(document.get("messageId"), str):
        logger.set_correlation_id(document["messageId"])
    return _validate_document(document, request_id, authenticated, settings, check_size=True)


def _check_sender(authenticated: str | None, settings: Settings) -> None:
    if authenticated is None and settings.require_sender:
        raise SenderMismatch("The request has no authenticated sender.")


def _rejected(rejection: RelayError, request_id: str) -> dict[str, Any]:
    metrics.add_metric(name=Metric.REJECTED, unit=MetricUnit.Count, value=1)
    logger.info("Message rejected", extra={"reason": type(rejection).__name__})
    return {"requestId": request_id, "response": response_for_rejection(rejection, request_id)}


def _validate_document(
    document: Any, request_id: str, authenticated: str | None, settings: Settings, *, check_size: bool
) -> dict[str, Any]:
    """One decoded message through validation: the next step's state, or the answer."""
    from functions.domain.validation import validate_message

    try:
        valid = validate_message(document, settings, authenticated_sender_id=authenticated)
        if check_size:
            _check_state_size(valid.message)
    except RelayError as rejection:
        return _rejected(rejection, request_id)
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


# (sender, minute) pairs this process has recorded: one put per sender and minute per warm function.
_ACTIVE: set[tuple[str, int]] = set()


def _note_activity(repository: MessageRepository, sender_id: str, now: datetime, settings: Settings) -> None:
    """Record the sender as active this minute before its message is stored, so the reconciler's
    sweep finds a message whose ingest run dies before its enqueue (operations.sweep_unclaimed)."""
    minute = int(now.timestamp()) // 60
    if (sender_id, minute) in _ACTIVE:
        return
    if len(_ACTIVE) > 10_000:
        _ACTIVE.clear()
    # Kept a day past the sweep's window: the sweep reads minutes at most an hour old.
    repository.note_sender_active(
        sender_id, now, int(now.timestamp()) + max(86_400, settings.redrive_after_seconds * 4)
    )
    _ACTIVE.add((sender_id, minute))


def store_step(
    state: dict[str, Any], repository: MessageRepository, settings: Settings, now: datetime | None = None
) -> dict[str, Any]:
    """Store the content, then the head (PENDING, with RECEIVED): the head's put is the dedup point."""
    key = _key(state)
    request_id = state["requestId"]
    content_hash = state["contentHash"]
    now = now or datetime.now(UTC)
    ttl = int(now.timestamp()) + settings.ttl_seconds

    _note_activity(repository, key.sender_id, now, settings)
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
    return _enqueued(state)


def _enqueued(state: dict[str, Any]) -> dict[str, Any]:
    """The queue took the message: answer 202 (ENQUEUED is recorded by the dispatcher's claim)."""
    key = _key(state)
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


# -- POST /messages/batch ------------------------------------------------------------------------------
#
# The batch machine (statemachines/ingest_batch.asl.json) runs the same four functions over a state
# `{requestId, items: [...]}`: each item is the state one POST /messages would have at that step, and
# each batch step maps that step over the items not answered yet. An answered item keeps only its
# `response`, which keeps the state small. Once no item is left to work on, the step answers the whole
# request (`response`: 200 with every item's answer, in order), and the Choice states skip to the end.

# Threads per batch step: each item's step makes a few DynamoDB calls, mostly waiting on the network.
BATCH_WORKERS = 10
# What an item may add to the state after validation (acceptedAt, expiresAt, ttl, or an answer that is
# longer than the message it replaces), counted when the validated batch's size is checked.
BATCH_ITEM_ALLOWANCE_BYTES = 512


def batch_item_request_id(request_id: str, index: int) -> str:
    """An item's own request id: store tells a retry of its own write from a twin's by it."""
    return f"{request_id}:{index}"


def _pending(items: list[dict[str, Any]]) -> list[int]:
    return [index for index, item in enumerate(items) if "response" not in item]


def _answered(state: dict[str, Any]) -> dict[str, Any]:
    """An item's state once it has its answer: the answer only."""
    return {"response": state["response"]} if "response" in state else state


def _run_items(
    items: list[dict[str, Any]], indexes: list[int], step: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """`step` over the items at `indexes`, in parallel; each result replaces its item in place.

    The first runs in this thread, so the clients the others share are created once.
    """
    if not indexes:
        return
    first, *rest = indexes
    items[first] = _answered(step(items[first]))
    if not rest:
        return
    with ThreadPoolExecutor(max_workers=min(len(rest), BATCH_WORKERS)) as pool:
        results = list(pool.map(step, [items[index] for index in rest]))
    for index, result in zip(rest, results, strict=True):
        items[index] = _answered(result)


def _next_batch_state(state: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """The state the next batch step gets; the whole answer once no item is left to work on."""
    if _pending(items):
        return {"requestId": state["requestId"], "items": items}
    return {"requestId": state["requestId"], "response": batch_response(items)}


def batch_response(items: list[dict[str, Any]]) -> dict[str, Any]:
    """200 with one result per message, in order: the status code and body POST /messages gives."""
    results = [
        {"statusCode": item["response"]["statusCode"], "body": json.loads(item["response"]["body"])} for item in items
    ]
    return http_response(200, {"results": results})


def validate_batch(state: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The envelope `{"messages": [...]}` (1 to 100), then validate_step's rules for each message.

    A malformed envelope is a 400 naming the field; a request or a validated batch too large for a
    state machine's state is a 413. Both answer the whole request.
    """
    from functions.domain.json_text import BATCH_FIELD_DEPTH
    from functions.domain.validation import MAX_BATCH_REQUEST_BYTES, decode_request_body

    request_id = str(state.get("requestId") or "unknown")
    authenticated = state.get("senderId") or None
    try:
        _check_sender(authenticated, settings)
        # A message's fields are at $.messages[i]: the nesting limit counts from each of them.
        body = decode_request_body(state.get("bodyBase64"), settings, MAX_BATCH_REQUEST_BYTES, BATCH_FIELD_DEPTH)
        documents = _batch_messages(body)
    except RelayError as rejection:
        return _rejected(rejection, request_id)
    items = [
        _answered(
            _validate_document(
                document, batch_item_request_id(request_id, index), authenticated, settings, check_size=False
            )
        )
        for index, document in enumerate(documents)
    ]
    try:
        _check_batch_state_size(items)
    except PayloadTooLarge as rejection:
        return _rejected(rejection, request_id)
    return _next_batch_state({"requestId": request_id}, items)


def _batch_messages(document: Any) -> list[Any]:
    """The envelope's messages; MessageInvalid naming every problem of the envelope."""
    from functions.domain.validation import MAX_BATCH_MESSAGES, MAX_DETAILS

    if not isinstance(document, dict):
        raise MessageInvalid([FieldError("$", 'must be an object {"messages": [...]}')], "The batch is invalid.")
    details = [FieldError(f"$.{name}", "is not allowed") for name in document if name != "messages"]
    messages = document.get("messages")
    if not isinstance(messages, list):
        details.insert(0, FieldError("$.messages", f"is required: an array of 1 to {MAX_BATCH_MESSAGES} messages"))
    elif not messages:
        details.insert(0, FieldError("$.messages", "must hold at least 1 message"))
    elif len(messages) > MAX_BATCH_MESSAGES:
        details.insert(
            0, FieldError("$.messages", f"holds {len(messages)} messages; the limit is {MAX_BATCH_MESSAGES}")
        )
    if details:
        raise MessageInvalid(details[:MAX_DETAILS], "The batch is invalid.")
    assert isinstance(messages, list)
    return messages


def _check_batch_state_size(items: list[dict[str, Any]]) -> None:
    """The validated batch, with room for what each item adds later, must fit a state (like
    `_check_state_size` for one message)."""
    size = len(json.dumps(items).encode("utf-8")) + BATCH_ITEM_ALLOWANCE_BYTES * len(_pending(items))
    if size > MAX_STATE_MESSAGE_BYTES:
        raise PayloadTooLarge(
            "$.messages",
            f"The batch is {size} bytes once validated and JSON-escaped; the limit is {MAX_STATE_MESSAGE_BYTES}. "
            "Send fewer messages per batch.",
        )


def dedup_batch(state: dict[str, Any], repository: MessageRepository, settings: Settings) -> dict[str, Any]:
    items = list(state["items"])
    _run_items(items, _pending(items), lambda item: dedup_step(item, repository, settings))
    return _next_batch_state(state, items)


def store_batch(
    state: dict[str, Any], repository: MessageRepository, settings: Settings, now: datetime | None = None
) -> dict[str, Any]:
    """store_step for every item, in parallel, except that a messageId met again in the batch is
    stored after its earlier occurrence: the first is the one accepted, the next a duplicate (or a
    conflict, when its content differs), as if they had been posted one after the other."""
    items = list(state["items"])
    if state.get("executionArn"):  # the batch run's ARN on each RECEIVED (relay trace links it)
        items = [item if "response" in item else {**item, "executionArn": state["executionArn"]} for item in items]
    rounds: list[list[int]] = []
    seen: dict[MessageKey, int] = {}
    for index in _pending(items):
        key = _key(items[index])
        occurrence = seen[key] = seen.get(key, -1) + 1
        if occurrence == len(rounds):
            rounds.append([])
        rounds[occurrence].append(index)
    for indexes in rounds:
        _run_items(items, indexes, lambda item: store_step(item, repository, settings, now))
    return _next_batch_state(state, items)


def enqueue_batch(
    state: dict[str, Any], repository: MessageRepository, queue: DeliveryQueue, now: datetime | None = None
) -> dict[str, Any]:
    """The stored items to the delivery queue (SendMessageBatch), recorded as enqueue_step does; answers.

    An item SQS does not take is sent once more, then recorded as a failed enqueue (due now, so the
    reconciler re-drives it) and answered 500 SYSTEM_ERROR, as a single POST would be. When SQS takes
    none, the step fails with QueueUnavailable and the machine retries it, as for a single message.
    """
    now = now or datetime.now(UTC)
    items = list(state["items"])
    pending = _pending(items)
    for index in pending:
        if state.get("executionArn"):
            items[index] = {**items[index], "executionArn": state["executionArn"]}
    queue_ids = queue.send_batch([_key(items[index]) for index in pending])
    missed = [position for position, queue_id in enumerate(queue_ids) if queue_id is None]
    if missed:
        for position, queue_id in zip(missed, queue.send_batch([_key(items[pending[p]]) for p in missed]), strict=True):
            queue_ids[position] = queue_id
    for index, queue_id in zip(pending, queue_ids, strict=True):
        if queue_id is None:
            record_enqueue_failed(items[index], repository, now)
            request_id = items[index]["requestId"]
            items[index] = {"response": error_response(500, SYSTEM_ERROR, SYSTEM_ERROR_MESSAGE, request_id)}
        else:
            items[index] = {**items[index], "queueMessageId": queue_id}
    if pending and all(queue_id is None for queue_id in queue_ids):
        raise QueueUnavailable("SQS took none of the batch's messages")
    for index in _pending(items):
        items[index] = _answered(_enqueued(items[index]))
    return _next_batch_state(state, items)
