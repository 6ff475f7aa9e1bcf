"""Ingest waits out Lambda throttling, as a new account with a low concurrency quota meets it."""

from __future__ import annotations

from typing import Any

import pytest

from relay.local.emulator import LocalAws
from tests.conftest import make_message

# What Step Functions calls Lambda's 429 (the function's concurrency quota is used up).
LambdaThrottled = type("Lambda.TooManyRequestsException", (Exception,), {})


def throttled(times: int, function: str, local: LocalAws) -> list[int]:
    """Make `function` refuse `times` invocations the way a throttled Lambda does, then run as usual."""
    calls = [0]

    def refuse_then_run(event: dict[str, Any], context: Any) -> Any:
        calls[0] += 1
        if calls[0] <= times:
            raise LambdaThrottled("Rate Exceeded.")
        local.overrides.pop(function)  # the real handler from now on
        return local.invoke(function, event)

    local.overrides[function] = refuse_then_run
    return calls


@pytest.mark.parametrize("function", ["relay-validate", "relay-dedup", "relay-store", "relay-enqueue"])
def test_a_step_throttled_five_times_in_a_row_still_accepts_the_message(
    post: Any, local_aws: LocalAws, function: str
) -> None:
    # Given one ingest step whose function is throttled five times before it runs
    calls = throttled(5, function, local_aws)
    # When a message is posted
    status, body = post(make_message())
    # Then the step was retried until it ran, and the message is accepted
    assert calls[0] == 6
    assert (status, body["status"]) == (202, "PENDING")


def test_throttling_that_outlasts_the_retries_is_a_system_error(post: Any, local_aws: LocalAws) -> None:
    # Given validate's function throttled on every call
    calls = throttled(1000, "relay-validate", local_aws)
    # When a message is posted
    status, body = post(make_message(), request_id="req-9")
    # Then the answer is SYSTEM_ERROR (safe to retry) after the retrier's attempts
    assert (status, body["error"]["code"], body["error"]["requestId"]) == (500, "SYSTEM_ERROR", "req-9")
    assert calls[0] == 7
