"""`stacks.tracing` as synthesized: which runs the Step Functions console can open.

An EXPRESS run has no history in Step Functions; the console shows it from the machine's CloudWatch
Logs (Step Functions Developer Guide: "Standard and Express Workflow executions in the console"), and
which events are logged follows the log level ("Log levels": ERROR logs ExecutionFailed, TaskFailed,
... but not ExecutionStarted or ExecutionSucceeded). A STANDARD run keeps its history in the service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from infra_support import Synthesized, state_machines, synthesize

from stacks.settings import RelaySettings, SettingsError
from stacks.tracing import Tracing

EXPRESS_MACHINES = ("ingest", "fast")


@pytest.fixture(scope="module")
def every_run(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    # Given a deployment that asks for every run to be visible
    return synthesize(tmp_path_factory.mktemp("cdk.out"), context={"relay": {"tracing": "all"}})


@pytest.fixture(scope="module")
def by_default(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    # Given the deployment as cdk.json configures it
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


def logging_of(synth: Synthesized, machine: str) -> dict[str, Any]:
    configuration: dict[str, Any] = state_machines(synth)[machine][1]["Properties"]["LoggingConfiguration"]
    return configuration


def test_tracing_defaults_to_errors() -> None:
    # Given no tracing setting
    # Then failed runs are what the console can open
    assert RelaySettings.from_mapping({}).tracing == Tracing.ERRORS


def test_an_unknown_tracing_mode_is_refused_at_synth_time() -> None:
    # Given a misspelt mode
    # Then synthesis stops, naming the setting and the modes
    with pytest.raises(SettingsError, match=r"relay\.tracing must be one of 'errors', 'all'"):
        RelaySettings.from_mapping({"tracing": "everything"})


@pytest.mark.parametrize("machine", EXPRESS_MACHINES)
def test_errors_logs_the_failures_of_express_runs_with_their_data(by_default: Synthesized, machine: str) -> None:
    # When the default deployment is synthesized
    logging = logging_of(by_default, machine)
    # Then a failed ingest or fast-lane run has its events and data in the log the console reads
    assert (logging["Level"], logging["IncludeExecutionData"]) == ("ERROR", True)
    assert by_default.error is None


@pytest.mark.parametrize("machine", EXPRESS_MACHINES)
def test_all_logs_every_event_of_every_express_run(every_run: Synthesized, machine: str) -> None:
    # When the deployment with tracing `all` is synthesized
    logging = logging_of(every_run, machine)
    # Then every ingest and fast-lane run can be opened, successful ones included
    assert (logging["Level"], logging["IncludeExecutionData"]) == ("ALL", True)
    # And cdk-nag has nothing to acknowledge about it
    assert every_run.error is None


@pytest.mark.parametrize("synth_name", ["by_default", "every_run"])
def test_the_standard_slow_lane_logs_only_failures_in_either_mode(synth_name: str, request: Any) -> None:
    # Given either deployment
    synth: Synthesized = request.getfixturevalue(synth_name)
    # Then the slow lane, whose runs Step Functions keeps, logs failures without data
    logging = logging_of(synth, "slow")
    assert (logging["Level"], logging["IncludeExecutionData"]) == ("ERROR", False)


def test_cdk_json_names_the_mode(tmp_path: Path) -> None:
    # Given the project's cdk.json
    from stacks.application import cdk_json_context

    # Then the mode is written there for operators to find and change
    assert cdk_json_context()["relay"].get("tracing") in {mode.value for mode in Tracing}
