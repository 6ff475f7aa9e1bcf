"""Every statemachines/*.asl.json is valid ASL, checked by two tools that catch different mistakes.

- asl-validator (npm, package.json; `make install` runs `npm ci`) checks the structure: dangling
  Next/Default targets, unreachable states, JSONPath syntax. It does not check Retry values.
- moto's CreateStateMachine, with its ASL interpreter on, parses the definition as Step Functions
  does and refuses bad Retry values (BackoffRate < 1, an unknown JitterStrategy, IntervalSeconds
  0). It accepts a dangling Next.

Both run on each file as committed (with its `${Placeholder}` tokens) and as deployed (the
definition string of the synthesized template, substitutions resolved, as relay dev runs it). The negative
tests show that each check rejects the mistake it is here for, so this test can fail.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.local.emulator import template_topology
from relay.local.template import StateMachineSpec
from stacks.definitions import STATEMACHINE_DIR, machine_name, read_definition

ROOT = Path(__file__).resolve().parents[2]
ASL_VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"
DEFINITIONS = sorted(path.name for path in STATEMACHINE_DIR.glob("*.asl.json"))
# A definition may be deployed as several machines: the ingest definition as one machine per route,
# each with its own request shape (stacks/constructs/ingest_workflow.py).
SHARED = {"ingest.asl.json": ("relay-ingest", "relay-ingest-batch")}
DEPLOYED = [(name, machine) for name in DEFINITIONS for machine in SHARED.get(name, (machine_name(name),))]
ACCOUNT, REGION = "123456789012", "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/relay-test"


def _placeholders(file_name: str) -> list[str]:
    return sorted(set(re.findall(r"\$\{(\w+)\}", (STATEMACHINE_DIR / file_name).read_text(encoding="utf-8"))))


def _deployed(machine: str) -> StateMachineSpec:
    """A machine a definition file becomes in the synthesized template (relay dev runs the same)."""
    return template_topology().state_machines[machine]


def rendered(machine: str) -> str:
    """The definition as deployed: placeholders replaced by ARNs and values, cdk.json's policy applied."""
    return _deployed(machine).definition


def asl_validator(*paths: Path) -> subprocess.CompletedProcess[str]:
    if not ASL_VALIDATOR.exists():
        pytest.fail("asl-validator is not installed: run `make install` (npm ci) or `npm ci`")
    arguments = [str(ASL_VALIDATOR)]
    for path in paths:
        arguments += ["--json-path", str(path)]
    return subprocess.run(arguments, capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture(scope="module")
def stepfunctions() -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        yield boto3.client("stepfunctions", region_name=REGION)


def create(stepfunctions: Any, name: str, definition: str, machine_type: str = "STANDARD") -> str:
    arn: str = stepfunctions.create_state_machine(name=name, definition=definition, roleArn=ROLE, type=machine_type)[
        "stateMachineArn"
    ]
    return arn


def test_there_are_definitions_and_each_is_deployed() -> None:
    assert sorted(template_topology().state_machines) == sorted(machine for _, machine in DEPLOYED)


@pytest.mark.parametrize(("file_name", "machine"), DEPLOYED)
def test_asl_validator_accepts_the_definition(file_name: str, machine: str, tmp_path: Path) -> None:
    deployed = tmp_path / f"rendered-{machine}.asl.json"
    deployed.write_text(rendered(machine), encoding="utf-8")
    result = asl_validator(STATEMACHINE_DIR / file_name, deployed)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("file_name", "machine"), DEPLOYED)
def test_moto_creates_the_state_machine(file_name: str, machine: str, stepfunctions: Any) -> None:
    deployed = _deployed(machine)
    arn = create(stepfunctions, deployed.name, deployed.definition, deployed.type)
    assert stepfunctions.describe_state_machine(stateMachineArn=arn)["status"] == "ACTIVE"


# -- each check rejects what it is here for ----------------------------------------------------


def _broken(mutate: Any) -> dict[str, Any]:
    document = read_definition("delivery_fast.asl.json")
    mutate(document)
    return document


def _every_retrier(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for state in document["States"].values():
        yield from state.get("Retry", [])


def _dangling_next(document: dict[str, Any]) -> None:
    document["States"]["Deliver"]["Next"] = "NoSuchState"


def _bad_path(document: dict[str, Any]) -> None:
    document["States"]["Deliver"]["ResultPath"] = "not a path"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [(_dangling_next, "MISSING_TRANSITION_TARGET"), (_bad_path, "ResultPath")],
    ids=["dangling Next", "bad ResultPath"],
)
def test_asl_validator_rejects_a_broken_structure(mutate: Any, reason: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.asl.json"
    broken.write_text(json.dumps(_broken(mutate)), encoding="utf-8")
    result = asl_validator(broken)
    assert result.returncode != 0 and reason in result.stdout + result.stderr, result.stdout


def _set_retry(field: str, value: Any) -> Any:
    def mutate(document: dict[str, Any]) -> None:
        for retrier in _every_retrier(document):
            retrier[field] = value

    return mutate


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("BackoffRate", 0.5, "BackoffRate"),
        ("JitterStrategy", "SOMETIMES", "SOMETIMES"),
        ("IntervalSeconds", 0, "IntervalSeconds"),
    ],
)
def test_moto_rejects_bad_retry_values(field: str, value: Any, message: str, stepfunctions: Any) -> None:
    from botocore.exceptions import ClientError

    text = json.dumps(_broken(_set_retry(field, value)))
    for placeholder in _placeholders("delivery_fast.asl.json"):
        text = text.replace("${" + placeholder + "}", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:x")
    with pytest.raises(ClientError) as refused:
        create(stepfunctions, f"broken-{field}", text, "EXPRESS")
    assert message in str(refused.value)
