"""What a caller receives when Relay refuses a request: status code and error body shape.

Every error body is `{"error": {"code", "message", "requestId", "details"?}}` (DESIGN.md, API),
with no stack traces and no internal error text.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.domain.exceptions import (
    FieldError,
    MalformedRequest,
    MessageInvalid,
    MessageNotFound,
    PayloadTooLarge,
    QueueUnavailable,
    RelayError,
    SenderMismatch,
    StorageError,
    StorageUnavailable,
)
from functions.services.http_api.responses import (
    FORBIDDEN,
    PAYLOAD_TOO_LARGE,
    SYSTEM_ERROR,
    VALIDATION_ERROR,
    error_response,
    http_response,
    response_for_rejection,
)

REQUEST_ID = "req-0123"


def answer(error: RelayError) -> tuple[int, dict[str, Any]]:
    response = response_for_rejection(error, REQUEST_ID)
    assert set(response) == {"statusCode", "body"}
    assert isinstance(response["body"], str)
    body = json.loads(response["body"])
    assert set(body) == {"error"}, "the only top-level key of an error body is 'error'"
    return response["statusCode"], body["error"]


@pytest.mark.parametrize(
    ("error", "status", "code", "details"),
    [
        (
            MessageInvalid([FieldError("$.messageId", "'messageId' is required"), FieldError("$.x", "bad")]),
            400,
            VALIDATION_ERROR,
            [
                {"path": "$.messageId", "message": "'messageId' is required"},
                {"path": "$.x", "message": "bad"},
            ],
        ),
        (
            MalformedRequest("The request body is not valid UTF-8."),
            400,
            VALIDATION_ERROR,
            [{"path": "$", "message": "The request body is not valid UTF-8."}],
        ),
        (
            PayloadTooLarge("$.body", "The body is 11 bytes; the limit is 10."),
            413,
            PAYLOAD_TOO_LARGE,
            [{"path": "$.body", "message": "The body is 11 bytes; the limit is 10."}],
        ),
        (
            PayloadTooLarge("$", "The request is 200000 bytes; the limit is 131072."),
            413,
            PAYLOAD_TOO_LARGE,
            [{"path": "$", "message": "The request is 200000 bytes; the limit is 131072."}],
        ),
        (
            SenderMismatch("senderId does not match the authenticated sender."),
            403,
            FORBIDDEN,
            [{"path": "$.senderId", "message": "senderId does not match the authenticated sender."}],
        ),
    ],
    ids=["invalid", "malformed", "body-too-large", "request-too-large", "sender-mismatch"],
)
def test_given_a_rejection_when_answered_then_status_code_and_body_shape_match_the_contract(
    error: RelayError, status: int, code: str, details: list[dict[str, str]]
) -> None:
    # Given a domain rejection / When it is turned into the API answer
    status_code, body = answer(error)
    # Then the status, code, message, request id and details are as the contract says
    assert status_code == status
    assert body == {"code": code, "message": str(error), "requestId": REQUEST_ID, "details": details}


def test_given_a_message_invalid_without_details_when_answered_then_details_is_omitted() -> None:
    status_code, body = answer(MessageInvalid([]))
    assert status_code == 400
    assert body == {"code": VALIDATION_ERROR, "message": "The message is invalid.", "requestId": REQUEST_ID}


@pytest.mark.parametrize(
    "error",
    [
        StorageUnavailable("ProvisionedThroughputExceededException: arn:aws:dynamodb:eu-west-1:123:table/relay"),
        StorageError("ValidationException: secret internals"),
        QueueUnavailable("SQS did not accept the message (AccessDenied)"),
        MessageNotFound("MSG#s#m"),
        RelayError("Traceback (most recent call last): ..."),
    ],
)
def test_given_an_error_that_is_not_a_rejection_when_answered_then_500_without_internal_text(
    error: RelayError,
) -> None:
    # Given an internal error / When answered
    status_code, body = answer(error)
    # Then a 500 SYSTEM_ERROR with the request id, and nothing of the internal message leaks
    assert status_code == 500
    assert body == {
        "code": SYSTEM_ERROR,
        "message": "Relay could not process the request.",
        "requestId": REQUEST_ID,
    }
    assert str(error) not in json.dumps(body)


def test_given_non_ascii_text_when_answered_then_the_body_is_compact_utf8_json() -> None:
    response = response_for_rejection(MessageInvalid([FieldError("$.headers['X-Ünï']", "café ✓")]), REQUEST_ID)
    assert "café ✓" in response["body"], "non-ASCII is kept readable (ensure_ascii=False)"
    assert ": " not in response["body"] and ", " not in response["body"].replace("café ✓", "")
    assert json.loads(response["body"].encode("utf-8"))["error"]["details"][0]["message"] == "café ✓"


def test_given_an_error_response_when_built_directly_then_empty_details_are_left_out() -> None:
    response = error_response(409, "MESSAGE_ID_CONFLICT", "Already accepted.", REQUEST_ID, details=[])
    assert response["statusCode"] == 409
    assert json.loads(response["body"]) == {
        "error": {"code": "MESSAGE_ID_CONFLICT", "message": "Already accepted.", "requestId": REQUEST_ID}
    }


def test_given_a_success_body_when_built_then_it_is_passed_through_as_json_text() -> None:
    response = http_response(202, {"messageId": "m-1", "status": "PENDING"})
    assert response == {"statusCode": 202, "body": '{"messageId":"m-1","status":"PENDING"}'}
