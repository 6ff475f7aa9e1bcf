"""Issue 16, item 10: a small version of every `make soak` scenario, each invariant its own test.

Each scenario of bench/soak.py runs once at `Sizes.small()` (seconds each: a 2 s re-drive window,
the reconciler every second, an 80-message backlog at 2/s, 40 senders, 25 replays, 10 races, an
outage of 6 windows) on the real handlers in LocalRelay; the tests below read its invariants.

The ones today's code is known to break are marked xfail(strict=False) with the issue item that
fixes them: they pass (XPASS) once the fix lands and can then be unmarked. Everything else must hold.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.soak import ScenarioResult, Sizes, run_scenario

pytestmark = pytest.mark.soak

# Every invariant each scenario reports, in the order it reports them.
COMMON = ("lost", "failed_without_spent_budget", "duplicate_sends", "stalled_rounds")
INVARIANTS: dict[str, tuple[str, ...]] = {
    "a": (*COMMON, "finish_within_10pct", "target_limit_held"),
    "b": (*COMMON, "round_work_independent_of_senders"),
    "c": (
        *COMMON,
        "replays_accepted",
        "replays_delivered",
        "get_200_with_delivered_last",
        "head_bounded",
        "later_message_delivered",
    ),
    "d": (*COMMON, "one_result_per_attempt", "both_runs_raced"),
    "e": (*COMMON, "all_delivered", "longest_wait"),
}
# Invariants known to be broken, with the issue item whose fix makes them hold (none since issue 16).
KNOWN_BROKEN: dict[tuple[str, str], str] = {}

_RESULTS: dict[str, ScenarioResult] = {}


def result_of(key: str, capsys: Any) -> ScenarioResult:
    """The scenario's result, run once for all of its tests."""
    if key not in _RESULTS:
        _RESULTS[key] = run_scenario(key, Sizes.small())
        with capsys.disabled():
            print(f"\n{_RESULTS[key].summary()}")
    return _RESULTS[key]


def _cases() -> list[Any]:
    cases = []
    for key, names in INVARIANTS.items():
        for name in names:
            reason = KNOWN_BROKEN.get((key, name))
            marks = [pytest.mark.xfail(reason=reason, strict=False)] if reason else []
            cases.append(pytest.param(key, name, marks=marks, id=f"{key}-{name}"))
    return cases


@pytest.mark.parametrize(("key", "name"), _cases())
def test_soak_invariant(key: str, name: str, capsys: Any) -> None:
    result = result_of(key, capsys)
    invariant = result.invariant(name)
    assert invariant.ok, (
        f"soak {key} ({result.title}): {name} is {invariant.value}, expected {invariant.expected}. "
        f"{invariant.detail}\ncounts {result.counts}\nexamples {result.examples}\nwait {result.wait}"
    )


@pytest.mark.parametrize("key", list(INVARIANTS))
def test_soak_reports_every_invariant(key: str, capsys: Any) -> None:
    """The list above is the scenario's (so no invariant goes unchecked by the suite)."""
    assert tuple(item.name for item in result_of(key, capsys).invariants) == INVARIANTS[key]


def test_sizes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make soak` is the full size; SOAK_SCALE scales the counts, a per-knob variable wins."""
    for name in ("SOAK_SCALE", "SOAK_A_MESSAGES", "SOAK_A_RATE", "SOAK_REDRIVE_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    full = Sizes.from_env()
    assert (full.a_messages, full.b_senders, full.c_replays, full.d_rounds) == (5000, 2000, 2000, 200)
    assert full.a_messages / full.a_rate >= 3 * full.redrive_seconds  # the backlog lasts >= 3 windows
    assert full.e_windows > 5
    monkeypatch.setenv("SOAK_SCALE", "0.1")
    monkeypatch.setenv("SOAK_A_RATE", "20")
    monkeypatch.setenv("SOAK_REDRIVE_SECONDS", "5")
    tenth = Sizes.from_env()
    assert (tenth.a_messages, tenth.b_senders, tenth.a_rate, tenth.redrive_seconds) == (500, 200, 20.0, 5)
    assert isinstance(tenth.redrive_seconds, int)
