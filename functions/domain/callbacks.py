"""Outcome callbacks and operational notifications: the pure part (no I/O).

A message may name `callbackUrl` (called after DELIVERED) and `failureCallbackUrl` (called after
FAILED). A callback, like an operational notification, is itself a Relay message from the same
sender, so it is signed, retried and visible like any other; this module holds what is decided
without storage: which URLs a sender may name (checked when the message is accepted, as targetUrl
is), the ids derived from the outcome (one callback per outcome, however often a step is retried)
and the bodies sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from functions.domain.clock import iso
from functions.domain.exceptions import FieldError
from functions.domain.web.url_safety import UnsafeTarget, parse_target_url

CALLBACK_FIELDS = ("callbackUrl", "failureCallbackUrl")
# What a callback quotes of the target's last answer.
CALLBACK_SNIPPET_CHARS = 256
# Ids stay within the message id's 128 characters: long ids are shortened by a hash.
MAX_ID_CHARS = 128


class NotificationType(StrEnum):
    """The operational events a sender may subscribe to (PUT /notifications)."""

    MESSAGE_FAILED = "message.failed"
    MESSAGE_PAUSED = "message.paused"
    TARGET_OPENED = "target.opened"
    TARGET_CLOSED = "target.closed"


class Outcome(StrEnum):
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


def callback_url_error(name: str, url: Any, allow_private: bool) -> FieldError | None:
    """The problem of a callback URL, or None. https only, unless private targets are allowed
    (relay dev), and the same SSRF rules as targetUrl: the callback is delivered like a message."""
    path = f"$.{name}"
    if not isinstance(url, str):
        return None  # the schema names a wrong type
    try:
        parsed = parse_target_url(url, allow_private=allow_private)
    except UnsafeTarget as error:
        return FieldError(path, f"{name} {error}")
    if parsed.scheme != "https" and not allow_private:
        return FieldError(path, f"{name} must use https")
    return None


def callback_errors(document: dict[str, Any], allow_private: bool) -> list[FieldError]:
    """Every callback URL's problem (validation's hook)."""
    errors = (callback_url_error(name, document.get(name), allow_private) for name in CALLBACK_FIELDS)
    return [error for error in errors if error is not None]


def derived_id(*parts: str) -> str:
    """A message id derived from `parts` (`:`-joined), shortened by a hash when over the limit."""
    text = ":".join(parts)
    if len(text) <= MAX_ID_CHARS:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    return f"{text[: MAX_ID_CHARS - len(digest) - 1]}~{digest}"


def callback_id(message_id: str, run: int, outcome: Outcome) -> str:
    """One callback per (message, run, outcome): a retried step derives the same id."""
    return derived_id("cb", outcome.value.lower(), str(run), message_id)


def notification_id(kind: NotificationType, *subject: str) -> str:
    """One notification per event: the type and what identifies the occurrence."""
    return derived_id("ntf", kind.value, *subject)


@dataclass(frozen=True)
class OutcomeReport:
    """What a callback says about a finished message."""

    message_id: str
    status: Outcome
    attempts: int
    accepted_at: datetime
    finished_at: datetime
    status_code: int | None = None
    body_snippet: str | None = None
    error: str | None = None

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messageId": self.message_id,
            "status": self.status.value,
            "attempts": self.attempts,
            "acceptedAt": iso(self.accepted_at),
            "finishedAt": iso(self.finished_at),
        }
        if self.status_code is not None:
            response: dict[str, Any] = {"statusCode": self.status_code}
            if self.body_snippet:
                response["bodySnippet"] = self.body_snippet[:CALLBACK_SNIPPET_CHARS]
            body["response"] = response
        if self.error:
            body["error"] = self.error
        return body


@dataclass(frozen=True)
class NotificationSettings:
    """Where a sender's operational events go (PUT /notifications), and which ones."""

    sender_id: str
    url: str
    events: tuple[NotificationType, ...]
    updated_at: datetime

    def wants(self, kind: NotificationType) -> bool:
        return kind in self.events

    def to_body(self) -> dict[str, Any]:
        return {"url": self.url, "events": [kind.value for kind in self.events], "updatedAt": iso(self.updated_at)}


def notification_body(kind: NotificationType, occurred_at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind.value, "occurredAt": iso(occurred_at), "data": data}
