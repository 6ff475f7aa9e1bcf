"""HTTP answers of the API, shaped in one place.

State machines return `{"statusCode": int, "body": str}`; API Gateway and the local server pass
it through unchanged. Every error body is `{"error": {"code", "message", "requestId", "details"?}}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import NotRequired, TypedDict

from functions.domain.exceptions import (
    FieldDetail,
    FieldError,
    MalformedRequest,
    MessageInvalid,
    PayloadTooLarge,
    RelayError,
    SenderMismatch,
)

VALIDATION_ERROR = "VALIDATION_ERROR"
MESSAGE_ID_CONFLICT = "MESSAGE_ID_CONFLICT"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
FORBIDDEN = "FORBIDDEN"
SYSTEM_ERROR = "SYSTEM_ERROR"
# What a request that met a fault of Relay is told (the API's mappings and the state machines say
# the same; statemachines/*.asl.json cannot import it, tests/infrastructure checks they agree).
SYSTEM_ERROR_MESSAGE = "Relay could not process the request; it is safe to retry with the same messageId."


class HttpAnswer(TypedDict):
    """An answer as a state machine (and the local server) gives it: the body is JSON text."""

    statusCode: int
    body: str


class ApiError(TypedDict):
    """What an error body's `error` holds (the body is `{"error": ApiError}`)."""

    code: str
    message: str
    requestId: str
    details: NotRequired[list[FieldDetail]]


class ErrorBody(TypedDict):
    error: ApiError


def http_response(status_code: int, body: Mapping[str, object]) -> HttpAnswer:
    return {"statusCode": status_code, "body": json.dumps(body, separators=(",", ":"), ensure_ascii=False)}


def api_error(code: str, message: str, request_id: str, details: list[FieldDetail] | None = None) -> ApiError:
    """An error body's `error`; `details` only when there are some."""
    error: ApiError = {"code": code, "message": message, "requestId": request_id}
    if details:
        error["details"] = details
    return error


def error_response(
    status_code: int,
    code: str,
    message: str,
    request_id: str,
    details: list[FieldError] | None = None,
) -> HttpAnswer:
    body: ErrorBody = {"error": api_error(code, message, request_id, [detail.to_dict() for detail in details or ()])}
    return http_response(status_code, body)


def response_for_rejection(error: RelayError, request_id: str) -> HttpAnswer:
    """Map a domain rejection of the request to its API answer."""
    if isinstance(error, MessageInvalid):
        return error_response(400, VALIDATION_ERROR, str(error), request_id, error.details)
    if isinstance(error, MalformedRequest):
        return error_response(400, VALIDATION_ERROR, str(error), request_id, [FieldError("$", str(error))])
    if isinstance(error, PayloadTooLarge):
        return error_response(413, PAYLOAD_TOO_LARGE, str(error), request_id, [FieldError(error.path, str(error))])
    if isinstance(error, SenderMismatch):
        return error_response(403, FORBIDDEN, str(error), request_id, [FieldError("$.senderId", str(error))])
    return error_response(500, SYSTEM_ERROR, "Relay could not process the request.", request_id)
