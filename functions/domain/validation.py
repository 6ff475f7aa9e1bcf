"""Message validation: the JSON Schema in `schemas/` plus the rules a schema cannot express.

Every problem found is reported with its JSON path, all at once, so a sender fixes a message in
one round trip.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError

from functions.domain.callbacks import CALLBACK_FIELDS, callback_errors
from functions.domain.config import Settings, message_schema
from functions.domain.exceptions import (
    FieldError,
    MalformedRequest,
    MessageInvalid,
    PayloadTooLarge,
    SenderMismatch,
)
from functions.domain.web.json_text import FIELD_DEPTH, json_path, loads_strict
from functions.domain.web.url_safety import UnsafeTarget, parse_target_url

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
# A message's own delivery options: stored with its content, part of its fingerprint.
DELIVERY_OPTIONS = ("retry", "timeoutSeconds", *CALLBACK_FIELDS)
# The request envelope may exceed the body limit by this much (ids, URL, headers, JSON quoting).
ENVELOPE_ALLOWANCE_BYTES = 64 * 1024
# POST /messages/batch: at most this many messages, in a request small enough that its base64 text
# (how API Gateway forwards it) plus 1 KiB of input around it stays within Step Functions' 256 KiB
# execution input (stacks/settings.py forwards at most that much; tests/infrastructure checks it).
MAX_BATCH_MESSAGES = 100
MAX_BATCH_REQUEST_BYTES = (256 * 1024 - 1024) // 4 * 3 - 1
# The longest delay: a year (delaySeconds' schema maximum; notBefore at most this far ahead).
MAX_DELAY_SECONDS = 31_536_000
# An error answer names at most this many problems, each path and message cut to this length.
MAX_DETAILS = 50
MAX_DETAIL_CHARS = 300


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


@lru_cache(maxsize=64)
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    # JSON Schema patterns are ECMA-262 regexes, where `$` (without the m flag) matches only at the
    # end of the input. Python's `$` also matches before a final newline, so "id\n" would pass
    # "^[A-Za-z0-9._:-]+$" and a header name "X-A\n" would pass the header-name pattern.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_MessageValidator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


@lru_cache(maxsize=1)
def _schema_validator() -> Any:
    schema = message_schema()
    Draft202012Validator.check_schema(schema)
    return _MessageValidator(schema, format_checker=FormatChecker(formats=("date-time", "uri")))


def decode_request_body(
    body_base64: str | None, settings: Settings, max_bytes: int | None = None, field_depth: int = FIELD_DEPTH
) -> Any:
    """Turn the raw request body (base64 of the bytes the client sent) into a JSON value.

    `max_bytes` is the request's limit (default: one message, its body limit plus the envelope);
    `field_depth` where its fields are, for the nesting limit (json_text.MAX_NESTING_DEPTH).
    """
    if not body_base64:
        raise MalformedRequest("The request body is empty; send the message as a JSON object.")
    try:
        raw = base64.b64decode(body_base64, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRequest("The request body could not be decoded.") from None
    limit = settings.max_body_bytes + ENVELOPE_ALLOWANCE_BYTES if max_bytes is None else max_bytes
    if len(raw) > limit:
        raise PayloadTooLarge("$", f"The request is {len(raw)} bytes; the limit is {limit}.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequest("The request body is not valid UTF-8.") from None
    try:
        return loads_strict(text, field_depth)
    except json.JSONDecodeError as error:
        raise MalformedRequest(f"The request body is not valid JSON: {error.msg} at position {error.pos}.") from None
    except ValueError as error:
        # NaN/Infinity (not JSON), or an integer over Python's digit limit. (Nesting deeper than
        # MAX_NESTING_DEPTH is MessageInvalid naming the field, raised by loads_strict.)
        raise MalformedRequest(f"The request body is not valid JSON: {error}") from None


def _schema_errors(errors: list[ValidationError]) -> list[FieldError]:
    details: list[FieldError] = []
    seen: set[FieldError] = set()
    for error in sorted(errors, key=lambda e: (list(e.absolute_path), e.message)):
        for detail in _describe_schema_error(error):
            # jsonschema reports each missing property as its own `required` error; name each once.
            if detail not in seen:
                seen.add(detail)
                details.append(detail)
    return details


def schema_field_errors(errors: list[ValidationError]) -> list[FieldError]:
    """Field errors of any of Relay's request schemas, worded as the message schema's are."""
    return _schema_errors(errors)


def _describe_schema_error(error: ValidationError) -> list[FieldError]:
    path = error.json_path
    parent = list(error.absolute_path)
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return [FieldError(json_path(*parent, name), f"'{name}' is required") for name in missing]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(name for name in error.instance if name not in allowed)
        return [FieldError(json_path(*parent, name), f"'{name}' is not a known field") for name in extra]
    if "propertyNames" in error.schema_path:
        return [FieldError(json_path(*parent, str(error.instance)), "is not a valid HTTP header name")]
    if error.validator == "pattern" and path == "$.targetUrl":
        return [FieldError(path, "must be an absolute http:// or https:// URL")]
    if error.validator == "format" and path == "$.targetUrl":
        return [FieldError(path, "must be a valid URI (RFC 3986); percent-encode spaces and non-ASCII text")]
    if error.validator == "minLength" and isinstance(error.instance, str):
        if error.validator_value == 1:
            return [FieldError(path, "must not be empty")]
        return [FieldError(path, f"must be at least {error.validator_value} characters long")]
    if error.validator == "maxLength" and isinstance(error.instance, str):
        return [FieldError(path, f"is {len(error.instance)} characters long; the limit is {error.validator_value}")]
    if error.validator == "pattern" and path.endswith(("messageId", "senderId")):
        # An empty id is reported once, by minLength ("must not be empty").
        return [FieldError(path, "must use only letters, digits and . _ : -")] if error.instance else []
    if error.validator == "pattern" and ".headers" in path:
        return [FieldError(path, "header values must not contain CR, LF or NUL")]
    if error.validator == "type" and path == "$":
        return [FieldError("$", "the message must be a JSON object")]
    if error.validator == "format" and path.endswith(("timestamp", "notBefore")):
        return [FieldError(path, "must be an RFC 3339 date-time with a time zone, e.g. 2026-01-31T12:00:00Z")]
    message = error.message
    if len(message) > 200:
        message = message[:200] + "..."
    return [FieldError(path, message)]


def _serialise_body(body: Any) -> str:
    if isinstance(body, str):
        return body
    # JSON bodies are serialised once, compactly; the text is sent byte-exact from then on.
    # allow_nan=False: NaN and Infinity are not JSON, and the body goes out as application/json.
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


_CR_LF_NUL = frozenset("\r\n\x00")


def _sendable(details: list[FieldError]) -> list[FieldError]:
    """Details an error response can carry: at most MAX_DETAILS of them, each path and message cut
    to MAX_DETAIL_CHARS (a request may name thousands of unknown fields, or one 100 KB field name),
    and UTF-8-encodable (a lone surrogate in a quoted name becomes the escape \\ud800)."""

    def clean(text: str) -> str:
        if len(text) > MAX_DETAIL_CHARS:
            text = text[:MAX_DETAIL_CHARS] + "..."
        return text if _is_unicode_text(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")

    cleaned = [FieldError(clean(detail.path), clean(detail.message)) for detail in details[:MAX_DETAILS]]
    if len(details) > MAX_DETAILS:
        cleaned[-1] = FieldError("$", f"and {len(details) - MAX_DETAILS + 1} more problems")
    return cleaned


def _utf8_size(text: str) -> int:
    # surrogatepass: a lone surrogate (JSON allows the escape "\ud800") must not crash the count;
    # such text is rejected on its own.
    return len(text.encode("utf-8", "surrogatepass"))


def _is_unicode_text(text: str) -> bool:
    """False when `text` holds a lone surrogate, which has no UTF-8 form and cannot be sent."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _header_errors(headers: dict[str, Any], settings: Settings) -> list[FieldError]:
    details: list[FieldError] = []
    seen: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        path = json_path("headers", name)
        if lowered in RESERVED_HEADERS:
            details.append(FieldError(path, f"'{name}' is set by the relay and cannot be given"))
        elif lowered.startswith(RESERVED_HEADER_PREFIX):
            details.append(FieldError(path, "webhook-* headers are reserved for the relay's signature"))
        if lowered in seen:
            details.append(FieldError(path, f"duplicates header '{seen[lowered]}' (names are case-insensitive)"))
        seen[lowered] = name
        # CR, LF and NUL are reported by the schema; this catches the other control characters.
        if (
            isinstance(value, str)
            and not _CR_LF_NUL.intersection(value)
            and any(not ch.isprintable() and ch != "\t" for ch in value)
        ):
            details.append(FieldError(path, "header values must be printable text"))
    if len(headers) > settings.max_header_count:
        details.append(FieldError("$.headers", f"has {len(headers)} headers; the limit is {settings.max_header_count}"))
    total = sum(_utf8_size(name) + _utf8_size(str(value)) + 4 for name, value in headers.items())
    if total > settings.max_header_bytes:
        details.append(FieldError("$.headers", f"are {total} bytes in all; the limit is {settings.max_header_bytes}"))
    return details


def _delivery_option_errors(document: dict[str, Any], settings: Settings, failed: set[str]) -> list[FieldError]:
    """The deployment's bounds on a message's own retry budget and timeout (the schema has fixed ones)."""
    details: list[FieldError] = []
    retry = document.get("retry")
    attempts = retry.get("maxAttempts") if isinstance(retry, dict) else None
    path = "$.retry.maxAttempts"
    most = settings.max_attempts
    if isinstance(attempts, int) and path not in failed and most and attempts > most:
        details.append(FieldError(path, f"is {attempts}; this deployment makes at most {most} attempts"))
    timeout = document.get("timeoutSeconds")
    path = "$.timeoutSeconds"
    if isinstance(timeout, int) and path not in failed and timeout > settings.total_timeout_seconds:
        limit = f"{settings.total_timeout_seconds:g}"
        details.append(FieldError(path, f"is {timeout}; the limit is {limit} seconds (totalTimeoutSeconds)"))
    return details


def _timestamp_errors(raw: str, settings: Settings, now: datetime) -> list[FieldError]:
    try:
        stamp = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        return [FieldError("$.timestamp", "must be an RFC 3339 date-time with a time zone")]
    if stamp.tzinfo is None:
        return [FieldError("$.timestamp", "must include a time zone offset, e.g. Z or +02:00")]
    if stamp > now + timedelta(seconds=settings.max_future_skew_seconds):
        return [FieldError("$.timestamp", f"is more than {settings.max_future_skew_seconds} seconds in the future")]
    if stamp < now - timedelta(days=settings.ttl_days):
        return [FieldError("$.timestamp", f"is older than the retention of {settings.ttl_days} days")]
    return []


def _parse_not_before(raw: str) -> datetime | None:
    try:
        stamp = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else None


def _due_time_errors(document: dict[str, Any], failed: set[str], now: datetime) -> list[FieldError]:
    """A delay is `delaySeconds` or `notBefore`, never both; a due time at most a year ahead."""
    if "delaySeconds" in document and "notBefore" in document:
        reason = "give either delaySeconds or notBefore, not both"
        return [FieldError("$.delaySeconds", reason), FieldError("$.notBefore", reason)]
    raw = document.get("notBefore")
    if not isinstance(raw, str) or "$.notBefore" in failed:
        return []
    stamp = _parse_not_before(raw)
    if stamp is None:
        return [
            FieldError("$.notBefore", "must be an RFC 3339 date-time with a time zone, e.g. 2026-12-24T09:00:00+01:00")
        ]
    if stamp > now + timedelta(seconds=MAX_DELAY_SECONDS):
        return [FieldError("$.notBefore", f"is more than a year ({MAX_DELAY_SECONDS} seconds) ahead")]
    return []


def due_time(document: dict[str, Any], now: datetime) -> datetime | None:
    """The one absolute due time of a valid message (UTC, whole seconds up), or None to send at once.

    Decided once, at acceptance, and kept in the message as `notBefore`, so a retried ingest step
    decides the same. A time in the past means now."""
    if isinstance(document.get("delaySeconds"), int) and document["delaySeconds"] > 0:
        due = now + timedelta(seconds=document["delaySeconds"])
    elif isinstance(document.get("notBefore"), str) and (stamp := _parse_not_before(document["notBefore"])):
        due = stamp
    else:
        return None
    if due <= now:
        return None
    # Whole seconds, rounded up: never earlier than asked.
    whole = due.replace(microsecond=0)
    return (whole if whole == due else whole + timedelta(seconds=1)).astimezone(UTC)


def content_hash(message: dict[str, Any]) -> str:
    """Fingerprint of the request to deliver; equal fingerprints answer `200 duplicate`.

    Two submissions of one (senderId, messageId) are the same message when they would deliver the
    same HTTP request. `timestamp` is not part of it: it says when the sender sent, is never
    delivered, and clients re-stamp it when they retry. The ids are the key itself.

    The rule (README, "Same message or conflict"): the target URL as written, the method, header
    values exactly but header names case-insensitively and in any order (HTTP semantics: neither
    changes the request), and the body byte for byte as it will be sent. A JSON body is compared
    in its compact serialisation, so whitespace and escapes in the request do not count, but key
    order does: the bytes are signed and delivered exactly, and reordered keys are other bytes.
    The message's own delivery options (`retry`, `timeoutSeconds`) count as well.
    """
    headers = message.get("headers") or {}
    content = {
        "targetUrl": message.get("targetUrl"),
        "method": message.get("method", "POST"),
        "headers": sorted((str(name).lower(), value) for name, value in headers.items()),
        "body": message.get("body"),
    }
    # How it is delivered is part of the message too; absent, they leave older fingerprints unchanged.
    for name in DELIVERY_OPTIONS:
        if name in message:
            content[name] = message[name]
    canonical = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
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
    schema_errors = list(_schema_validator().iter_errors(document))
    if not isinstance(document, dict):
        raise MessageInvalid(_sendable(_schema_errors(schema_errors)))
    details = _field_errors(document, settings, schema_errors, now)
    body_text = _body_text(document, details)
    body_size = _utf8_size(body_text) if body_text is not None else 0
    body_too_large = body_size > settings.max_body_bytes
    body_size_message = f"The body is {body_size} bytes; the limit is {settings.max_body_bytes}."
    if details:
        if body_too_large:
            # Report every problem in one round trip, the size of the body included.
            details.append(FieldError("$.body", body_size_message))
        raise MessageInvalid(_sendable(details))
    if body_too_large:
        raise PayloadTooLarge("$.body", body_size_message)
    if authenticated_sender_id is not None and document["senderId"] != authenticated_sender_id:
        raise SenderMismatch("senderId does not match the authenticated sender.")
    message = _normalised(document, body_text)
    due = due_time(document, now)
    if due is not None:
        # Not part of the fingerprint: a repeated request with the same delay is the same message.
        message["notBefore"] = due.isoformat().replace("+00:00", "Z")
    return ValidMessage(message=message, content_hash=content_hash(message))


def _field_errors(
    document: dict[str, Any], settings: Settings, schema_errors: list[Any], now: datetime
) -> list[FieldError]:
    """Every field's problem: the schema's, the target URL's, the time's, the headers' and options'."""
    target = document.get("targetUrl")
    target_error: FieldError | None = None
    if isinstance(target, str):
        try:
            parse_target_url(target, allow_private=settings.allow_private_targets)
        except UnsafeTarget as error:
            target_error = FieldError("$.targetUrl", f"targetUrl {error}")
    if target_error is not None:
        # The URL check names the precise problem (scheme, whitespace, credentials, address...);
        # the schema's generic pattern/format messages about the same URL would only repeat it.
        schema_errors = [
            error
            for error in schema_errors
            if not (error.json_path == "$.targetUrl" and error.validator in ("pattern", "format"))
        ]
    details = _schema_errors(schema_errors)
    if target_error is not None:
        details.append(target_error)
    failed_paths = {detail.path for detail in details}
    timestamp = document.get("timestamp")
    if isinstance(timestamp, str) and "$.timestamp" not in failed_paths:
        details.extend(_timestamp_errors(timestamp, settings, now))
    headers = document.get("headers")
    if isinstance(headers, dict):
        details.extend(_header_errors(headers, settings))
    details.extend(_delivery_option_errors(document, settings, failed_paths))
    details.extend(_due_time_errors(document, failed_paths, now))
    details.extend(callback_errors(document, settings.allow_private_targets))
    method = document.get("method", "POST")
    if "body" in document and isinstance(method, str) and method in METHODS_WITHOUT_BODY:
        details.append(FieldError("$.body", f"must be absent when method is {method}"))
    return details


def _body_text(document: dict[str, Any], details: list[FieldError]) -> str | None:
    """The body as it will be sent (a JSON body serialised once), or None; its problems join `details`."""
    if "body" not in document or not isinstance(document["body"], (str, dict, list)):
        return None
    try:
        body_text = _serialise_body(document["body"])
    except RecursionError:
        details.append(FieldError("$.body", "is nested too deeply to be serialised as JSON"))
        return None
    except ValueError:
        details.append(FieldError("$.body", "is not serialisable as JSON (NaN/Infinity are not JSON)"))
        return None
    if not _is_unicode_text(body_text):
        details.append(FieldError("$.body", "must be valid Unicode (no lone surrogates such as \\ud800)"))
    return body_text


def _normalised(document: dict[str, Any], body_text: str | None) -> dict[str, Any]:
    """The message as stored: known fields only, the method defaulted, Content-Type for a JSON body."""
    message: dict[str, Any] = {
        "messageId": document["messageId"],
        "senderId": document["senderId"],
        "timestamp": document["timestamp"],
        "targetUrl": document["targetUrl"],
        "method": document.get("method", "POST"),
    }
    headers = document.get("headers")
    message_headers = dict(headers) if isinstance(headers, dict) else {}
    body_is_json = body_text is not None and not isinstance(document["body"], str)
    if body_is_json and not any(name.lower() == "content-type" for name in message_headers):
        message_headers["Content-Type"] = "application/json"
    if message_headers:
        message["headers"] = message_headers
    if body_text is not None:
        message["body"] = body_text
    for name in DELIVERY_OPTIONS:
        if name in document:
            message[name] = document[name]
    return message
