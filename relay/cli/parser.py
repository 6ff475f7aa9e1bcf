"""The `relay` command line's parser: every command, its flags, and the function that runs it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from functions.contract.settings_names import ToolVariable
from relay.cli.demo import cmd_demo
from relay.cli.dev import cmd_dev, parse_setting
from relay.cli.manage import cmd_senders, cmd_targets
from relay.cli.messages import (
    cmd_cancel,
    cmd_events,
    cmd_list,
    cmd_replay,
    cmd_send,
    cmd_status,
    parse_header,
    parse_moment,
)
from relay.cli.schedules import cmd_schedules, parse_delay
from relay.client import DEFAULT_URL

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="Relay: an HTTP message relay in your AWS account.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_dev(sub)
    _add_send(sub)
    demo = sub.add_parser("demo", help="start a local relay and demo targets, send one message to each, show them")
    demo.add_argument("--time-scale", type=float, default=0.1)
    demo.add_argument("--timeout", type=float, default=120)
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(handler=cmd_demo)
    for name, handler, help_text in (
        ("status", cmd_status, "show a message's status, attempts and events"),
        ("events", cmd_events, "show a message's timeline and its Step Functions runs"),
        ("cancel", cmd_cancel, "stop a pending or retrying message"),
    ):
        _api_command(sub, name, handler, help_text).add_argument("message_id")
    _add_replay(sub)
    sub._name_parser_map["trace"] = sub._name_parser_map["events"]  # `relay trace` is `relay events`
    _add_list(sub)
    _add_targets(sub)
    _add_schedules(sub)
    _add_senders(sub)
    return parser


def _api_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    help_text: str,
    description: str | None = None,
    url_flags: tuple[str, ...] = ("--url", "--api-url"),
) -> argparse.ArgumentParser:
    """A command that calls the API: its parser, with the API's base URL, --token and --json, run by
    `handler`. Every API command takes --api-url for the base URL; all but `relay schedules` also
    --url, which there names the firing's target (the issue's spelling)."""
    command = sub.add_parser(name, help=help_text, description=description)
    command.add_argument(
        *url_flags, dest="url", default=os.environ.get(ToolVariable.URL, DEFAULT_URL), help="API base URL"
    )
    command.add_argument("--token", default=os.environ.get(ToolVariable.TOKEN), help="API token")
    command.add_argument("--json", action="store_true", help="print the raw JSON answer")
    command.set_defaults(handler=handler)
    return command


def _request_options(
    command: argparse.ArgumentParser,
    target_help: str | None,
    body_help: str,
    target_flags: tuple[str, ...] = ("--target-url",),
) -> None:
    """What the request to the target is, in `relay send` and `relay schedules` alike."""
    command.add_argument(*target_flags, dest="target_url", help=target_help)
    command.add_argument("--method", choices=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
    command.add_argument("--header", action="append", type=parse_header, help="Name:value (repeatable)")
    command.add_argument("--body", help=body_help)


def _add_dev(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser("dev", help="run Relay locally (embedded AWS, no account, no Docker)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--time-scale", type=float, default=1.0, help="multiply retry waits by this (e.g. 0.01)")
    dev.add_argument(
        "--allow-private-targets",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="deliver to private/loopback addresses (on locally; deployments keep it off)",
    )
    dev.add_argument(
        "--template",
        type=Path,
        help="run this synthesized template (default: cdk.out/Relay.template.json, synthesized when stale)",
    )
    dev.add_argument(
        "--env",
        action="append",
        type=parse_setting,
        metavar="RELAY_NAME=VALUE",
        help="override a function setting locally, e.g. RELAY_BREAKER_FAILURE_THRESHOLD=5 (repeatable)",
    )
    dev.add_argument("--read-timeout", type=float, help="seconds to receive a whole request (408; default 10)")
    dev.add_argument("--idle-timeout", type=float, help="seconds a keep-alive connection may idle (default 5)")
    dev.set_defaults(handler=cmd_dev)


def _add_send(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = _api_command(sub, "send", cmd_send, "post a message")
    source = send.add_mutually_exclusive_group()
    source.add_argument("--file", help="a JSON message file ('-' for stdin); flags override its fields")
    source.add_argument(
        "--batch",
        help="a file of up to 100 messages, a JSON array or JSON lines ('-' for stdin), sent as one "
        "POST /messages/batch; flags (but --message-id) override every message's fields",
    )
    send.add_argument("--message-id")
    send.add_argument("--sender-id")
    send.add_argument("--timestamp")
    _request_options(send, None, "the request body as text")
    send.add_argument("--body-file", help="read the body from a file")
    due = send.add_mutually_exclusive_group()
    due.add_argument("--delay", type=parse_delay, help="deliver after this long: 90s, 10m, 2h, 7d (at most a year)")
    due.add_argument("--at", help="deliver at this RFC 3339 time with a zone, e.g. 2026-12-24T09:00:00+01:00")


def _add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replaying = _api_command(
        sub,
        "replay",
        cmd_replay,
        "deliver a finished message again (MESSAGE_ID), or every match of a filter (--status ...)",
        "relay replay MESSAGE_ID | relay replay --status FAILED [--since 2h] [--until T] "
        "[--origin URL] [--wait] | relay replay --job JOB_ID",
    )
    replaying.add_argument("message_id", nargs="?", help="one DELIVERED, FAILED or CANCELLED message")
    replaying.add_argument("--status", choices=["FAILED", "CANCELLED"], help="bulk: replay messages in this status")
    replaying.add_argument(
        "--since", type=parse_moment, help="bulk: reached the status since (2h, 30m, 1d or RFC 3339; default 24h)"
    )
    replaying.add_argument("--until", type=parse_moment, help="bulk: ... and until (default: now)")
    replaying.add_argument("--origin", help="bulk: only messages to this target origin (scheme://host[:port])")
    replaying.add_argument("--wait", action="store_true", help="bulk: wait until the job has finished")
    replaying.add_argument("--job", metavar="JOB_ID", help="show a bulk replay job's progress")


def _add_list(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = _api_command(sub, "list", cmd_list, "list your recent messages (of every status, or one), newest first")
    statuses = ["SCHEDULED", "PENDING", "DELIVERING", "RETRYING", "PAUSED", "DELIVERED", "FAILED", "CANCELLED"]
    listing.add_argument("--status", choices=statuses, help="only messages in this status (default: every status)")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--cursor")
    listing.add_argument("--all", action="store_true", help="follow every page")


def _add_targets(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    targets = _api_command(
        sub, "targets", cmd_targets, "your targets: delivery limits per origin (rate, concurrency) and circuit breaker"
    )
    targets.add_argument(
        "action",
        choices=["set", "list", "delete", "resume", "health"],
        help="set/list/delete limits; resume: close its circuit by hand and re-drive its PAUSED messages; "
        "health: its circuit breaker",
    )
    targets.add_argument("origin", nargs="?", help="scheme://host[:port] of the target, or * for your default")
    targets.add_argument("--rate", type=float, help="attempts per second (set)")
    targets.add_argument("--concurrency", type=int, help="attempts in flight at once (set)")


def _add_schedules(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schedules = _api_command(
        sub,
        "schedules",
        cmd_schedules,
        "cron schedules: each firing sends a message",
        description="relay schedules set NAME --cron '*/5 * * * *' --url URL [--body ...] | "
        "relay schedules list|show|delete|pause|resume [NAME]. Here --url is where each firing goes; "
        "the API's base URL is --api-url (or RELAY_URL).",
        url_flags=("--api-url",),
    )
    schedules.add_argument("action", choices=["set", "list", "show", "delete", "pause", "resume"])
    schedules.add_argument("name", nargs="?")
    schedules.add_argument("--cron", help="five fields: minute hour day-of-month month day-of-week (set)")
    schedules.add_argument("--timezone", help="IANA zone the cron is read in, default UTC (set)")
    _request_options(
        schedules, "where each firing is delivered (set)", "each firing's body as text", ("--url", "--target-url")
    )


def _add_senders(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    senders = _api_command(
        sub, "senders", cmd_senders, "manage senders (local relay, or a deployment with --stack/--table)"
    )
    senders.add_argument("action", choices=["create", "list", "rotate-token", "rotate-secret", "disable", "enable"])
    senders.add_argument("sender_id", nargs="?")
    senders.add_argument("--rate", type=float, help="requests per second for this sender")
    senders.add_argument("--burst", type=int, help="burst size for this sender")
    senders.add_argument("--grace-hours", type=float, default=24.0, help="how long old tokens keep working")
    senders.add_argument(
        "--admin-token",
        default=os.environ.get(ToolVariable.ADMIN_TOKEN),
        help="relay dev's admin token (default: the one it saved for --url)",
    )
    senders.add_argument("--stack", help="a deployed stack's name: manage its senders (AWS credentials needed)")
    senders.add_argument("--table", help="a deployed table's name (instead of --stack)")
    senders.add_argument(
        "--usage-plan-id",
        help="the usage plan senders' API keys join (with --table; default: the stack's UsagePlanId, found by "
        "the plan's relay:table tag)",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (OSError, json.JSONDecodeError) as error:
        print(f"relay: {error}", file=sys.stderr)
        return 2
