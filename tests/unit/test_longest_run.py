"""The longest a state machine's run may take (stacks/definitions.longest_run), which bounds the fast lane."""

from __future__ import annotations

from typing import Any

import pytest

from stacks.definitions import longest_run


def task(seconds: int, retry: list[dict[str, Any]] | None = None, **rest: Any) -> dict[str, Any]:
    """A Task whose function may run `seconds` (named in its Parameters, as the lanes' placeholders are)."""
    return {"Type": "Task", "Parameters": {"FunctionName": str(seconds)}, "Retry": retry or [], **rest}


def function_timeout(name: str, state: dict[str, Any]) -> float:
    return float(state["Parameters"]["FunctionName"])


def test_a_task_counts_every_try_of_every_retrier_and_every_wait_in_full() -> None:
    # Given a task of up to 10 s with two retriers (ASL defaults where a field is absent) and a jittered one
    document = {
        "StartAt": "Step",
        "States": {
            "Step": task(
                10,
                [
                    {"ErrorEquals": ["A"], "MaxAttempts": 0},
                    {
                        "ErrorEquals": ["B"],
                        "IntervalSeconds": 2,
                        "MaxAttempts": 3,
                        "BackoffRate": 3,
                        "MaxDelaySeconds": 10,
                    },
                    {"ErrorEquals": ["States.ALL"], "JitterStrategy": "FULL"},
                ],
                End=True,
            )
        },
    }
    # When its longest run is computed
    seconds, steps = longest_run(document, function_timeout)
    # Then each retrier keeps its own count: 1 + 0 + 3 + 3 tries of 10 s, and the waits 2 + 6 + 10
    # (capped) and 1 + 2 + 4 (the defaults: interval 1, rate 2, 3 attempts; FULL jitter waits at most that)
    assert seconds == 7 * 10 + (2 + 6 + 10) + (1 + 2 + 4)
    assert [(step.name, step.detail) for step in steps] == [("Step", "7 tries of up to 10 s and 25 s of retry waits")]


def test_the_longest_branch_counts_choices_catches_and_capped_waits() -> None:
    # Given a choice between a capped wait and none, then a task caught into either of two others
    document = {
        "StartAt": "Check",
        "States": {
            "Check": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.w", "IsPresent": True, "Next": "Wait"}],
                "Default": "Do",
            },
            "Wait": {"Type": "Wait", "SecondsPath": "$.w", "Next": "Do"},
            "Do": task(
                5,
                Next="Done",
                Catch=[{"ErrorEquals": ["X"], "Next": "Short"}, {"ErrorEquals": ["States.ALL"], "Next": "Long"}],
            ),
            "Short": task(1, End=True),
            "Long": task(2, [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1, "IntervalSeconds": 3}], End=True),
            "Done": {"Type": "Succeed"},
        },
    }
    # When its longest run is computed with the wait's cap
    seconds, steps = longest_run(document, function_timeout, {"$.w": 7})
    # Then it takes the wait, the task, and the longer catcher (two tries of 2 s and a 3 s wait)
    assert seconds == 7 + 5 + (2 * 2 + 3)
    assert [step.name for step in steps] == ["Wait", "Do", "Long"]


@pytest.mark.parametrize(
    ("states", "reason"),
    [
        ({"A": task(1, Next="B"), "B": task(1, Next="A")}, "loop"),
        ({"A": {"Type": "Wait", "SecondsPath": "$.w", "End": True}}, "no known cap"),
        ({"A": {"Type": "Wait", "Timestamp": "2030-01-01T00:00:00Z", "End": True}}, "no known cap"),
        ({"A": {"Type": "Map", "End": True}}, "not bounded"),
    ],
)
def test_what_cannot_be_bounded_is_refused_not_guessed(states: dict[str, Any], reason: str) -> None:
    # Given a machine with a loop, a wait of unknown length or a state it does not model
    # Then no bound is given
    with pytest.raises(ValueError, match=reason):
        longest_run({"StartAt": "A", "States": states}, function_timeout)
