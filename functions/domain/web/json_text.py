"""Strict JSON reading for request bodies: only what RFC 8259 allows, errors as ValueError.

Python's `json.loads` also takes NaN and Infinity (which then fail far from the request, in a
comparison or a DynamoDB write) and raises RecursionError, not ValueError, on deep nesting: both
must be a 400 that names the body, never a 500.

Nesting has a documented limit, the same on every route: a field's value may nest arrays and
objects at most MAX_NESTING_DEPTH levels deep (`[]` and `{}` are one level, `[[]]` two). Deeper is
a 400 VALIDATION_ERROR naming the field (`$.body is nested deeper than 64 levels`), found before
the body is parsed, so it does not depend on how deep Python's recursion happens to go (about
990 levels, where `json.loads` gives up).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from functions.domain.exceptions import FieldError, MessageInvalid

MAX_NESTING_DEPTH = 64
NESTING_MESSAGE = f"is nested deeper than {MAX_NESTING_DEPTH} levels"
# A field of a request is this many containers below its root: 1 for an object of fields (a
# message, a replay filter, a target), 3 for a batch's messages (`$.messages[i].<field>`).
FIELD_DEPTH = 1
BATCH_FIELD_DEPTH = 3

# What nesting depends on: strings (skipped whole, whatever brackets they hold) and structure.
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_STRUCTURE = re.compile(_STRING + r"|[\[\]{},]")
_STRINGS = re.compile(_STRING)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_STEPS = {"[": 1, "{": 1, "]": -1, "}": -1}
_JSON_PATH_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]*$")


def json_path(*parts: str | int) -> str:
    """A JSON path in the notation jsonschema's `ValidationError.json_path` uses, so every detail
    about one field carries the same path: `$.headers['X-Trace']`, `$.messageId`, `$.messages[3]`."""
    path = "$"
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _JSON_PATH_NAME.match(part):
            path += f".{part}"
        else:
            escaped = part.replace("\\", "\\\\").replace("'", "\\'")
            path += f"['{escaped}']"
    return path


def nesting_error(text: str, field_depth: int = FIELD_DEPTH) -> FieldError | None:
    """The first field (`field_depth` containers below the root) whose value nests deeper than
    MAX_NESTING_DEPTH levels, or None. Reads the structure only: `text` need not be valid JSON."""
    deepest = field_depth + MAX_NESTING_DEPTH
    if text.count("[") + text.count("{") <= deepest:
        return None  # too few brackets to nest that deep (the common case: no scan)
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    if max(accumulate(map(_STEPS.__getitem__, brackets)), default=0) <= deepest:
        return None  # not that deep (found at C speed); only a body that is reads its path below
    # Each open container: [is an object, the key or index being read in it].
    open_containers: list[list[Any]] = []
    expecting_key = False
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token[0] == '"':
            if expecting_key and open_containers:
                open_containers[-1][1] = _key(token)
            expecting_key = False
        elif token in "[{":
            is_object = token == "{"
            open_containers.append([is_object, None if is_object else 0])
            expecting_key = is_object
            if len(open_containers) > deepest:
                field = [part for _, part in open_containers[:field_depth] if part is not None]
                return FieldError(json_path(*field), NESTING_MESSAGE)
        elif token in "]}":
            if open_containers:
                open_containers.pop()
            expecting_key = False
        elif open_containers:  # a comma: the next key, or the next element
            if open_containers[-1][0]:
                expecting_key = True
            else:
                open_containers[-1][1] += 1
    return None


def _key(token: str) -> str:
    try:
        return str(json.loads(token))
    except ValueError:
        return token[1:-1]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value.")


def loads_strict(text: str | bytes, field_depth: int = FIELD_DEPTH) -> Any:
    """The JSON value of `text`; ValueError (JSONDecodeError for syntax) for anything else.

    A field's value nested deeper than MAX_NESTING_DEPTH is MessageInvalid naming the field (a 400
    VALIDATION_ERROR on every route); `field_depth` says where a request's fields are.
    """
    scanned = text if isinstance(text, str) else text.decode("utf-8", errors="replace")
    too_deep = nesting_error(scanned, field_depth)
    if too_deep is not None:
        raise MessageInvalid([too_deep], "The request is invalid.")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
