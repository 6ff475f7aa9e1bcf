"""`relay senders` (sender admin, local or on a deployment) and `relay targets` (limits and circuit breakers)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from relay.cli.common import api_client, finish, print_json
from relay.client import RelayClient, load_credentials


def _deployment_admin(args: argparse.Namespace) -> Any:
    """SenderAdmin against a deployment's table (named directly or read from the stack outputs)."""
    from relay.admin import SenderAdmin

    table, plan = args.table, args.usage_plan_id
    if args.stack:
        import boto3

        stack = boto3.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        table, plan = table or outputs.get("TableName"), plan or outputs.get("UsagePlanId")
    return SenderAdmin(table, usage_plan_id=plan) if table else None


def cmd_senders(args: argparse.Namespace) -> int:
    from functions.domain.exceptions import RelayError

    admin = _deployment_admin(args)
    action, sender = args.action, args.sender_id
    if action != "list" and not sender:
        print("relay: this action needs a SENDER_ID", file=sys.stderr)
        return 2
    if admin is not None:
        try:
            result: Any
            if action == "create":
                result = admin.create(sender, args.rate, args.burst)
            elif action == "list":
                result = admin.list()
            elif action == "rotate-token":
                result = admin.rotate_token(sender, args.grace_hours)
            elif action == "rotate-secret":
                result = admin.rotate_secret(sender)
            else:
                result = admin.set_status(sender, enabled=action == "enable")
        except RelayError as error:
            print(f"relay: {error}", file=sys.stderr)
            for detail in getattr(error, "details", []):
                print(f"  {detail.path}: {detail.message}", file=sys.stderr)
            return 1
        print_json(result)
        return 0
    client = RelayClient(args.url, token=args.admin_token or load_credentials(args.url).get("adminToken"))
    if action == "list":
        answer = client.admin("GET", "/senders")
    elif action == "create":
        payload: dict[str, Any] = {"senderId": sender}
        payload.update({k: v for k, v in (("ratePerSecond", args.rate), ("burst", args.burst)) if v is not None})
        answer = client.admin("POST", "/senders", payload)
    elif action == "rotate-token":
        answer = client.admin("POST", f"/senders/{sender}/rotate-token", {"graceHours": args.grace_hours})
    else:
        answer = client.admin("POST", f"/senders/{sender}/{action}", {})
    return finish(answer, True)


def _limit(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def render_targets(body: dict[str, Any]) -> None:
    items = body.get("items", [])
    if not items:
        print(
            "no targets with limits or an open circuit (every target is unlimited unless the deployment sets a default)"
        )
        return
    print(f"{'origin':<40}{'rate/s':<8}{'concurrency':<13}{'in flight':<11}{'tokens':<8}circuit")
    for item in items:
        health = item.get("health") or {}
        circuit = f"{health['state']} ({health.get('consecutiveFailures', 0)} failed)" if health else "-"
        print(
            f"{item['origin']:<40}{_limit(item.get('ratePerSecond')):<8}{_limit(item.get('maxConcurrency')):<13}"
            f"{item.get('inFlight', 0)!s:<11}{_limit(item.get('tokens')):<8}{circuit}"
        )


def cmd_targets(args: argparse.Namespace) -> int:
    client = api_client(args)
    if args.action == "list":
        return finish(client.targets(), args.json, render_targets)
    if not args.origin:
        print(f"relay targets {args.action}: give the target's ORIGIN (scheme://host[:port], or * for your default)")
        return 2
    if args.action == "set":
        if args.rate is None and args.concurrency is None:
            print("relay targets set: give --rate and/or --concurrency (`relay targets delete` removes limits)")
            return 2

        def render_set(body: dict[str, Any]) -> None:
            rate, concurrency = _limit(body.get("ratePerSecond")), _limit(body.get("maxConcurrency"))
            print(f"{body['origin']}: rate {rate}/s, concurrency {concurrency}")

        return finish(client.put_target(args.origin, args.rate, args.concurrency), args.json, render_set)
    if args.action == "resume":

        def render_resumed(body: dict[str, Any]) -> None:
            change = f"{body['previousState']} -> {body['state']}"
            print(f"{body['origin']}: {change}, {body['resumed']} message(s) re-driven")

        return finish(client.resume_target(args.origin), args.json, render_resumed)
    if args.action == "health":

        def render_health(body: dict[str, Any]) -> None:
            line = f"{body['origin']}: {body['state']}, {body.get('consecutiveFailures', 0)} consecutive failure(s)"
            print(line + (f", next probe at {body['nextProbeAt']}" if body.get("nextProbeAt") else ""))

        return finish(client.target_health(args.origin), args.json, render_health)
    return finish(client.delete_target(args.origin), args.json, lambda body: print(f"{body['origin']}: limits removed"))
