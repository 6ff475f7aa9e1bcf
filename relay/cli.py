"""The `relay` command line: run Relay locally and talk to a local or deployed API."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay.client import DEFAULT_URL, ApiAnswer, RelayClient

DEFAULT_SENDER = "dev"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _client(args: argparse.Namespace) -> RelayClient:
    return RelayClient(args.url, token=args.token)


def _finish(answer: ApiAnswer, as_json: bool, render: Any = None) -> int:
    if as_json or not answer.ok or render is None:
        _print_json({"status": answer.status, "body": answer.body} if not as_json else answer.body)
    else:
        render(answer.body)
    return 0 if answer.ok else 1


# -- dev --------------------------------------------------------------------------------------------


def cmd_dev(args: argparse.Namespace) -> int:
    from relay.local.runtime import LocalRelay

    relay = LocalRelay(
        host=args.host,
        port=args.port,
        time_scale=args.time_scale,
        allow_private_targets=args.allow_private_targets,
    )
    relay.start()
    print(f"Relay is running at {relay.url} (embedded AWS, no account needed). Ctrl-C stops it.")
    print(f"Development sender '{DEFAULT_SENDER}' signs deliveries with {relay.dev_secret} (shown once).")
    print("Send a message:")
    print(f'  relay send --url {relay.url} --target-url https://example.com/webhook --body \'{{"hello":"world"}}\'')
    print(f"  curl -s -X POST {relay.url}/messages -H 'Content-Type: application/json' \\")
    print(
        '    -d \'{"messageId":"m-1","senderId":"dev","timestamp":"'
        + datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        + '","targetUrl":"https://example.com/webhook","body":{"hello":"world"}}\''
    )
    print(
        f"Private targets are {'allowed' if args.allow_private_targets else 'blocked'}; time scale {args.time_scale}."
    )
    sys.stdout.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        relay.stop()
    return 0


# -- send / status ----------------------------------------------------------------------------------


def _parse_header(raw: str) -> tuple[str, str]:
    name, separator, value = raw.partition(":")
    if not separator:
        raise argparse.ArgumentTypeError(f"header '{raw}' must look like Name:value")
    return name.strip(), value.strip()


def build_message(args: argparse.Namespace) -> dict[str, Any]:
    message: dict[str, Any] = {}
    if args.file:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        message = json.loads(text)
    if args.message_id or "messageId" not in message:
        message["messageId"] = args.message_id or f"msg-{uuid.uuid4().hex[:16]}"
    if args.sender_id or "senderId" not in message:
        message["senderId"] = args.sender_id or os.environ.get("RELAY_SENDER_ID", DEFAULT_SENDER)
    if args.timestamp or "timestamp" not in message:
        message["timestamp"] = args.timestamp or datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
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


def cmd_send(args: argparse.Namespace) -> int:
    message = build_message(args)
    answer = _client(args).send(message)

    def render(body: dict[str, Any]) -> None:
        label = "duplicate of" if body.get("duplicate") else "accepted"
        print(f"{label} {body['messageId']} (sender {body['senderId']}): {body['status']}")
        print(f"  accepted at {body['acceptedAt']}, expires at {body['expiresAt']}")

    return _finish(answer, args.json, render)


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
    sender = args.sender_id or os.environ.get("RELAY_SENDER_ID", DEFAULT_SENDER)
    answer = _client(args).status(args.message_id, sender)
    return _finish(answer, args.json, render_status)


# -- demo -------------------------------------------------------------------------------------------

# A shortened schedule so the demo ends in seconds; `relay dev` runs the one in cdk.json.
DEMO_POLICY = {
    "fastLane": {"intervalSeconds": 1, "maxAttempts": 2},
    "slowLane": {"initialWaitSeconds": 2, "intervalSeconds": 2, "maxAttempts": 2},
}
DEMO_TARGETS = {
    "healthy": "/ok",
    "fails twice, then OK": "/flaky/2",
    "always 500": "/fail",
    "404": "/missing",
}


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from relay.local.runtime import LocalRelay
    from relay.local.targets import TargetServer

    with TargetServer() as targets, LocalRelay(port=0, time_scale=args.time_scale, policy=DEMO_POLICY) as relay:
        client = RelayClient(relay.url)
        print(f"Local relay at {relay.url}, demo targets at {targets.url} (time scale {args.time_scale}).")
        print("Retry policy for the demo: fast lane 3 attempts, slow lane 3 attempts (see cdk.json for the real one).")
        sent: dict[str, str] = {}
        for label, path in DEMO_TARGETS.items():
            message: dict[str, Any] = {
                "messageId": f"demo-{uuid.uuid4().hex[:8]}",
                "senderId": DEFAULT_SENDER,
                "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                "targetUrl": f"{targets.url}{path}",
                "body": {"demo": label},
            }
            answer = client.send(message)
            print(f"  sent {message['messageId']} -> {label:<22} {answer.status} {answer.body.get('status', '')}")
            sent[label] = str(message["messageId"])
        deadline = time.monotonic() + args.timeout
        records: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            records = {label: client.status(mid, DEFAULT_SENDER).body for label, mid in sent.items()}
            if all(r.get("status") in ("DELIVERED", "FAILED", "CANCELLED") for r in records.values()):
                break
            time.sleep(0.2)
        if args.json:
            _print_json(records)
            return 0
        print()
        print(f"{'target':<24}{'status':<12}{'attempts':<10}last error")
        for label, record in records.items():
            status, attempts = record.get("status", "?"), record.get("attempts", 0)
            print(f"{label:<24}{status:<12}{attempts!s:<10}{record.get('lastError', '')}")
        for label, record in records.items():
            print(f"\n{label}: {record.get('messageId')}")
            render_events(record.get("events", []), indent="  ")
    return 0


# -- parser -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="Relay: an HTTP message relay in your AWS account.")
    sub = parser.add_subparsers(dest="command", required=True)

    def api_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--url", default=os.environ.get("RELAY_URL", DEFAULT_URL), help="API base URL")
        command.add_argument("--token", default=os.environ.get("RELAY_TOKEN"), help="API token")
        command.add_argument("--json", action="store_true", help="print the raw JSON answer")

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
    dev.set_defaults(handler=cmd_dev)

    send = sub.add_parser("send", help="post a message")
    api_options(send)
    send.add_argument("--file", help="a JSON message file ('-' for stdin); flags override its fields")
    send.add_argument("--message-id")
    send.add_argument("--sender-id")
    send.add_argument("--timestamp")
    send.add_argument("--target-url")
    send.add_argument("--method", choices=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
    send.add_argument("--header", action="append", type=_parse_header, help="Name:value (repeatable)")
    send.add_argument("--body", help="the request body as text")
    send.add_argument("--body-file", help="read the body from a file")
    send.set_defaults(handler=cmd_send)

    demo = sub.add_parser("demo", help="start a local relay and demo targets, send one message to each, show them")
    demo.add_argument("--time-scale", type=float, default=0.1)
    demo.add_argument("--timeout", type=float, default=120)
    demo.add_argument("--json", action="store_true")
    demo.set_defaults(handler=cmd_demo)

    status = sub.add_parser("status", help="show a message's status and events")
    api_options(status)
    status.add_argument("message_id")
    status.add_argument("--sender-id")
    status.set_defaults(handler=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (OSError, json.JSONDecodeError) as error:
        print(f"relay: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
