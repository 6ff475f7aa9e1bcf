"""Outcome callbacks as a sender meets them at acceptance: which URLs are taken, and the ids and bodies.

Given/When/Then; the rules are the message contract's (schemas/message.schema.json) and
functions/domain/callbacks.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.domain.callbacks import Outcome, OutcomeReport, callback_id, derived_id
from functions.domain.config import Settings, get_settings
from functions.domain.exceptions import MessageInvalid
from functions.domain.validation import content_hash, validate_message

NOW = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)
STRICT: Settings = replace(get_settings(), allow_private_targets=False)
LOCAL: Settings = replace(get_settings(), allow_private_targets=True)


def message(**fields: Any) -> dict[str, Any]:
    return {
        "messageId": "order-1",
        "senderId": "shop",
        "timestamp": "2026-01-31T12:00:00Z",
        "targetUrl": "https://hooks.example.com/orders",
        **fields,
    }


def rejected_paths(document: dict[str, Any], settings: Settings = STRICT) -> dict[str, str]:
    with pytest.raises(MessageInvalid) as info:
        validate_message(document, settings, now=NOW)
    return {detail.path: detail.message for detail in info.value.details}


@pytest.mark.parametrize("field", ["callbackUrl", "failureCallbackUrl"])
def test_given_an_https_callback_when_validated_then_it_is_kept_with_the_message(field: str) -> None:
    # Given a message naming an https callback, When it is validated
    valid = validate_message(message(**{field: "https://app.example.com/relay-outcome"}), STRICT, now=NOW)
    # Then it is stored with the message and counts in its fingerprint
    assert valid.message[field] == "https://app.example.com/relay-outcome"
    assert valid.content_hash != content_hash(message())


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://app.example.com/outcome", "must use https"),
        ("https://127.0.0.1/outcome", "callbackUrl"),
        ("https://169.254.169.254/latest/meta-data", "callbackUrl"),
        ("https://10.0.0.7/x", "callbackUrl"),
        ("https://user:pw@app.example.com/x", "credentials"),
        ("ftp://app.example.com/x", "http or https"),
    ],
)
def test_given_an_unsafe_callback_when_validated_then_a_400_names_the_field(url: str, words: str) -> None:
    # Given a callback that is plain http, private, or otherwise unsafe; When validated
    paths = rejected_paths(message(callbackUrl=url))
    # Then the rejection names $.callbackUrl and why
    assert list(paths) == ["$.callbackUrl"]
    assert words in paths["$.callbackUrl"]


def test_given_a_bad_failure_callback_when_validated_then_its_own_field_is_named() -> None:
    paths = rejected_paths(message(failureCallbackUrl="http://192.168.1.1/x", callbackUrl=7))
    assert set(paths) == {"$.failureCallbackUrl", "$.callbackUrl"}


def test_given_private_targets_allowed_when_a_local_http_callback_is_validated_then_it_passes() -> None:
    # Given relay dev (private targets allowed), When a local http callback is validated, Then it passes
    valid = validate_message(message(callbackUrl="http://127.0.0.1:9000/outcome"), LOCAL, now=NOW)
    assert valid.message["callbackUrl"] == "http://127.0.0.1:9000/outcome"


def test_callback_ids_name_the_outcome_and_run_and_fit_the_id_limit() -> None:
    # Given one message, When its outcomes' callback ids are derived twice, Then they are equal per
    # outcome and run, distinct otherwise, and never longer than a message id may be
    assert callback_id("m-1", 0, Outcome.DELIVERED) == callback_id("m-1", 0, Outcome.DELIVERED)
    assert len({callback_id("m-1", 0, Outcome.DELIVERED), callback_id("m-1", 1, Outcome.DELIVERED)}) == 2
    assert callback_id("m-1", 0, Outcome.FAILED) != callback_id("m-1", 0, Outcome.DELIVERED)
    long_id = derived_id("cb", "x" * 200)
    assert len(long_id) == 128 and long_id != derived_id("cb", "x" * 199 + "y")


def test_the_callback_body_names_the_message_its_outcome_and_the_last_answer() -> None:
    report = OutcomeReport("m-1", Outcome.FAILED, 1, NOW, NOW, status_code=404, body_snippet="nope", error="HTTP 404")
    assert report.to_body() == {
        "messageId": "m-1",
        "status": "FAILED",
        "attempts": 1,
        "acceptedAt": "2026-01-31T12:00:00.000Z",
        "finishedAt": "2026-01-31T12:00:00.000Z",
        "response": {"statusCode": 404, "bodySnippet": "nope"},
        "error": "HTTP 404",
    }
