"""`relay schedules set NAME --cron ... --url URL`: the issue's spelling of a firing's target, beside
`--target-url`; the API's base URL is then `--api-url` (elsewhere also `--url`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from relay import cli
from relay.client import ApiAnswer, RelayClient

API = "http://127.0.0.1:8123"
TARGET = "https://hooks.example.com/report"


@dataclass
class Sent:
    """The requests the CLI made: (base URL, method, path, JSON body)."""

    requests: list[tuple[str, str, str, Any]] = field(default_factory=list)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    """The API client records each request and answers as PUT /schedules/{name} would."""
    record = Sent()

    def request(client: RelayClient, method: str, path: str, body: bytes | None = None, **_: Any) -> ApiAnswer:
        document = json.loads(body) if body else None
        record.requests.append((client.base_url, method, path, document))
        schedule = {"name": path.rsplit("/", 1)[-1], "cron": "*/5 * * * *", "timezone": "UTC"}
        return ApiAnswer(
            200, {**schedule, "nextRunAt": "2026-12-07T12:05:00Z", "message": (document or {}).get("message")}
        )

    monkeypatch.setattr(RelayClient, "request", request)
    return record


@pytest.mark.parametrize("flag", ["--url", "--target-url"])
def test_schedules_set_takes_the_firing_s_target_as_url_or_target_url(
    sent: Sent, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the spelling (`--url`) or the long one (`--target-url`), with the API at --api-url
    argv = ["schedules", "set", "nightly", "--cron", "*/5 * * * *", flag, TARGET, "--body", "hi"]
    # When the schedule is set
    assert cli.main([*argv, "--api-url", API, "--token", "rly_test"]) == 0
    # Then one PUT goes to the API, with the target as the firing's targetUrl
    assert sent.requests == [
        (API, "PUT", "/schedules/nightly", {"cron": "*/5 * * * *", "message": {"targetUrl": TARGET, "body": "hi"}})
    ]
    assert TARGET in capsys.readouterr().out


def test_schedules_set_without_a_target_names_the_flag(sent: Sent, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a schedule without a target
    # When it is set
    assert cli.main(["schedules", "set", "nightly", "--cron", "*/5 * * * *", "--token", "rly_test"]) == 2
    # Then nothing is sent and the error names --url
    assert sent.requests == []
    assert "needs --cron and --url" in capsys.readouterr().err


def test_url_on_another_schedules_action_points_to_api_url(sent: Sent, capsys: pytest.CaptureFixture[str]) -> None:
    # Given --url on `relay schedules list`, as the other commands take the API's base URL
    # When it runs
    assert cli.main(["schedules", "list", "--url", API, "--token", "rly_test"]) == 2
    # Then nothing is sent, and the error says where the API's base URL goes instead
    assert sent.requests == []
    assert "--api-url" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--url", "--api-url"])
def test_other_commands_still_take_the_api_base_url_as_url_or_api_url(
    sent: Sent, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given `relay status` with the API's base URL as --url or --api-url
    # When it runs
    cli.main(["status", "m-1", flag, API, "--token", "rly_test", "--json"])
    capsys.readouterr()
    # Then it asks that API
    assert [(base, method, path) for base, method, path, _ in sent.requests] == [(API, "GET", "/messages/m-1")]
