"""POST /messages/batch through `relay dev` over real HTTP, sent with `relay send --batch` as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from functions.contract.settings_names import ToolVariable
from relay.cli import main
from relay.client import RelayClient
from relay.local.targets import TargetServer
from tests.conftest import make_message
from tests.e2e.conftest import RELAY_HOME, ROOT, RelayDev
from tests.support import wait_for


def relay_send_batch(relay: RelayDev, path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "relay.cli",
            "send",
            "--batch",
            str(path),
            "--url",
            relay.url,
            "--token",
            relay.dev_token,
            *flags,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, ToolVariable.HOME: str(RELAY_HOME)},
    )


def test_a_batch_of_100_is_one_answer_in_order_then_every_new_message_is_delivered(
    relay_dev_process: RelayDev, target: TargetServer, tmp_path: Path
) -> None:
    client = RelayClient(relay_dev_process.url, token=relay_dev_process.dev_token)
    # Given 100 messages to a healthy target, 2 of them already sent alone and 3 invalid
    messages = [make_message(senderId="dev", targetUrl=f"{target.url}/ok", body={"n": n}) for n in range(100)]
    already, invalid = {7, 70}, {0, 33, 98}
    for index in already:
        assert client.send(messages[index]).status == 202
    messages[0] = {**messages[0], "targetUrl": "ftp://example.com/x"}
    messages[33] = {**messages[33], "timestamp": "not a time"}
    messages[98] = {**messages[98], "headers": {"Host": "example.com"}}
    # (written as JSON lines)
    batch_file = tmp_path / "batch.jsonl"
    batch_file.write_text("\n".join(json.dumps(message) for message in messages) + "\n", encoding="utf-8")
    # When `relay send --batch FILE --json` sends them
    sent = relay_send_batch(relay_dev_process, batch_file, "--json")
    # Then one answer holds 95 x 202, 2 x 200 duplicate and 3 x 400, each in its message's place
    results = json.loads(sent.stdout)["results"]
    assert [result["statusCode"] for result in results] == [
        400 if index in invalid else 200 if index in already else 202 for index in range(100)
    ]
    assert all(results[index]["body"]["duplicate"] is True for index in already)
    assert [results[index]["body"]["error"]["details"][0]["path"] for index in sorted(invalid)] == [
        "$.targetUrl",
        "$.timestamp",
        "$.headers.Host",
    ]
    # And the command says not every message was accepted
    assert sent.returncode == 1
    # And every one of the 95 new messages is delivered
    new = [messages[index] for index in range(100) if index not in already | invalid]
    for message in new:
        assert wait_for(client, message["messageId"], timeout=120)["status"] == "DELIVERED"
    delivered_ids = {request.header("webhook-id") for request in target.requests_to("/ok")}
    assert {f"dev:{message['messageId']}" for message in new} <= delivered_ids


def test_relay_send_batch_prints_one_line_per_message_and_the_counts(
    relay_dev_process: RelayDev, target: TargetServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a JSON array of two messages without ids or timestamps (the CLI fills them in)
    batch_file = tmp_path / "batch.json"
    messages: list[dict[str, Any]] = [{"senderId": "dev", "targetUrl": f"{target.url}/ok", "body": "hi"}] * 2
    batch_file.write_text(json.dumps(messages), encoding="utf-8")
    url, token = relay_dev_process.url, relay_dev_process.dev_token
    # When it is sent
    status = main(["send", "--batch", str(batch_file), "--url", url, "--token", token])
    # Then each message is accepted under an id of its own, and the counts are printed
    printed = capsys.readouterr().out.splitlines()
    assert status == 0
    assert printed[0].startswith("  [0] 202 accepted msg-") and printed[1].startswith("  [1] 202 accepted msg-")
    assert printed[0].split()[3] != printed[1].split()[3]
    assert printed[-1] == "2 messages: 2 accepted"


def test_a_malformed_batch_is_refused_whole_over_http(relay_dev: str, dev_token: str) -> None:
    client = RelayClient(relay_dev, token=dev_token)
    # When the envelope is not {"messages": [1..100]}
    empty = client.request("POST", "/messages/batch", b'{"messages": []}')
    bare = client.request("POST", "/messages/batch", json.dumps([make_message(senderId="dev")]).encode())
    # Then the whole request is a 400 naming the field
    assert empty.status == 400 and empty.body["error"]["details"][0]["path"] == "$.messages"
    assert bare.status == 400 and bare.body["error"]["details"][0]["path"] == "$"
    # And the route takes only POST, behind the authorizer like every /messages route
    assert client.request("GET", "/messages/batch").status == 404
    assert RelayClient(relay_dev).request("POST", "/messages/batch", b'{"messages": []}').status == 401
