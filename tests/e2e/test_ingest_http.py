"""POST /messages against `relay dev` over real HTTP, as a new user would."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import make_message as _make_message


def make_message(**fields: Any) -> dict[str, Any]:
    return _make_message(**{"senderId": "dev", **fields})


TOKEN: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _token(dev_token: str) -> None:
    TOKEN["value"] = dev_token


def http(method: str, url: str, body: bytes | None = None, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token or TOKEN['value']}"}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post_message(base_url: str, message: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return http("POST", f"{base_url}/messages", json.dumps(message).encode())


def test_accept_duplicate_conflict_over_http(relay_dev: str) -> None:
    message = make_message()
    # When a valid message is posted, Then 202 PENDING
    status, body = post_message(relay_dev, message)
    assert (status, body["status"]) == (202, "PENDING")
    # When the same message is posted again, Then 200 duplicate with its current status
    status, body = post_message(relay_dev, message)
    assert (
        status == 200
        and body["duplicate"] is True
        and body["status"] in ("PENDING", "DELIVERING", "RETRYING", "DELIVERED", "FAILED")
    )
    # When the same id comes with a different body, Then 409
    status, body = post_message(relay_dev, {**message, "body": "other"})
    assert (status, body["error"]["code"]) == (409, "MESSAGE_ID_CONFLICT")


def test_validation_errors_name_the_field(relay_dev: str) -> None:
    missing = make_message()
    missing.pop("targetUrl")
    status, body = post_message(relay_dev, missing)
    assert status == 400 and body["error"]["details"][0]["path"] == "$.targetUrl"
    status, body = post_message(relay_dev, make_message(targetUrl="ftp://x"))
    assert status == 400 and [d["path"] for d in body["error"]["details"]] == ["$.targetUrl"]
    status, body = http("POST", f"{relay_dev}/messages", b"{not json")
    assert status == 400 and body["error"]["code"] == "VALIDATION_ERROR"


def test_fifty_concurrent_posts_of_one_message_accept_once(relay_dev: str) -> None:
    message = make_message()
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = sorted(status for status, _ in pool.map(lambda _: post_message(relay_dev, message), range(50)))
    assert statuses == [200] * 49 + [202]


def test_cli_send_and_status(relay_dev: str) -> None:
    # Given the CLI pointed at the local relay (it uses the development sender relay dev saved)
    base = [sys.executable, "-m", "relay.cli"]
    sent = subprocess.run(
        [
            *base,
            "send",
            "--url",
            relay_dev,
            "--message-id",
            "cli-1",
            "--target-url",
            "https://example.com/in",
            "--body",
            "hello",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert json.loads(sent.stdout)["status"] == "PENDING"
    # When the status is asked for, Then the record and its events are printed
    shown = subprocess.run(
        [*base, "status", "cli-1", "--url", relay_dev, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    record = json.loads(shown.stdout)
    assert record["messageId"] == "cli-1" and record["body"] == "hello"
    assert [event["type"] for event in record["events"]][:2] == ["RECEIVED", "ENQUEUED"]


def test_cli_send_twice_with_one_message_id_answers_duplicate(relay_dev: str) -> None:
    # Given a message sent with the CLI a minute ago
    base = [sys.executable, "-m", "relay.cli", "send", "--url", relay_dev, "--message-id", "cli-twice", "--json"]
    base += ["--target-url", "https://example.com/in", "--body", "hello"]
    minute_ago = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="seconds").replace("+00:00", "Z")
    first = subprocess.run([*base, "--timestamp", minute_ago], capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    # When the same command runs again (the CLI stamps the current time)
    second = subprocess.run(base, capture_output=True, text=True)
    # Then it answers 200 duplicate with the stored record, not 409
    assert second.returncode == 0, second.stdout + second.stderr
    answer = json.loads(second.stdout)
    assert answer["duplicate"] is True
    assert answer["acceptedAt"] == json.loads(first.stdout)["acceptedAt"]
