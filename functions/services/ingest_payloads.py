"""What the ingest steps hand each other, typed: parsed once in each step's handler, then passed on
as the very JSON the state machine carries.

    Validate's input (the machine's Parameters)   IngestRequest  {shape, requestId, senderId, bodyBase64}
    the state between the steps                    ItemsState     {requestId, shape, items: [...]}
      (StorePending and Enqueue also get the run's                   + executionArn
      $$.Execution.Id)
    one message, validated: to store               ValidatedItem  {requestId, message, contentHash}
    one message, stored: to enqueue                StoredItem     {requestId, message, acceptedAt, expiresAt}
    one message, answered                          AnsweredItem   {response}
    the whole request, answered                    AnsweredState  {requestId, response}
      (the machine's output is its `response`)

Why TypedDicts for the state and its items, and a dataclass for Validate's input: a step answers or
replaces items and hands the rest on untouched, so the state the machine logs and passes on stays
exactly the JSON it was, with no conversion to keep in step with it; Validate's input is read
field by field and never handed on. An item's `message` is the validated message itself
(functions/domain/validation.py normalises it), stored as it is.

A step works on the open items (open_items), each result in its place (with_results), and hands
on the next state: the items while one is open, else the request's answer (next_state).

A state the functions cannot read raises PayloadInvalid naming the field: the machine never hands
one over, and its Catch answers 500 SYSTEM_ERROR, as it does for any failed step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NotRequired, TypedDict, TypeVar, final

from functions.contract.request_shapes import RequestShape
from functions.domain.exceptions import PayloadInvalid
from functions.domain.model import MessageKey
from functions.services.http_api.responses import HttpAnswer, http_response


@final
class AnsweredItem(TypedDict):
    """A message with its answer: nothing else is kept of it, which keeps the state small."""

    response: HttpAnswer


@final
class ValidatedItem(TypedDict):
    """A message that passed validation, under its own request id (store tells a retry of its own
    write from a twin's by it)."""

    requestId: str
    message: dict[str, Any]
    contentHash: str


@final
class StoredItem(TypedDict):
    """A stored message: what Enqueue needs, no more (every byte of the state is logged again by
    each later state)."""

    requestId: str
    message: dict[str, Any]
    acceptedAt: str
    expiresAt: str


# The message not answered yet at a step: validated before StorePending, stored after it.
Open = TypeVar("Open", ValidatedItem, StoredItem)
# What a step makes of an open message: the message at its next step (or its answer).
Next = TypeVar("Next", ValidatedItem, StoredItem)


class ItemsState(TypedDict, Generic[Open]):
    """The request while some of its messages are not answered: one item per message, in order."""

    requestId: str
    shape: RequestShape
    items: list[Open | AnsweredItem]
    executionArn: NotRequired[str]  # the ingest run's: RECEIVED and ENQUEUE_FAILED name it


@final
class AnsweredState(TypedDict):
    """The request answered: the machine's Choice states skip to the end and answer `response`."""

    requestId: str
    response: HttpAnswer


@dataclass(frozen=True)
class IngestRequest:
    """Validate's input: the request as the API's mapping hands it to the machine."""

    shape: RequestShape
    request_id: str
    sender_id: str | None  # the authenticated sender; None without one
    body_base64: str | None  # the body's bytes as sent

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> IngestRequest:
        _check_object(event, "Validate's input")
        return cls(
            shape=_shape(event),
            request_id=str(event.get("requestId") or "unknown"),
            sender_id=_optional_text(event, "senderId"),
            body_base64=_optional_text(event, "bodyBase64"),
        )


def item_key(item: ValidatedItem | StoredItem) -> MessageKey:
    message = item["message"]
    return MessageKey(message["senderId"], message["messageId"])


def validated_state(event: Mapping[str, Any]) -> ItemsState[ValidatedItem]:
    """Dedup's and StorePending's input: the state Validate (or Dedup) answered."""
    return _items_state(event, _validated_item)


def stored_state(event: Mapping[str, Any]) -> ItemsState[StoredItem]:
    """Enqueue's input: the state StorePending answered."""
    return _items_state(event, _stored_item)


# -- a step's results, the next state ------------------------------------------------------------


def open_items(items: Sequence[Open | AnsweredItem]) -> list[tuple[int, Open]]:
    """The items not answered yet, with their places."""
    return [(index, item) for index, item in enumerate(items) if "response" not in item]


def answer_only(item: Next | AnsweredItem) -> Next | AnsweredItem:
    """An item once it has its answer: the answer only (whatever else the step's result held)."""
    return {"response": item["response"]} if "response" in item else item


def with_results(
    items: Sequence[Open | AnsweredItem], results: Mapping[int, Next | AnsweredItem]
) -> list[Next | AnsweredItem]:
    """The items, each open one replaced by its result (a step has one for every open item)."""
    return [item if "response" in item else results[index] for index, item in enumerate(items)]


def next_state(
    request_id: str, shape: RequestShape, items: list[Next | AnsweredItem]
) -> ItemsState[Next] | AnsweredState:
    """The state the next step gets; the request's answer once no item is left to work on."""
    answers = [item["response"] for item in items if "response" in item]
    if len(answers) < len(items):
        return {"requestId": request_id, "shape": shape, "items": items}
    return answered_state(request_id, shape, answers)


def answered_state(request_id: str, shape: RequestShape, answers: list[HttpAnswer]) -> AnsweredState:
    """The request's answer: a batch's every answer, in order; a single message's own."""
    if shape is RequestShape.BATCH:
        return {"requestId": request_id, "response": batch_response(answers)}
    (answer,) = answers
    return {"requestId": request_id, "response": answer}


def batch_response(answers: list[HttpAnswer]) -> HttpAnswer:
    """200 with one result per message, in order: the status code and body POST /messages gives."""
    results = [{"statusCode": answer["statusCode"], "body": json.loads(answer["body"])} for answer in answers]
    return http_response(200, {"results": results})


# -- reading a state -----------------------------------------------------------------------------


def _items_state(event: Mapping[str, Any], open_item: Callable[[Mapping[str, Any]], Open]) -> ItemsState[Open]:
    _check_object(event, "an ingest step's input")
    items = event.get("items")
    if not isinstance(items, list) or not items:
        raise PayloadInvalid("items must be a non-empty list of the request's messages")
    state: ItemsState[Open] = {
        "requestId": _text(event, "requestId"),
        "shape": _shape(event),
        "items": [_item(item, open_item) for item in items],
    }
    if event.get("executionArn") is not None:
        state["executionArn"] = _text(event, "executionArn")
    return state


def _item(raw: Any, open_item: Callable[[Mapping[str, Any]], Open]) -> Open | AnsweredItem:
    _check_object(raw, "an item")
    if "response" not in raw:
        return open_item(raw)
    answer = raw["response"]
    _check_object(answer, "an item's response")
    if not isinstance(answer.get("statusCode"), int) or not isinstance(answer.get("body"), str):
        raise PayloadInvalid("an item's response must be {statusCode: int, body: str}")
    return {"response": {"statusCode": answer["statusCode"], "body": answer["body"]}}


def _validated_item(raw: Mapping[str, Any]) -> ValidatedItem:
    return {"requestId": _text(raw, "requestId"), "message": _message(raw), "contentHash": _text(raw, "contentHash")}


def _stored_item(raw: Mapping[str, Any]) -> StoredItem:
    return {
        "requestId": _text(raw, "requestId"),
        "message": _message(raw),
        "acceptedAt": _text(raw, "acceptedAt"),
        "expiresAt": _text(raw, "expiresAt"),
    }


def _message(raw: Mapping[str, Any]) -> dict[str, Any]:
    message = raw.get("message")
    if not isinstance(message, dict):
        raise PayloadInvalid(f"an item's message must be a JSON object, not {type(message).__name__}")
    _text(message, "senderId")
    _text(message, "messageId")
    return message


def _check_object(value: Any, what: str) -> None:
    if not isinstance(value, Mapping):
        raise PayloadInvalid(f"{what} must be a JSON object, not {type(value).__name__}")


def _shape(event: Mapping[str, Any]) -> RequestShape:
    value = event.get("shape")
    if isinstance(value, str) and value in {shape.value for shape in RequestShape}:
        return RequestShape(value)
    raise PayloadInvalid(f"shape must be one of {', '.join(RequestShape)}, not {value!r}"[:200])


def _text(event: Mapping[str, Any], name: str) -> str:
    """A required non-empty string field."""
    value = event.get(name)
    if not isinstance(value, str) or not value:
        raise PayloadInvalid(f"{name} must be a non-empty string, not {value!r}"[:200])
    return value


def _optional_text(event: Mapping[str, Any], name: str) -> str | None:
    """A string field that may be absent, null or empty (None)."""
    value = event.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadInvalid(f"{name} must be a string, not {type(value).__name__}")
    return value
