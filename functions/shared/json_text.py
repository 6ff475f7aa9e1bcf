"""Strict JSON reading for request bodies: only what RFC 8259 allows, errors as ValueError.

Python's `json.loads` also takes NaN and Infinity (which then fail far from the request, in a
comparison or a DynamoDB write) and raises RecursionError, not ValueError, on deep nesting: both
must be a 400 that names the body, never a 500.
"""

from __future__ import annotations

import json
from typing import Any


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value.")


def loads_strict(text: str | bytes) -> Any:
    """The JSON value of `text`; ValueError (JSONDecodeError for syntax) for anything else."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
