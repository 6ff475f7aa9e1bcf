"""Execution names users search for in the console, and failure reasons users read."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from functions.adapters.workflows import execution_name
from functions.domain.model import MessageKey
from functions.services.delivery import LaneEvent, failure_reason, is_retryable_status

STEP_FUNCTIONS_NAME = re.compile(r"^[^\s?*<>{}\[\]\"#%\\^|~`$&,;:/]{1,80}$")


@pytest.mark.parametrize(
    "message_id",
    ["order-42", "a:b:c", "x" * 128, "v1.2_3:4-5", "::::"],
)
def test_execution_names_follow_step_functions_rules_and_start_with_the_message_id(message_id: str) -> None:
    name = execution_name(MessageKey("shop", message_id), run=2, lane="slow")
    assert STEP_FUNCTIONS_NAME.match(name)
    assert name.startswith(message_id.replace(":", "_")[:40])
    assert "-r2-slow-" in name


def test_slow_lane_names_are_stable_and_distinct_per_message_and_run() -> None:
    key = MessageKey("shop", "m" * 128)
    assert execution_name(key, 0, "slow") == execution_name(key, 0, "slow")
    assert execution_name(key, 0, "slow") != execution_name(key, 1, "slow")
    assert execution_name(key, 0, "slow") != execution_name(MessageKey("other", "m" * 128), 0, "slow")


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (200, False),
        (301, False),
        (400, False),
        (404, False),
        (408, True),
        (425, True),
        (429, True),
        (500, True),
        (503, True),
        (599, True),
        # Outside 100-599 a code is invalid: RFC 9110 says to treat the response as a 5xx
        (600, True),
        (999, True),
    ],
)
def test_outcome_rules(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def _reason(**fields: Any) -> str:
    return failure_reason(LaneEvent.from_event({"senderId": "s", "messageId": "m", "run": 0, **fields}))


def test_failure_reasons_read_well() -> None:
    retry = {"Error": "DeliveryRetryable", "Cause": json.dumps({"errorMessage": "HTTP 503", "errorType": "x"})}
    assert _reason(failure=retry) == "retries exhausted; last error: HTTP 503"
    rejected = {"Error": "DeliveryRejected", "Cause": json.dumps({"errorMessage": "HTTP 404: not retried"})}
    assert _reason(failure=rejected) == "HTTP 404: not retried"
    assert _reason(failure={"Error": "States.Timeout", "Cause": "not json"}) == "States.Timeout: not json"
    assert _reason(reason="expired before delivery") == "expired before delivery"
    assert _reason(waitSeconds=30) == "the target's Retry-After asks to wait 30 s"
    deferred = {"Error": "DeliveryDeferred", "Cause": json.dumps({"errorMessage": "45"})}
    assert _reason(failure=deferred) == "the target's Retry-After asks to wait 45 s"
    assert _reason() == "Unknown"
