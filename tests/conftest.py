"""Shared fixtures: an embedded AWS (moto + real handlers + real ASL) and message builders."""

from __future__ import annotations

import base64
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from functions.contract.settings_names import Setting, ToolVariable

# Never let a test reach a real AWS account.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)
# relay dev saves development credentials under RELAY_HOME; keep them out of the user's home.
os.environ.setdefault(ToolVariable.HOME, tempfile.mkdtemp(prefix="relay-home-"))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def make_message(**overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "messageId": f"msg-{uuid.uuid4().hex[:12]}",
        "senderId": "sender-a",
        "timestamp": now_iso(),
        "targetUrl": "https://example.com/hooks/orders",
        "body": {"order": 42},
    }
    message.update(overrides)
    return message


def ingest_input(message: dict[str, Any] | bytes, request_id: str | None = None) -> dict[str, Any]:
    raw = message if isinstance(message, bytes) else json.dumps(message).encode()
    return {
        "requestId": request_id or str(uuid.uuid4()),
        "senderId": "",
        "bodyBase64": base64.b64encode(raw).decode(),
    }


def template_without(action: str, directory: Path, handler: str | None = None) -> Path:
    """The current template with `action` taken out of the IAM policies (of `handler`'s role only, if given)."""
    from relay.local.synth import current_template

    document = json.loads(current_template().read_text(encoding="utf-8"))
    resources = document["Resources"]
    roles = [
        function["Properties"]["Role"]["Fn::GetAtt"][0]
        for function in resources.values()
        if function["Type"] == "AWS::Lambda::Function" and function["Properties"]["Handler"] == handler
    ]
    removed = 0
    for resource in resources.values():
        if resource["Type"] != "AWS::IAM::Policy":
            continue
        if handler is not None and {"Ref": roles[0]} not in resource["Properties"]["Roles"]:
            continue
        statements = resource["Properties"]["PolicyDocument"]["Statement"]
        for statement in statements:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            removed += action in actions
            statement["Action"] = [name for name in actions if name != action]
        resource["Properties"]["PolicyDocument"]["Statement"] = [s for s in statements if s["Action"]]
    assert removed, f"the template grants no {action}"
    path = directory / f"without-{action.replace(':', '-')}.template.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def target() -> Iterator[Any]:
    """Local HTTP targets for deliveries (relay/local/targets.py), one set per test module."""
    from relay.local.targets import TargetServer

    with TargetServer() as server:
        yield server


@pytest.fixture
def client(relay: Any) -> Any:
    """The development sender's API client of the module's `relay` (a started LocalRelay)."""
    from relay.client import RelayClient

    return RelayClient(relay.url, token=relay.dev_token)


@pytest.fixture
def local_aws() -> Iterator[Any]:
    from relay.local.emulator import LocalAws

    # The template's functions, with IAM enforced; these tests run the ingest machine without the
    # authorizer in front (as the handler tests of API Gateway's own checks do), so no sender is required.
    with LocalAws(time_scale=0.001, environment={Setting.REQUIRE_SENDER: "false"}) as local:
        yield local


@pytest.fixture
def post(local_aws: Any) -> Any:
    """Run the ingest machine like API Gateway would and return (statusCode, parsed body)."""

    def _post(message: dict[str, Any] | bytes, request_id: str | None = None) -> tuple[int, dict[str, Any]]:
        result = local_aws.start_sync_execution("relay-ingest", ingest_input(message, request_id))
        assert result["status"] == "SUCCEEDED", result
        answer = json.loads(result["output"])
        return int(answer["statusCode"]), json.loads(answer["body"])

    return _post
