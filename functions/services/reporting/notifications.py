"""PUT/GET/DELETE /notifications: where a sender's operational events are delivered.

The request is checked against schemas/notification.schema.json (the one source for the Lambda,
the OpenAPI document and the docs), and the URL as a callback is (functions/domain/callbacks.py).
What is sent, and when, is functions/services/reporting/outcomes.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from functions.adapters.stores.notification_store import NotificationStore
from functions.domain.callbacks import NotificationSettings, NotificationType, callback_url_error
from functions.domain.config import SCHEMA_DIR, Settings
from functions.domain.exceptions import FieldError, MessageInvalid, NotificationsNotSet
from functions.domain.web.json_text import loads_strict

NOTIFICATION_SCHEMA_PATH = SCHEMA_DIR / "notification.schema.json"
NOT_CONFIGURED = "No notifications are set for this sender."


@lru_cache(maxsize=1)
def _validator() -> Any:
    # Imported on first use: the API's other routes never load jsonschema.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(NOTIFICATION_SCHEMA_PATH.read_text(encoding="utf-8")))


def parse_request(body: str | None, allow_private: bool) -> tuple[str, tuple[NotificationType, ...]]:
    """The URL and events of a PUT /notifications body; MessageInvalid naming each bad field."""
    from functions.domain.validation import schema_field_errors

    try:
        document = loads_strict(body or "")
    except ValueError:
        raise MessageInvalid([FieldError("$", "must be a JSON object {url, events}")]) from None
    details = schema_field_errors(list(_validator().iter_errors(document)))
    if isinstance(document, dict):
        url_error = callback_url_error("url", document.get("url"), allow_private)
        if url_error is not None and not any(detail.path == "$.url" for detail in details):
            details.append(url_error)
    if details:
        raise MessageInvalid(details, "The notification setting is invalid.")
    return str(document["url"]), tuple(NotificationType(name) for name in document["events"])


def put(store: NotificationStore, settings: Settings, sender_id: str, body: str | None) -> dict[str, Any]:
    url, events = parse_request(body, settings.allow_private_targets)
    setting = NotificationSettings(sender_id, url, events, datetime.now(UTC))
    store.put(setting)
    return setting.to_body()


def get(store: NotificationStore, sender_id: str) -> dict[str, Any]:
    setting = store.get(sender_id)
    if setting is None:
        raise NotificationsNotSet(NOT_CONFIGURED)
    return setting.to_body()


def delete(store: NotificationStore, sender_id: str) -> dict[str, Any]:
    if not store.delete(sender_id):
        raise NotificationsNotSet(NOT_CONFIGURED)
    return {"deleted": True}
