"""Observability that scales down: X-Ray sampling rules and the functions' JSON logs, as synthesized.

X-Ray samples head-first (the first traced service decides, the rest follow the trace header), so
the rules cover the services that decide for Relay: the API stage and the state machines
(stacks/constructs/observability.TraceSampling). The functions log JSON with Lambda's own lines at
WARN; their metrics are EMF lines, which Lambda counts as INFO (stacks/constructs/base/functions.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from infra_support import Synthesized, state_machines, synthesize

from relay.local.template import build_topology
from stacks.application import cdk_json_context
from stacks.constructs.observability import SAMPLING_RULE_NAME_LENGTH, SAMPLING_RULE_PRIORITY
from stacks.settings import DEFAULT_XRAY_SAMPLING_RATE, RelaySettings, SettingsError

MACHINES = ("ingest", "batch", "fast", "slow", "replay")
OVERRIDES = {"xraySamplingRate": 0.25, "xrayReservoirPerSecond": 0, "applicationLogLevel": "DEBUG", "tracing": "all"}


@pytest.fixture(scope="module")
def by_default(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    # Given the deployment as cdk.json configures it
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="module")
def overridden(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    # Given a deployment that samples a quarter of the traces, with no reservoir, and logs DEBUG
    return synthesize(tmp_path_factory.mktemp("cdk.out"), context={"relay": OVERRIDES})


def rules(synth: Synthesized) -> list[dict[str, Any]]:
    return [resource["Properties"]["SamplingRule"] for resource in synth.of_type("AWS::XRay::SamplingRule").values()]


def rule_for(synth: Synthesized, resource_arn: Any) -> dict[str, Any]:
    (rule,) = [rule for rule in rules(synth) if rule["ResourceARN"] == resource_arn]
    return rule


def stage_id(synth: Synthesized) -> str:
    (logical_id,) = synth.of_type("AWS::ApiGateway::Stage")
    return logical_id


def test_cdk_json_samples_five_percent_as_the_default_does() -> None:
    # Given the project's cdk.json
    relay = cdk_json_context()["relay"]
    # Then the rate is written there for operators to find and change, and matches the default
    assert relay["xraySamplingRate"] == DEFAULT_XRAY_SAMPLING_RATE == 0.05
    assert RelaySettings.from_mapping({}).xray_sampling_rate == 0.05


def test_one_rule_per_entry_point_samples_five_percent_after_one_trace_a_second(by_default: Synthesized) -> None:
    # When the default deployment is synthesized
    found = rules(by_default)
    # Then the API stage and each state machine have a rule: 1 trace/s, then 5 % of the rest
    assert len(found) == 1 + len(MACHINES)
    for rule in found:
        assert (rule["FixedRate"], rule["ReservoirSize"]) == (0.05, 1)
        assert (rule["Priority"], rule["Version"]) == (SAMPLING_RULE_PRIORITY, 1)
        assert 0 < rule["Priority"] < 10000  # ahead of the account's Default rule
        assert all(rule[key] == "*" for key in ("ServiceName", "Host", "HTTPMethod", "URLPath"))
        assert len(rule["RuleName"]) <= SAMPLING_RULE_NAME_LENGTH
    # And the rule names are distinct (they share the account and region)
    assert len({rule["RuleName"] for rule in found}) == len(found)
    # And cdk-nag has nothing to say about them
    assert by_default.error is None


def test_the_rules_match_only_this_stacks_stage_and_machines(by_default: Synthesized) -> None:
    # Given the stage's rule
    (api,) = [rule for rule in rules(by_default) if rule["ServiceType"] == "AWS::ApiGateway::Stage"]
    # Then its ARN names this stack's API and stage
    parts = api["ResourceARN"]["Fn::Join"][1]
    assert ":apigateway:" in parts and "/stages/" in parts and {"Ref": stage_id(by_default)} in parts
    # And each state machine has a rule matching its own ARN
    for machine in MACHINES:
        logical_id = state_machines(by_default)[machine][0]
        assert rule_for(by_default, {"Ref": logical_id})["ServiceType"] == "AWS::StepFunctions::StateMachine"


def test_cdk_json_overrides_reach_every_rule(overridden: Synthesized) -> None:
    # When the deployment with xraySamplingRate 0.25 and no reservoir is synthesized
    # Then every rule samples exactly a quarter
    assert {(rule["FixedRate"], rule["ReservoirSize"]) for rule in rules(overridden)} == {(0.25, 0)}
    assert overridden.error is None


@pytest.mark.parametrize("synth_name", ["by_default", "overridden"])
def test_every_traced_service_is_traced_whatever_relay_tracing_says(synth_name: str, request: Any) -> None:
    # Given either deployment (`stacks.tracing` errors, or all)
    synth: Synthesized = request.getfixturevalue(synth_name)
    # Then the stage, every machine and every function trace, so a sampled request is traced end to end
    # (stacks.tracing only decides what the machines log for the Step Functions console)
    assert synth.resources[stage_id(synth)]["Properties"]["TracingEnabled"] is True
    for machine in MACHINES:
        assert state_machines(synth)[machine][1]["Properties"]["TracingConfiguration"] == {"Enabled": True}
    for function in synth.of_type("AWS::Lambda::Function").values():
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}


def test_every_function_logs_json_with_lambdas_lines_at_warn(by_default: Synthesized) -> None:
    # When the default deployment is synthesized
    functions = by_default.of_type("AWS::Lambda::Function")
    assert functions
    for function in functions.values():
        config = function["Properties"]["LoggingConfig"]
        # Then each logs JSON: Lambda's START/END/REPORT lines only from WARN, its own from INFO
        assert (config["LogFormat"], config["SystemLogLevel"], config["ApplicationLogLevel"]) == (
            "JSON",
            "WARN",
            "INFO",
        )
        # And Powertools follows that level (AWS_LAMBDA_LOG_LEVEL), with no second level to disagree
        variables = function["Properties"]["Environment"]["Variables"]
        assert "POWERTOOLS_LOG_LEVEL" not in variables and "LOG_LEVEL" not in variables


def test_the_application_log_level_is_configurable(overridden: Synthesized) -> None:
    # When the deployment that logs DEBUG is synthesized
    levels = {
        function["Properties"]["LoggingConfig"]["ApplicationLogLevel"]
        for function in overridden.of_type("AWS::Lambda::Function").values()
    }
    # Then every function logs DEBUG, and Lambda's own lines stay at WARN
    assert levels == {"DEBUG"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"xraySamplingRate": 1.5}, r"xraySamplingRate must be a number from 0 to 1"),
        ({"xraySamplingRate": -0.01}, r"xraySamplingRate must be a number from 0 to 1"),
        ({"xraySamplingRate": "5%"}, r"xraySamplingRate must be a number from 0 to 1"),
        ({"xraySamplingRate": True}, r"xraySamplingRate must be a number from 0 to 1"),
        ({"xrayReservoirPerSecond": -1}, r"xrayReservoirPerSecond must be a whole number of 0 or more"),
        ({"xrayReservoirPerSecond": 0.5}, r"xrayReservoirPerSecond must be a whole number of 0 or more"),
        ({"applicationLogLevel": "WARN"}, r"applicationLogLevel must be one of TRACE, DEBUG, INFO.*metric"),
        ({"applicationLogLevel": "info"}, r"applicationLogLevel must be one of TRACE, DEBUG, INFO"),
    ],
)
def test_invalid_sampling_and_log_settings_fail_synthesis_with_a_clear_message(raw: object, message: str) -> None:
    # Given a mistaken rate, reservoir or a log level that would drop the metrics
    # Then reading the settings fails and says what is wrong
    with pytest.raises(SettingsError, match=message):
        RelaySettings.from_mapping(raw)


def test_the_edges_of_the_rate_are_accepted() -> None:
    # Given no sampling beyond the reservoir, or every request
    # Then both are valid
    assert RelaySettings.from_mapping({"xraySamplingRate": 0}).xray_sampling_rate == 0.0
    assert RelaySettings.from_mapping({"xraySamplingRate": 1}).xray_sampling_rate == 1.0


@pytest.mark.parametrize("synth_name", ["by_default", "overridden"])
def test_relay_dev_runs_the_template_with_its_rules_and_log_settings(synth_name: str, request: Any) -> None:
    # Given the synthesized template with sampling rules and JSON logging
    synth: Synthesized = request.getfixturevalue(synth_name)
    # When relay dev reads it
    topology = build_topology(synth.template)
    # Then it runs every function and machine, and no log level reaches the functions' environment
    assert len(topology.functions) == len(synth.of_type("AWS::Lambda::Function"))
    assert len(topology.state_machines) == len(MACHINES)
    for spec in topology.functions.values():
        assert "POWERTOOLS_LOG_LEVEL" not in spec.environment
