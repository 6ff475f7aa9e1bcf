"""The ingest steps as plain functions over the data-access layer: one path for one message and a batch.

POST /messages and POST /messages/batch run the same definition (statemachines/ingest.asl.json) and
these same four steps. Validate reads the request's shape (functions/contract/request_shapes.py,
filled in by the machine) and turns the request into the state `{requestId, shape, items: [...]}`
(its shapes, and how a step's results make the next state: ingest_payloads.py):
one item per message, each the state that message has at this step. A step works on the items not
answered yet, in parallel when there are several; an answered item keeps only its `response`, which
keeps the state small. Once no item is left to work on, the step answers the request (`response`):
a single message is a batch of one that answers with its item's answer, a batch answers 200 with
every item's answer, in order. The machine's Choice states then skip to the end, and the machine's
output is exactly that HTTP answer. A rejection of the whole request (no sender, a body too large
or malformed) is the `response` at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.adapters.observability import logger, metrics
from functions.adapters.queue import DeliveryQueue
from functions.adapters.repository import MessageRepository
from functions.contract.metric_names import Metric
from functions.contract.request_shapes import RequestShape
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
from functions.domain.model import DueEntry, Event, EventType, MessageHead, MessageKey, Status
from functions.domain.scheduling import QUEUE_LEAD_SECONDS, queue_delay, waits_in_scheduler
from functions.services.activity import note_activity
from functions.services.http_api.responses import (
    MESSAGE_ID_CONFLICT,
    SYSTEM_ERROR,
    SYSTEM_ERROR_MESSAGE,
    HttpAnswer,
    error_response,
    http_response,
    response_for_rejection,
)
from functions.services.http_api.status import head_summary
from functions.services.ingest_payloads import (
    AnsweredItem,
    AnsweredState,
    IngestRequest,
    ItemsState,
    Next,
    Open,
    StoredItem,
    ValidatedItem,
    answer_only,
    answered_state,
    next_state,
    open_items,
    with_results,
)

# The steps' log correlation id (Powertools' correlation_id_path): a single message's id; none for
# a batch, whose items each have their own.
CORRELATION_ID_PATH = "shape == 'message' && items[0].message.messageId || `null`"

# Threads per step: each item's step makes a few DynamoDB calls, mostly waiting on the network.
BATCH_WORKERS = 10
# Step Functions refuses states over 256 KiB; control characters grow sixfold once JSON-escaped, so
# the escaped message is checked, leaving room for the rest of the state.
MAX_STATE_MESSAGE_BYTES = 200_000
# What an item may add to the state after validation (acceptedAt and expiresAt, or an answer that is
# longer than the message it replaces), counted when the validated batch's size is checked.
BATCH_ITEM_ALLOWANCE_BYTES = 512


# -- the state: items, answered or not -------------------------------------------------------------


def _key(item: ValidatedItem | StoredItem) -> MessageKey:
    message = item["message"]
    return MessageKey(message["senderId"], message["messageId"])


def item_request_id(request_id: str, index: int, shape: RequestShape) -> str:
    """An item's own request id: store tells a retry of its own write from a twin's by it."""
    return f"{request_id}:{index}" if shape is RequestShape.BATCH else request_id


def _run_items(
    pending: list[tuple[int, Open]], step: Callable[[Open], Next | AnsweredItem]
) -> dict[int, Next | AnsweredItem]:
    """`step` over the `pending` items, in parallel: each one's result by its place.

    The first runs in this thread (a single message never starts a thread), so the clients the
    others share are created once.
    """
    if not pending:
        return {}
    (first_index, first), *rest = pending
    results = {first_index: answer_only(step(first))}
    if not rest:
        return results
    with ThreadPoolExecutor(max_workers=min(len(rest), BATCH_WORKERS)) as pool:
        done = list(pool.map(step, [item for _, item in rest]))
    for (index, _), result in zip(rest, done, strict=True):
        results[index] = answer_only(result)
    return results


# -- answers -----------------------------------------------------------------------------------------


def duplicate_response(head: MessageHead) -> HttpAnswer:
    return http_response(200, {"duplicate": True, **head_summary(head)})


def conflict_response(key: MessageKey, request_id: str) -> HttpAnswer:
    return error_response(
        409,
        MESSAGE_ID_CONFLICT,
        f"Message '{key.message_id}' was already accepted with different content.",
        request_id,
    )


def _answer_existing(head: MessageHead, content_hash: str, key: MessageKey, request_id: str) -> HttpAnswer:
    if head.content_hash == content_hash:
        metrics.add_metric(name=Metric.DUPLICATE, unit=MetricUnit.Count, value=1)
        return duplicate_response(head)
    metrics.add_metric(name=Metric.CONFLICTING, unit=MetricUnit.Count, value=1)
    return conflict_response(key, request_id)


def _rejected(rejection: RelayError, request_id: str) -> HttpAnswer:
    metrics.add_metric(name=Metric.REJECTED, unit=MetricUnit.Count, value=1)
    logger.info("Message rejected", extra={"reason": type(rejection).__name__})
    return response_for_rejection(rejection, request_id)


# -- Validate ------------------------------------------------------------------------------------------


def validate(request: IngestRequest, settings: Settings) -> ItemsState[ValidatedItem] | AnsweredState:
    """The request's messages through the schema and rules: the items, or the whole request's answer.

    One message (shape `message`): its rejection is the answer. A batch: the envelope
    `{"messages": [...]}` (1 to 100), then each message alone, a rejected one answered in its place;
    a malformed envelope is a 400 naming the field, a validated batch too large for a state a 413.
    """
    shape, request_id, authenticated = request.shape, request.request_id, request.sender_id
    try:
        if authenticated is None and settings.require_sender:
            raise SenderMismatch("The request has no authenticated sender.")
        documents = _documents(request.body_base64, shape, settings)
    except RelayError as rejection:
        return {"requestId": request_id, "response": _rejected(rejection, request_id)}
    items = [
        _validated(document, item_request_id(request_id, index, shape), authenticated, settings, shape)
        for index, document in enumerate(documents)
    ]
    if shape is RequestShape.BATCH:
        try:
            _check_batch_state_size(items)
        except PayloadTooLarge as rejection:
            return {"requestId": request_id, "response": _rejected(rejection, request_id)}
    return next_state(request_id, shape, items)


def _documents(body_base64: str | None, shape: RequestShape, settings: Settings) -> list[Any]:
    """The request's decoded messages: the body itself, or a batch envelope's `messages`."""
    # Imported here so dedup, store and enqueue (which share this module) never load jsonschema
    # at cold start; only the validate function pays for it.
    from functions.domain.validation import MAX_BATCH_REQUEST_BYTES, decode_request_body
    from functions.domain.web.json_text import BATCH_FIELD_DEPTH

    if shape is RequestShape.BATCH:
        # A message's fields are at $.messages[i]: the nesting limit counts from each of them.
        return _batch_messages(decode_request_body(body_base64, settings, MAX_BATCH_REQUEST_BYTES, BATCH_FIELD_DEPTH))
    document = decode_request_body(body_base64, settings)
    if isinstance(document, dict) and isinstance(document.get("messageId"), str):
        logger.set_correlation_id(document["messageId"])
    return [document]


def _validated(
    document: Any, request_id: str, authenticated: str | None, settings: Settings, shape: RequestShape
) -> ValidatedItem | AnsweredItem:
    """One decoded message through validation: its item for the next step, or its answer."""
    from functions.domain.validation import validate_message

    try:
        valid = validate_message(document, settings, authenticated_sender_id=authenticated)
        if shape is RequestShape.MESSAGE:  # a batch's size is checked as a whole
            _check_state_size(valid.message)
    except RelayError as rejection:
        return {"response": _rejected(rejection, request_id)}
    return {"requestId": request_id, "message": valid.message, "contentHash": valid.content_hash}


def _check_state_size(message: Mapping[str, Any]) -> None:
    size = len(json.dumps(message).encode("utf-8"))
    if size > MAX_STATE_MESSAGE_BYTES:
        raise PayloadTooLarge(
            "$.body", f"The message is {size} bytes once JSON-escaped; the limit is {MAX_STATE_MESSAGE_BYTES}."
        )


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


def _check_batch_state_size(items: list[ValidatedItem | AnsweredItem]) -> None:
    """The validated batch, with room for what each item adds later, must fit a state (like
    `_check_state_size` for one message)."""
    size = len(json.dumps(items).encode("utf-8")) + BATCH_ITEM_ALLOWANCE_BYTES * len(open_items(items))
    if size > MAX_STATE_MESSAGE_BYTES:
        raise PayloadTooLarge(
            "$.messages",
            f"The batch is {size} bytes once validated and JSON-escaped; the limit is {MAX_STATE_MESSAGE_BYTES}. "
            "Send fewer messages per batch.",
        )


# -- Dedup ---------------------------------------------------------------------------------------------


def dedup(
    state: ItemsState[ValidatedItem], repository: MessageRepository, settings: Settings
) -> ItemsState[ValidatedItem] | AnsweredState:
    """Fast path for repeats: each one answered from its stored head (200 duplicate or 409 conflict)."""
    items = state["items"]
    results = _run_items(open_items(items), lambda item: dedup_item(item, repository, settings))
    return next_state(state["requestId"], state["shape"], with_results(items, results))


def dedup_item(
    item: ValidatedItem, repository: MessageRepository, settings: Settings, now: datetime | None = None
) -> ValidatedItem | AnsweredItem:
    """One message's repeat check. Store's conditional write stays the guard."""
    key = _key(item)
    head = repository.get_head(key, consistent=False)
    if head is None:
        return item
    _redrive_if_never_enqueued(repository, settings, head, now or datetime.now(UTC))
    return {"response": _answer_existing(head, item["contentHash"], key, item["requestId"])}


def _redrive_if_never_enqueued(
    repository: MessageRepository, settings: Settings, head: MessageHead, now: datetime
) -> None:
    """A sender repeating a message whose first request failed after it was stored (the ingest run
    died before its enqueue and before it could mark the message due): no dispatcher ever claimed it.
    Mark it due, so the reconciler re-drives it; the message is never left behind."""
    never_claimed = head.status == Status.PENDING and head.enqueued_run < head.run and head.due_at is None
    if never_claimed and (now - head.accepted_at).total_seconds() > settings.redrive_after_seconds:
        repository.set_due(head.key, int(now.timestamp()))


# -- StorePending --------------------------------------------------------------------------------------


def store(
    state: ItemsState[ValidatedItem], repository: MessageRepository, settings: Settings, now: datetime | None = None
) -> ItemsState[StoredItem] | AnsweredState:
    """store_item for every new message, in parallel, except that a messageId met again in the
    request is stored after its earlier occurrence: the first is the one accepted, the next a
    duplicate (or a conflict, when its content differs), as if they had been posted one after the other."""
    items = state["items"]
    execution_arn = state.get("executionArn")
    rounds: list[list[tuple[int, ValidatedItem]]] = []
    seen: dict[MessageKey, int] = {}
    for index, item in open_items(items):
        key = _key(item)
        occurrence = seen[key] = seen.get(key, -1) + 1
        if occurrence == len(rounds):
            rounds.append([])
        rounds[occurrence].append((index, item))
    results: dict[int, StoredItem | AnsweredItem] = {}
    for pending in rounds:
        results.update(_run_items(pending, lambda item: store_item(item, repository, settings, execution_arn, now)))
    return next_state(state["requestId"], state["shape"], with_results(items, results))


def store_item(
    item: ValidatedItem,
    repository: MessageRepository,
    settings: Settings,
    execution_arn: str | None = None,
    now: datetime | None = None,
) -> StoredItem | AnsweredItem:
    """Store the content, then the head (PENDING, with RECEIVED): the head's put is the dedup point.

    `execution_arn` is the ingest run's (the machine passes $$.Execution.Id): RECEIVED names it, so
    `relay trace` can link the run.
    """
    key, request_id, content_hash = _key(item), item["requestId"], item["contentHash"]
    now = now or datetime.now(UTC)
    due = _due_entry(key, item["message"], now, settings)
    # A delayed message's expiry counts from its due time: it never expires before it is sent.
    ttl = (due.not_before if due else int(now.timestamp())) + settings.ttl_seconds

    note_activity(repository, key, now, settings)
    if not repository.put_content(key, item["message"], content_hash, ttl):
        head = repository.get_head(key)
        if head is not None:
            return {"response": _answer_existing(head, content_hash, key, request_id)}
        return {"response": conflict_response(key, request_id)}

    details = {"requestId": request_id, **({"executionArn": str(execution_arn)} if execution_arn else {})}
    received = Event(EventType.RECEIVED, now, 0, None, details)
    existing: MessageHead | None = None
    if not repository.create_head(key, content_hash, request_id, now, ttl, received, due):
        existing = repository.get_head(key)
        if existing is None:  # pragma: no cover - a head never disappears before its TTL
            return {"response": conflict_response(key, request_id)}
        if existing.accept_request_id != request_id:
            return {"response": _answer_existing(existing, content_hash, key, request_id)}
        # This very request stored it on an earlier try of this step: go on with what it stored.
    accepted_at = existing.accepted_at if existing else now
    stored_ttl = existing.ttl if existing else ttl
    # What enqueue needs, no more: every byte of the state is logged again by each later state.
    return {
        "requestId": request_id,
        "message": item["message"],
        "acceptedAt": iso(accepted_at),
        "expiresAt": iso(datetime.fromtimestamp(stored_ttl, UTC)),
    }


def not_before_of(message: Mapping[str, Any]) -> int | None:
    """A validated message's due time (epoch seconds), or None: send at once."""
    raw = message.get("notBefore")
    return int(datetime.fromisoformat(raw).timestamp()) if isinstance(raw, str) else None


def _due_entry(key: MessageKey, message: Mapping[str, Any], now: datetime, settings: Settings) -> DueEntry | None:
    """Where a delayed message waits: the scheduler's shards when its time is further than the queue
    can delay (due QUEUE_LEAD_SECONDS early), else the reconciler's, due a re-drive window after its
    time (the queue holds it until then; the reconciler re-drives it if that copy is lost)."""
    not_before = not_before_of(message)
    if not_before is None:
        return None
    if waits_in_scheduler(not_before, now.timestamp()):
        return DueEntry(not_before, key.scheduler_shard, not_before - QUEUE_LEAD_SECONDS)
    return DueEntry(not_before, key.due_shard, not_before + settings.redrive_after_seconds)


# -- Enqueue -------------------------------------------------------------------------------------------


def enqueue(
    state: ItemsState[StoredItem], repository: MessageRepository, queue: DeliveryQueue, now: datetime | None = None
) -> AnsweredState:
    """The stored messages' keys to the delivery queue (DeliveryQueue.send_keys); each taken one answered 202.

    ENQUEUED is recorded by the dispatcher's claim (with SQS's sent time), so the success path writes
    nothing here. A message SQS does not take stays stored PENDING: it is recorded as a failed enqueue
    (due now, so the reconciler re-drives it) and answered 500 SYSTEM_ERROR. When SQS takes none, the
    step fails with QueueUnavailable and the machine retries it; a repeat of the request also marks the
    message due (dedup).
    """
    now = now or datetime.now(UTC)
    items = list(state["items"])
    for index, item in open_items(items):
        if _scheduler_queues_it(item):
            items[index] = _enqueued(item)
    pending = open_items(items)
    queue_ids = _send(queue, [item for _, item in pending], now)
    for (index, item), queue_id in zip(pending, queue_ids, strict=True):
        if queue_id is None:
            record_enqueue_failed(item, state.get("executionArn"), repository, now)
            items[index] = {"response": error_response(500, SYSTEM_ERROR, SYSTEM_ERROR_MESSAGE, item["requestId"])}
    if pending and all(queue_id is None for queue_id in queue_ids):
        raise QueueUnavailable("SQS took none of the request's messages")
    answers = [item["response"] if "response" in item else _enqueued(item)["response"] for item in items]
    return answered_state(state["requestId"], state["shape"], answers)


def _scheduler_queues_it(item: StoredItem) -> bool:
    """A message due too far ahead for the queue's delay: the scheduler queues it (store put it in
    the scheduler's shards by the same rule)."""
    not_before = not_before_of(item["message"])
    accepted_at = datetime.fromisoformat(item["acceptedAt"]).timestamp()
    return not_before is not None and waits_in_scheduler(not_before, accepted_at)


def _send(queue: DeliveryQueue, items: list[StoredItem], now: datetime) -> list[str | None]:
    """The items' keys to the queue: the undelayed together (send_keys), a delayed one alone with
    the seconds that remain until its time."""
    ids: list[str | None] = [None] * len(items)
    undelayed = [position for position, item in enumerate(items) if not_before_of(item["message"]) is None]
    for position, queue_id in zip(undelayed, queue.send_keys([_key(items[p]) for p in undelayed]), strict=True):
        ids[position] = queue_id
    for position, item in enumerate(items):
        not_before = not_before_of(item["message"])
        if not_before is not None:
            try:
                ids[position] = queue.send(_key(item), delay_seconds=queue_delay(not_before, now.timestamp()))
            except QueueUnavailable as error:
                logger.warning("SQS did not accept the delayed message", extra={"error": str(error)})
    return ids


def _enqueued(item: StoredItem) -> AnsweredItem:
    """The queue took the message (or the scheduler will): answer 202."""
    key = _key(item)
    metrics.add_metric(name=Metric.ACCEPTED, unit=MetricUnit.Count, value=1)
    not_before = item["message"].get("notBefore")
    body = {
        "messageId": key.message_id,
        "senderId": key.sender_id,
        "status": (Status.SCHEDULED if not_before else Status.PENDING).value,
        "acceptedAt": item["acceptedAt"],
        "expiresAt": item["expiresAt"],
        **({"notBefore": not_before} if not_before else {}),
    }
    return {"response": http_response(202, body)}


def record_enqueue_failed(
    item: ValidatedItem | StoredItem, execution_arn: str | None, repository: MessageRepository, now: datetime
) -> None:
    """ENQUEUE_FAILED (once per request) and a due time of now, so the reconciler re-drives it."""
    failed = Event(EventType.ENQUEUE_FAILED, now, 0, None, {"executionArn": execution_arn} if execution_arn else {})
    try:
        repository.record_enqueue_failed(_key(item), failed, str(item["requestId"]), int(now.timestamp()))
    except RelayError:
        logger.exception("Could not record the failed enqueue")
