"""The nesting limit of request bodies (functions/domain/web/json_text.py): counted from each field, text skipped."""

from __future__ import annotations

import json

import pytest

from functions.domain.exceptions import FieldError, MessageInvalid
from functions.domain.web.json_text import BATCH_FIELD_DEPTH, MAX_NESTING_DEPTH, loads_strict, nesting_error


def deep(levels: int, inner: str = "") -> str:
    return "[" * levels + inner + "]" * levels


def test_the_limit_is_64_levels_counted_from_the_fields_value() -> None:
    # Given a field holding 64 levels of arrays, and one holding 65
    # Then the first is read, the second named
    assert MAX_NESTING_DEPTH == 64
    assert loads_strict('{"body": ' + deep(64) + "}") == {"body": json.loads(deep(64))}
    assert nesting_error('{"body": ' + deep(65) + "}") == FieldError("$.body", "is nested deeper than 64 levels")


@pytest.mark.parametrize(
    "text",
    [
        # brackets in strings, escaped quotes among them, are text
        '{"body": "' + "[" * 500 + '"}',
        '{"body": "a\\"' + "[" * 500 + '"}',
        '"' + "{" * 500 + '"',
        # a key full of brackets
        '{"' + "[" * 500 + '": 1}',
    ],
)
def test_text_is_not_nesting(text: str) -> None:
    # Given a body whose brackets are all inside strings
    # When it is read / Then it is the JSON value, whatever the brackets
    assert loads_strict(text) == json.loads(text)


def test_each_field_of_a_batch_counts_from_its_message() -> None:
    # Given a batch whose third message has a body 65 levels deep (68 below the request's root)
    messages = [{"messageId": "a"}, {"messageId": "b", "body": [[1]]}, {"messageId": "c", "body": json.loads(deep(65))}]
    text = json.dumps({"messages": messages})
    # When it is read with the batch's field depth
    with pytest.raises(MessageInvalid) as refused:
        loads_strict(text, BATCH_FIELD_DEPTH)
    # Then that message's body is named
    assert refused.value.details == [FieldError("$.messages[2].body", "is nested deeper than 64 levels")]
    # And at 64 levels the same batch is read
    messages[2]["body"] = json.loads(deep(64))
    assert loads_strict(json.dumps({"messages": messages}), BATCH_FIELD_DEPTH) == {"messages": messages}


def test_keys_are_named_as_validation_names_them() -> None:
    # Given a deep value under a key that is not an identifier, and one with an escape
    # Then the path quotes it as the schema's errors do
    assert nesting_error('{"X-Odd key": ' + deep(70) + "}") == FieldError(
        "$['X-Odd key']", "is nested deeper than 64 levels"
    )
    assert nesting_error('{"caf\\u00e9": ' + deep(70) + "}") == FieldError(
        "$['café']", "is nested deeper than 64 levels"
    )
