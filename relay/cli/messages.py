"""`relay send`, `status`, `events` (`trace`), `list`, `replay` and `cancel`: a sender's messages."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from functions.domain.clock import iso, iso_seconds, parse_iso
from relay.cli.common import api_client, default_sender, finish, print_json, read_input
from relay.client import ApiAnswer, RelayClient


def parse_header(raw: str) -> tuple[str, str]:
    name, separator, value = raw.partition(":")
    if not separator:
        raise argparse.ArgumentTypeError(f"header '{raw}' must look like Name:value")
    return name.strip(), value.strip()


def build_message(args: argparse.Namespace, message: dict[str, Any] | None = None) -> dict[str, Any]:
    """The message to send: `message` (else --file's, else none) with the flags' fields, and an id,
    the sender and a timestamp where it has none."""
    if message is None:
        message = json.loads(read_input(args.file)) if args.file else {}
    assert message is not None
    if args.message_id or "messageId" not in message:
        message["messageId"] = args.message_id or f"msg-{uuid.uuid4().hex[:16]}"
    if args.sender_id or "senderId" not in message:
        message["senderId"] = args.sender_id or default_sender(args)
    if args.timestamp or "timestamp" not in message:
        message["timestamp"] = args.timestamp or iso_seconds(datetime.now(UTC))
    if args.target_url:
        message["targetUrl"] = args.target_url
    if args.method:
        message["method"] = args.method
    if args.header:
        message["headers"] = {**message.get("headers", {}), **dict(args.header)}
    if args.body is not None:
        message["body"] = args.body
    if args.body_file:
        message["body"] = Path(args.body_file).read_text(encoding="utf-8")
    return message


def read_batch(text: str) -> list[Any]:
    """A batch file's messages: a JSON array, or JSON lines (one message a line, blank lines skipped)."""
    if text.lstrip().startswith("["):
        messages = json.loads(text)
        if not isinstance(messages, list):  # pragma: no cover - a text starting with '[' is an array
            raise json.JSONDecodeError("not an array", text, 0)
        return messages
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def render_batch(body: dict[str, Any]) -> None:
    """One line per message, in order, then the counts."""
    counts: dict[str, int] = {}
    for index, result in enumerate(body["results"]):
        code, answer = result["statusCode"], result["body"]
        if code == 202:
            outcome, text = "accepted", f"{answer['messageId']}: {answer['status']}"
        elif code == 200:
            outcome, text = "duplicate", f"{answer['messageId']}: {answer['status']}"
        else:
            error = answer.get("error", {})
            paths = ", ".join(detail["path"] for detail in error.get("details", []))
            outcome, text = "rejected", f"{error.get('code')}: {error.get('message')}"
            text += f" ({paths})" if paths else ""
        counts[outcome] = counts.get(outcome, 0) + 1
        print(f"  [{index}] {code} {outcome} {text}")
    summary = ", ".join(f"{counts[name]} {name}" for name in ("accepted", "duplicate", "rejected") if name in counts)
    print(f"{len(body['results'])} messages: {summary}")


def cmd_send_batch(args: argparse.Namespace) -> int:
    """`relay send --batch FILE`: one POST /messages/batch; exit 1 unless every message was accepted
    or a duplicate. Messages without an id, a sender or a timestamp get one, as with --file."""
    if args.message_id:
        print("relay: --message-id names one message; give each message of a batch its own", file=sys.stderr)
        return 2
    batch = read_batch(read_input(args.batch))
    messages = [build_message(args, message) if isinstance(message, dict) else message for message in batch]
    answer = api_client(args).send_batch(messages)
    status = finish(answer, args.json, render_batch)
    results = answer.body.get("results", []) if answer.ok and isinstance(answer.body, dict) else []
    return status if status or all(200 <= result["statusCode"] < 300 for result in results) else 1


def cmd_send(args: argparse.Namespace) -> int:
    if args.batch:
        return cmd_send_batch(args)
    message = build_message(args)
    answer = api_client(args).send(message)

    def render(body: dict[str, Any]) -> None:
        label = "duplicate of" if body.get("duplicate") else "accepted"
        print(f"{label} {body['messageId']} (sender {body['senderId']}): {body['status']}")
        print(f"  accepted at {body['acceptedAt']}, expires at {body['expiresAt']}")

    return finish(answer, args.json, render)


def render_events(events: list[dict[str, Any]], indent: str = "    ") -> None:
    for event in events:
        details = {key: value for key, value in event.items() if key not in ("type", "at", "executionArn")}
        suffix = "  " + json.dumps(details, ensure_ascii=False) if details else ""
        print(f"{indent}{event.get('at')}  {event.get('type'):<18}{suffix}")


def render_status(body: dict[str, Any]) -> None:
    print(f"{body['messageId']} (sender {body['senderId']}): {body['status']}, attempts {body.get('attempts', 0)}")
    print(f"  {body.get('method', 'POST')} {body.get('targetUrl', '')}")
    print(f"  accepted {body.get('acceptedAt')}  updated {body.get('updatedAt')}  expires {body.get('expiresAt')}")
    if body.get("lastError"):
        print(f"  last error: {body['lastError']}")
    print("  events:")
    render_events(body.get("events", []))


def cmd_status(args: argparse.Namespace) -> int:
    return finish(api_client(args).status_with_history(args.message_id), args.json, render_status)


def render_runs(executions: list[dict[str, Any]]) -> None:
    """Each Step Functions run of the message: workflow, type, ARN and the console page that opens it."""
    if executions:
        print("  runs (open in the Step Functions console; EXPRESS runs as stacks.tracing allows):")
    for execution in executions:
        label = f"run {execution.get('run', 0)} {execution.get('workflow', '?')}"
        print(f"    {label:<16} {execution.get('type', '?'):<9} {execution['executionArn']}")
        print(f"    {'':<16} {'':<9} {execution['consoleUrl']}")


def cmd_events(args: argparse.Namespace) -> int:
    def render(body: dict[str, Any]) -> None:
        print(f"{body['messageId']}: {body['status']} after {body.get('attempts', 0)} attempt(s)")
        render_events(body.get("events", []), indent="  ")
        render_runs(body.get("executions", []))

    return finish(api_client(args).status_with_history(args.message_id), args.json, render)


def cmd_list(args: argparse.Namespace) -> int:
    client = api_client(args)
    items: list[dict[str, Any]] = []
    cursor = args.cursor
    while True:
        answer = client.list(args.status, args.limit, cursor)
        if not answer.ok:
            return finish(answer, args.json)
        items.extend(answer.body["items"])
        cursor = answer.body.get("nextCursor")
        if not args.all or not cursor:
            break
    if args.json:
        print_json({"items": items, "nextCursor": cursor})
        return 0
    for item in items:
        line = f"{item['acceptedAt']}  {item['messageId']:<40} {item['status']:<10} attempts {item.get('attempts', 0)}"
        print(line + (f"  {item['lastError']}" if item.get("lastError") else ""))
    if cursor:
        print(f"(more: --cursor {cursor})")
    return 0


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd])")
_DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_moment(raw: str, now: datetime | None = None) -> str:
    """`2h`, `30m`, `1.5d`, `45s` (that long ago) or an RFC 3339 date-time, as RFC 3339 in UTC."""
    match = _DURATION.fullmatch(raw.strip())
    if match:
        ago = timedelta(seconds=float(match.group(1)) * _DURATION_SECONDS[match.group(2)])
        return iso((now or datetime.now(UTC)) - ago)
    try:
        moment = parse_iso(raw.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is neither a duration (2h, 30m, 1d) nor an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{raw!r} has no time zone (add Z or +01:00)")
    return raw.strip()


def render_job(body: dict[str, Any]) -> None:
    job_filter = body.get("filter", {})
    window = f"{job_filter.get('status')} from {job_filter.get('since')} to {job_filter.get('until')}"
    print(
        f"replay job {body['jobId']}: {body['state']}  ({window}"
        + (f", origin {job_filter['origin']})" if job_filter.get("origin") else ")")
    )
    counters = ("matched", "replayed", "skipped", "failed")
    # While the job runs, `matched` is what it has found so far (it pages without counting first).
    so_far = "  (so far)" if body.get("state") == "RUNNING" else ""
    print("    " + "  ".join(f"{name} {body[name]}" for name in counters if name in body) + so_far)


def cmd_replay(args: argparse.Namespace) -> int:
    client = api_client(args)
    if args.job:
        return finish(client.replay_job(args.job), args.json, render_job)
    if args.status:
        if args.message_id:
            print("relay replay: give a MESSAGE_ID or --status, not both", file=sys.stderr)
            return 2
        job_filter = {"status": args.status}
        job_filter.update({name: value for name in ("since", "until", "origin") if (value := getattr(args, name))})
        answer = client.replay_many(job_filter)
        if not answer.ok or not args.wait:
            return finish(answer, args.json, render_job)
        return finish(_wait_for_job(client, str(answer.body["jobId"])), args.json, render_job)
    if not args.message_id:
        print("relay replay: give a MESSAGE_ID, --status (a bulk replay) or --job ID", file=sys.stderr)
        return 2

    def render(body: dict[str, Any]) -> None:
        print(f"replaying {body['messageId']}: {body['status']} (run {body['run']})")

    return finish(client.replay(args.message_id), args.json, render)


def _wait_for_job(client: RelayClient, job_id: str) -> ApiAnswer:
    while True:
        answer = client.replay_job(job_id)
        if not answer.ok or answer.body.get("state") != "RUNNING":
            return answer
        time.sleep(0.5)


def cmd_cancel(args: argparse.Namespace) -> int:
    def render(body: dict[str, Any]) -> None:
        print(f"{body['messageId']}: {body['status']}")

    return finish(api_client(args).cancel(args.message_id), args.json, render)
