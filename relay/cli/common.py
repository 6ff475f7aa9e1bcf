"""What the commands share: the API client for `--url`/`--token`, the default sender, answers printed,
and the demo's messages."""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from functions.contract.settings_names import ToolVariable
from functions.domain.clock import iso_seconds
from relay.client import ApiAnswer, RelayClient, load_credentials

DEFAULT_SENDER = "dev"


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def api_client(args: argparse.Namespace) -> RelayClient:
    token = args.token or load_credentials(args.url).get("token")
    return RelayClient(args.url, token=token)


def default_sender(args: argparse.Namespace) -> str:
    return str(os.environ.get(ToolVariable.SENDER_ID) or load_credentials(args.url).get("senderId") or DEFAULT_SENDER)


def finish(answer: ApiAnswer, as_json: bool, render: Callable[[Any], None] | None = None) -> int:
    """Print an answer (as JSON with --json, on an error or without a renderer) and give the exit status."""
    if as_json or not answer.ok or render is None:
        print_json({"status": answer.status, "body": answer.body} if not as_json else answer.body)
    else:
        render(answer.body)
    return 0 if answer.ok else 1


def read_input(path: str) -> str:
    """A file's text, or stdin's for `-`."""
    return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")


def send_demo_message(client: RelayClient, label: str, url: str, extra: dict[str, Any] | None = None) -> str:
    """Send one of `relay demo`'s messages (`extra`: its optional fields), print the answer, and
    give its id."""
    message: dict[str, Any] = {
        "messageId": f"demo-{uuid.uuid4().hex[:8]}",
        "senderId": DEFAULT_SENDER,
        "timestamp": iso_seconds(datetime.now(UTC)),
        "targetUrl": url,
        "body": {"demo": label},
        **(extra or {}),
    }
    answer = client.send(message)
    print(f"  sent {message['messageId']} -> {label:<22} {answer.status} {answer.body.get('status', '')}")
    return str(message["messageId"])
