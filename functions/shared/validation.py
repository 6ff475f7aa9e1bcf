"""Message validation: the JSON Schema in `schemas/` plus the rules a schema cannot express.

Every problem found is reported with its JSON path, all at once, so a sender fixes a message in
one round trip.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from functions.shared.config import Settings, message_schema
from functions.shared.exceptions import (
    FieldError,
    MalformedRequest,
    MessageInvalid,
    PayloadTooLarge,
    SenderMismatch,
)
from functions.shared.url_safety import UnsafeTarget, parse_target_url

HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
RESERVED_HEADERS = HOP_BY_HOP_HEADERS | {"host", "content-length"}
RESERVED_HEADER_PREFIX = "webhook-"
METHODS_WITHOUT_BODY = frozenset({"GET", "HEAD"})
# The request envelope may exceed the body limit by this much (ids, URL, headers, JSON quoting).
ENVELOPE_ALLOWANCE_BYTES = 64 * 1024


@dataclass(frozen=True)
class ValidMessage:
    """A message that passed every rule, normalised: `body` is the exact bytes-to-be as text."""

    message: dict[str, Any]
    content_hash: str

    @property
    def sender_id(self) -> str:
        return str(self.message["senderId"])

    @property
    def message_id(self) -> str:
        return str(self.message["messageId"])


@lru_cache(maxsize=1)
def _schema_validator() -> Draft202012Validator:
    schema = message_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def decode_request_body(body_base64: str | None, settings: Settings) -> Any:
    """Turn the raw request body (base64 of the bytes the client sent) into a JSON value."""
    if not body_base64:
        raise MalformedRequest("The request body is empty; send the message as a JSON object.")
    try:
        raw = base64.b64decode(body_base64, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRequest("The request body could not be decoded.") from None
    if len(raw) > settings.max_body_bytes + ENVELOPE_ALLOWANCE_BYTES:
        raise PayloadTooLarge(
            "$", f"The request is {len(raw)} bytes; the limit is {settings.max_body_bytes + ENVELOPE_ALLOWANCE_BYTES}."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("The request body is not valid UTF-8.") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise MalformedRequest("The request body is nested too deeply.") from None
    except json.JSONDecodeError as error:
        raise MalformedRequest(f"The request body is not valid JSON: {error.msg} at position {error.pos}.") from None


def _schema_errors(document: Any) -> list[FieldError]:
    details: list[FieldError] = []
    errors = sorted(_schema_validator().iter_errors(document), key=lambda e: (list(e.absolute_path), e.message))
    for error in errors:
        details.extend(_describe_schema_error(error))
    return details


def _describe_schema_error(error: ValidationError) -> list[FieldError]:
    path = error.json_path
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return [FieldError(f"{path}.{name}", f"'{name}' is required") for name in missing]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(name for name in error.instance if name not in allowed)
        return [FieldError(f"{path}.{name}", f"'{name}' is not a known field") for name in extra]
    if "propertyNames" in error.schema_path:
        return [FieldError(f"{path}.{error.instance}", "is not a valid HTTP header name")]
    if error.validator == "pattern" and path == "$.targetUrl":
        return [FieldError(path, "must be an absolute http:// or https:// URL")]
    if error.validator == "pattern" and path.endswith(("messageId", "senderId")):
        return [FieldError(path, "must use only letters, digits and . _ : -")]
    if error.validator == "pattern" and ".headers" in path:
        return [FieldError(path, "header values must not contain CR, LF or NUL")]
    if error.validator == "type" and path == "$":
        return [FieldError("$", "the message must be a JSON object")]
    if error.validator == "format" and path.endswith("timestamp"):
        return [FieldError(path, "must be an RFC 3339 date-time with a time zone, e.g. 2026-01-31T12:00:00Z")]
    message = error.message
    if len(message) > 200:
        message = message[:200] + "..."
    return [FieldError(path, message)]


def _serialise_body(body: Any) -> str:
    if isinstance(body, str):
        return body
    # JSON bodies are serialised once, compactly; the text is sent byte-exact from then on.
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def _header_errors(headers: dict[str, str], settings: Settings) -> list[FieldError]:
    details: list[FieldError] = []
    seen: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        path = f"$.headers.{name}"
        if lowered in RESERVED_HEADERS:
            details.append(FieldError(path, f"'{name}' is set by the relay and cannot be given"))
        elif lowered.startswith(RESERVED_HEADER_PREFIX):
            details.append(FieldError(path, "webhook-* headers are reserved for the relay's signature"))
        if lowered in seen:
            details.append(FieldError(path, f"duplicates header '{seen[lowered]}' (names are case-insensitive)"))
        seen[lowered] = name
        if isinstance(value, str) and any(not ch.isprintable() and ch != "\t" for ch in value):
            details.append(FieldError(path, "header values must be printable text"))
    if len(headers) > settings.max_header_count:
        details.append(FieldError("$.headers", f"has {len(headers)} headers; the limit is {settings.max_header_count}"))
    total = sum(len(name.encode()) + len(str(value).encode()) + 4 for name, value in headers.items())
    if total > settings.max_header_bytes:
        details.append(FieldError("$.headers", f"are {total} bytes in all; the limit is {settings.max_header_bytes}"))
    return details


def _timestamp_errors(raw: str, settings: Settings, now: datetime) -> list[FieldError]:
    try:
        stamp = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        return [FieldError("$.timestamp", "must be an RFC 3339 date-time with a time zone")]
    if stamp.tzinfo is None:
        return [FieldError("$.timestamp", "must include a time zone offset, e.g. Z or +02:00")]
    if stamp > now + timedelta(seconds=settings.max_future_skew_seconds):
        return [
            FieldError(
                "$.timestamp", f"is more than {settings.max_future_skew_seconds} seconds in the future"
            )
        ]
    if stamp < now - timedelta(days=settings.ttl_days):
        return [FieldError("$.timestamp", f"is older than the retention of {settings.ttl_days} days")]
    return []


def content_hash(message: dict[str, Any]) -> str:
    """Hash of what is delivered: two submissions of one id with equal hashes are the same message."""
    content = {key: value for key, value in message.items() if key not in ("messageId", "senderId")}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def validate_message(
    document: Any,
    settings: Settings,
    authenticated_sender_id: str | None = None,
    now: datetime | None = None,
) -> ValidMessage:
    """Check a decoded request against the schema and Relay's semantic rules.

    `authenticated_sender_id` is the seam for authentication: when the caller is known, the body's
    senderId must name it.
    """
    now = now or datetime.now(UTC)
    details = _schema_errors(document)
    if not isinstance(document, dict):
        raise MessageInvalid(details)
    failed_paths = {detail.path for detail in details}

    target = document.get("targetUrl")
    if isinstance(target, str) and "$.targetUrl" not in failed_paths:
        try:
            parse_target_url(target, allow_private=settings.allow_private_targets)
        except UnsafeTarget as error:
            details.append(FieldError("$.targetUrl", f"targetUrl {error}"))
    timestamp = document.get("timestamp")
    if isinstance(timestamp, str) and "$.timestamp" not in failed_paths:
        details.extend(_timestamp_errors(timestamp, settings, now))
    headers = document.get("headers")
    if isinstance(headers, dict):
        details.extend(_header_errors(headers, settings))
    method = document.get("method", "POST")
    if "body" in document and method in METHODS_WITHOUT_BODY:
        details.append(FieldError("$.body", f"must be absent when method is {method}"))

    body_text: str | None = None
    if "body" in document and isinstance(document["body"], (str, dict, list)):
        try:
            body_text = _serialise_body(document["body"])
        except (RecursionError, ValueError):
            details.append(FieldError("$.body", "could not be serialised as JSON"))
    if details:
        raise MessageInvalid(details)
    if body_text is not None:
        size = len(body_text.encode("utf-8"))
        if size > settings.max_body_bytes:
            raise PayloadTooLarge("$.body", f"The body is {size} bytes; the limit is {settings.max_body_bytes}.")

    sender_id = document["senderId"]
    if authenticated_sender_id is not None and sender_id != authenticated_sender_id:
        raise SenderMismatch("senderId does not match the authenticated sender.")

    message: dict[str, Any] = {
        "messageId": document["messageId"],
        "senderId": sender_id,
        "timestamp": document["timestamp"],
        "targetUrl": document["targetUrl"],
        "method": method,
    }
    message_headers = dict(headers) if isinstance(headers, dict) else {}
    if body_text is not None and not isinstance(document["body"], str):
        if not any(name.lower() == "content-type" for name in message_headers):
            message_headers["Content-Type"] = "application/json"
    if message_headers:
        message["headers"] = message_headers
    if body_text is not None:
        message["body"] = body_text
    return ValidMessage(message=message, content_hash=content_hash(message))
