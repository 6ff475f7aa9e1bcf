"""`relay schedules set|list|show|delete|pause|resume` (cron schedules) and the parsing of
`relay send --delay 10m` / `--at TIME`."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from relay.cli.common import api_client, finish

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"(\d+)([smhd]?)")


def parse_delay(raw: str) -> int:
    """`90`, `90s`, `10m`, `2h`, `7d` (or `1h30m`): whole seconds."""
    text = raw.strip().lower()
    parts = _DURATION.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        raise argparse.ArgumentTypeError(f"delay '{raw}' must look like 90, 90s, 10m, 2h or 7d")
    return sum(int(number) * _UNITS[unit or "s"] for number, unit in parts)


def render_schedule(body: dict[str, Any]) -> None:
    state = "paused" if body.get("paused") else f"next {body['nextRunAt']}"
    message = body.get("message", {})
    print(f"{body['name']}: '{body['cron']}' ({body['timezone']}), {state}")
    print(f"  {message.get('method', 'POST')} {message.get('targetUrl')}")


def _schedule_body(args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.cron or not args.target_url:
        print("relay: schedules set needs --cron and --url (the firing's target)", file=sys.stderr)
        return None
    message: dict[str, Any] = {"targetUrl": args.target_url}
    if args.method:
        message["method"] = args.method
    if args.header:
        message["headers"] = dict(args.header)
    if args.body is not None:
        message["body"] = args.body
    body: dict[str, Any] = {"cron": args.cron, "message": message}
    if args.timezone:
        body["timezone"] = args.timezone
    return body


def cmd_schedules(args: argparse.Namespace) -> int:
    client, action, name = api_client(args), args.action, args.name
    if action != "list" and not name:
        print(f"relay: schedules {action} needs a NAME", file=sys.stderr)
        return 2
    if action != "set" and args.target_url:
        # Elsewhere --url is the API's base URL; here it names a firing's target, which only set takes.
        print(
            f"relay: schedules {action} takes no --url (the firing's target, for set); "
            "give the API's base URL as --api-url or RELAY_URL",
            file=sys.stderr,
        )
        return 2
    if action == "list":

        def render_list(body: dict[str, Any]) -> None:
            for item in body["items"]:
                render_schedule(item)
            if not body["items"]:
                print("no schedules")

        return finish(client.schedules(), args.json, render_list)
    if action == "set":
        body = _schedule_body(args)
        if body is None:
            return 2
        return finish(client.put_schedule(name, body), args.json, render_schedule)
    if action == "delete":
        return finish(client.delete_schedule(name), args.json, lambda body: print(json.dumps(body)))
    if action in ("pause", "resume"):
        return finish(client.pause_schedule(name, paused=action == "pause"), args.json, render_schedule)
    return finish(client.schedule(name), args.json, render_schedule)
