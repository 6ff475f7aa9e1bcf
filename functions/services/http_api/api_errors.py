"""Domain exceptions mapped to API errors, in one place, for every resolver-based handler."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

from functions.adapters.observability import logger
from functions.domain.exceptions import (
    FieldDetail,
    MessageExpired,
    MessageFinished,
    MessageInvalid,
    MessageNotFinished,
    MessageNotFound,
    NotificationsNotSet,
    RelayError,
    ReplayJobNotFound,
    ScheduleNotFound,
    TargetNotFound,
)
from functions.services.http_api.responses import SYSTEM_ERROR, VALIDATION_ERROR, ErrorBody, api_error

# exception class -> (HTTP status, error code)
ERROR_CODES: dict[type[Exception], tuple[int, str]] = {
    MessageInvalid: (400, VALIDATION_ERROR),
    PermissionError: (403, "FORBIDDEN"),
    MessageNotFound: (404, "MESSAGE_NOT_FOUND"),
    MessageNotFinished: (409, "MESSAGE_NOT_FINISHED"),
    MessageFinished: (409, "MESSAGE_ALREADY_FINISHED"),
    MessageExpired: (409, "MESSAGE_EXPIRED"),
    ReplayJobNotFound: (404, "REPLAY_NOT_FOUND"),
    TargetNotFound: (404, "TARGET_NOT_FOUND"),
    ScheduleNotFound: (404, "SCHEDULE_NOT_FOUND"),
    NotificationsNotSet: (404, "NOTIFICATIONS_NOT_SET"),
}


def _error(
    app: APIGatewayRestResolver, status: int, code: str, message: str, details: list[FieldDetail] | None = None
) -> Response[ErrorBody]:
    body: ErrorBody = {"error": api_error(code, message, app.current_event.request_context.request_id, details)}
    return Response(status_code=status, content_type="application/json", body=body)


def register_error_handlers(app: APIGatewayRestResolver) -> None:
    for exception_type, (status, code) in ERROR_CODES.items():

        def handle(error: Exception, _status: int = status, _code: str = code) -> Response[ErrorBody]:
            details = [d.to_dict() for d in error.details] if isinstance(error, MessageInvalid) else None
            message = str(error) if isinstance(error, RelayError) else "Not allowed."
            return _error(app, _status, _code, message, details)

        app.exception_handler(exception_type)(handle)

    @app.exception_handler(Exception)
    def unexpected(error: Exception) -> Response[ErrorBody]:
        # No stack trace or AWS text reaches a caller; the log keeps them.
        logger.exception("Unhandled error")
        return _error(app, 500, SYSTEM_ERROR, "Relay could not process the request.")

    @app.not_found
    def not_found(_: Exception) -> Response[ErrorBody]:
        return _error(app, 404, "NOT_FOUND", "No such route.")
