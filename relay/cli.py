"""The `relay` command line: run Relay locally and talk to a local or deployed API."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from functions.contract.lanes import DeliveryLane
from functions.contract.settings_names import PREFIX as SETTING_PREFIX
from functions.contract.settings_names import Setting, ToolVariable
from functions.domain.clock import iso, iso_seconds, parse_iso
from relay.client import DEFAULT_URL, ApiAnswer, RelayClient, load_credentials, save_credentials

DEFAULT_SENDER = "dev"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _client(args: argparse.Namespace) -> RelayClient:
    token = args.token or load_credentials(args.url).get("token")
    return RelayClient(args.url, token=token)


def _default_sender(args: argparse.Namespace) -> str:
    return str(os.environ.get(ToolVariable.SENDER_ID) or load_credentials(args.url).get("senderId") or DEFAULT_SENDER)


def _finish(answer: ApiAnswer, as_json: bool, render: Any = None) -> int:
    if as_json or not answer.ok or render is None:
        _print_json({"status": answer.status, "body": answer.body} if not as_json else answer.body)
    else:
        render(answer.body)
    return 0 if answer.ok else 1


# -- dev --------------------------------------------------------------------------------------------


def cmd_dev(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from relay.local.runtime import LocalRelay
    from relay.local.server import default_limits
    from relay.local.synth import SynthError, is_current
    from relay.local.template import TemplateError

    given = (("read_timeout", args.read_timeout), ("idle_timeout", args.idle_timeout))
    timeouts = {name: value for name, value in given if value is not None}
    if args.template is None and not is_current():
        print("Synthesizing the stack first (cdk.out is missing or older than the sources)...", flush=True)
    relay = LocalRelay(
        host=args.host,
        port=args.port,
        time_scale=args.time_scale,
        allow_private_targets=args.allow_private_targets,
        template=args.template,
        server_limits=replace(default_limits(), **timeouts),
        environment=dict(args.env or []),
    )
    try:
        relay.start()
    except (FileNotFoundError, SynthError, TemplateError) as error:
        relay.stop()
        print(f"relay dev cannot run the template: {error}", file=sys.stderr)
        return 2
    saved = save_credentials(
        relay.url,
        {
            "senderId": DEFAULT_SENDER,
            "token": relay.dev_token,
            "signingSecret": relay.dev_secret,
            "adminToken": relay.admin_token,
        },
    )
    url_flag = "" if relay.url == DEFAULT_URL else f" --url {relay.url}"
    now = iso_seconds(datetime.now(UTC))
    print(f"Relay is running at {relay.url} (embedded AWS, no account needed). Ctrl-C stops it.")
    print(f"Development sender '{DEFAULT_SENDER}' (the CLI uses it by default; saved in {saved}):")
    print(f"  API token:      {relay.dev_token}")
    print(f"  signing secret: {relay.dev_secret}  (receivers verify deliveries with it)")
    print(f"Admin token (relay senders ... sends it; new at every start): {relay.admin_token}")
    print("Send a message:")
    print(f'  relay send{url_flag} --target-url https://example.com/webhook --body \'{{"hello":"world"}}\'')
    print(f"  curl -s -X POST {relay.url}/messages -H 'Content-Type: application/json' \\")
    print(f"    -H 'Authorization: Bearer {relay.dev_token}' \\")
    example = json.dumps(
        {
            "messageId": "m-1",
            "senderId": DEFAULT_SENDER,
            "timestamp": now,
            "targetUrl": "https://example.com/webhook",
            "body": {"hello": "world"},
        },
        separators=(",", ":"),
    )
    print(f"    -d '{example}'")
    print(f"Then: relay status m-1{url_flag}  |  relay events m-1{url_flag}  |  relay list --status DELIVERED")
    private = "allowed" if args.allow_private_targets else "blocked"
    print(f"Private targets are {private}; time scale {args.time_scale}.")
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


def _parse_setting(raw: str) -> tuple[str, str]:
    name, separator, value = raw.partition("=")
    if not separator or not name.startswith(SETTING_PREFIX):
        raise argparse.ArgumentTypeError("expected RELAY_NAME=VALUE (a RELAY_* variable of the functions)")
    return name, value


def _parse_header(raw: str) -> tuple[str, str]:
    name, separator, value = raw.partition(":")
    if not separator:
        raise argparse.ArgumentTypeError(f"header '{raw}' must look like Name:value")
    return name.strip(), value.strip()


def _read(path: str) -> str:
    return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")


def build_message(args: argparse.Namespace, message: dict[str, Any] | None = None) -> dict[str, Any]:
    """The message to send: `message` (else --file's, else none) with the flags' fields, and an id,
    the sender and a timestamp where it has none."""
    if message is None:
        message = json.loads(_read(args.file)) if args.file else {}
    assert message is not None
    if args.message_id or "messageId" not in message:
        message["messageId"] = args.message_id or f"msg-{uuid.uuid4().hex[:16]}"
    if args.sender_id or "senderId" not in message:
        message["senderId"] = args.sender_id or _default_sender(args)
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
    batch = read_batch(_read(args.batch))
    messages = [build_message(args, message) if isinstance(message, dict) else message for message in batch]
    answer = _client(args).send_batch(messages)
    status = _finish(answer, args.json, render_batch)
    results = answer.body.get("results", []) if answer.ok and isinstance(answer.body, dict) else []
    return status if status or all(200 <= result["statusCode"] < 300 for result in results) else 1


def cmd_send(args: argparse.Namespace) -> int:
    if args.batch:
        return cmd_send_batch(args)
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
    return _finish(_client(args).status(args.message_id), args.json, render_status)


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

    return _finish(_client(args).status(args.message_id), args.json, render)


def cmd_list(args: argparse.Namespace) -> int:
    client = _client(args)
    items: list[dict[str, Any]] = []
    cursor = args.cursor
    while True:
        answer = client.list(args.status, args.limit, cursor)
        if not answer.ok:
            return _finish(answer, args.json)
        items.extend(answer.body["items"])
        cursor = answer.body.get("nextCursor")
        if not args.all or not cursor:
            break
    if args.json:
        _print_json({"items": items, "nextCursor": cursor})
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
    client = _client(args)
    if args.job:
        return _finish(client.replay_job(args.job), args.json, render_job)
    if args.status:
        if args.message_id:
            print("relay replay: give a MESSAGE_ID or --status, not both", file=sys.stderr)
            return 2
        job_filter = {"status": args.status}
        job_filter.update({name: value for name in ("since", "until", "origin") if (value := getattr(args, name))})
        answer = client.replay_many(job_filter)
        if not answer.ok or not args.wait:
            return _finish(answer, args.json, render_job)
        return _finish(_wait_for_job(client, str(answer.body["jobId"])), args.json, render_job)
    if not args.message_id:
        print("relay replay: give a MESSAGE_ID, --status (a bulk replay) or --job ID", file=sys.stderr)
        return 2

    def render(body: dict[str, Any]) -> None:
        print(f"replaying {body['messageId']}: {body['status']} (run {body['run']})")

    return _finish(client.replay(args.message_id), args.json, render)


def _wait_for_job(client: RelayClient, job_id: str) -> ApiAnswer:
    while True:
        answer = client.replay_job(job_id)
        if not answer.ok or answer.body.get("state") != "RUNNING":
            return answer
        time.sleep(0.5)


def cmd_cancel(args: argparse.Namespace) -> int:
    def render(body: dict[str, Any]) -> None:
        print(f"{body['messageId']}: {body['status']}")

    return _finish(_client(args).cancel(args.message_id), args.json, render)


# -- senders ----------------------------------------------------------------------------------------


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
        _print_json(result)
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
    return _finish(answer, True)


# -- targets ----------------------------------------------------------------------------------------


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
    client = _client(args)
    if args.action == "list":
        return _finish(client.targets(), args.json, render_targets)
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

        return _finish(client.put_target(args.origin, args.rate, args.concurrency), args.json, render_set)
    if args.action == "resume":

        def render_resumed(body: dict[str, Any]) -> None:
            change = f"{body['previousState']} -> {body['state']}"
            print(f"{body['origin']}: {change}, {body['resumed']} message(s) re-driven")

        return _finish(client.resume_target(args.origin), args.json, render_resumed)
    if args.action == "health":

        def render_health(body: dict[str, Any]) -> None:
            line = f"{body['origin']}: {body['state']}, {body.get('consecutiveFailures', 0)} consecutive failure(s)"
            print(line + (f", next probe at {body['nextProbeAt']}" if body.get("nextProbeAt") else ""))

        return _finish(client.target_health(args.origin), args.json, render_health)
    return _finish(
        client.delete_target(args.origin), args.json, lambda body: print(f"{body['origin']}: limits removed")
    )


# -- demo -------------------------------------------------------------------------------------------

# A shortened schedule so the demo ends in seconds; `relay dev` runs the one in cdk.json.
DEMO_POLICY: dict[str, Any] = {
    DeliveryLane.FAST: {"intervalSeconds": 1, "maxAttempts": 2},
    DeliveryLane.SLOW: {"initialWaitSeconds": 2, "intervalSeconds": 2, "maxAttempts": 2},
}
DEMO_TARGETS = {
    "healthy": "/ok",
    "fails twice, then OK": "/flaky/2",
    "always 500": "/fail",
    "404": "/missing",
}
# A receiver that answers 429 above 4 requests in any second, on its own origin (limits are per
# origin), and the limit the demo sets on it (PUT /targets): 2/s with a burst of 2 never sends it
# more than 4 in a second, so every message goes through at the first try.
DEMO_RATE_LIMITED_PATH = "/ratelimit/4"
DEMO_RATE_LIMIT = 2.0
DEMO_RATE_LIMITED_MESSAGES = 8


def peak_per_second(times: list[float]) -> int:
    """The most requests any one-second window holds (what a rate limit promises to keep low)."""
    ordered = sorted(times)
    peak, start = 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= 1.0:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


# A second demo server (its own origin, so its own circuit breaker): down for a while, then OK. Its
# messages' failures open the target, they go PAUSED (not FAILED), and a probe finds it back up.
DEMO_OUTAGE_PATH = "/outage/8"
DEMO_OUTAGE_MESSAGES = 4
# The demo's circuit breaker: open after 10 consecutive failed attempts (more than the always-500
# message makes: it still ends FAILED), probe after 2 s, then every 4 s.
DEMO_BREAKER: dict[str, str] = {
    Setting.BREAKER_FAILURE_THRESHOLD: "10",
    Setting.BREAKER_PROBE_AFTER_SECONDS: "2",
    Setting.BREAKER_MAX_PROBE_AFTER_SECONDS: "4",
}


def cmd_demo(args: argparse.Namespace) -> int:
    import time

    from relay.local.runtime import LocalRelay
    from relay.local.targets import TargetServer

    with (
        TargetServer() as targets,
        TargetServer() as limited,
        TargetServer() as outage,
        LocalRelay(
            port=0,
            time_scale=args.time_scale,
            policy=DEMO_POLICY,
            environment=DEMO_BREAKER,
            reconcile_every_seconds=1.0,
        ) as relay,
    ):
        client = RelayClient(relay.url, token=relay.dev_token)
        print(f"Local relay at {relay.url}, demo targets at {targets.url} (time scale {args.time_scale}).")
        print("Retry policy for the demo: fast lane 3 attempts, slow lane 3 attempts (see cdk.json for the real one).")
        client.put_target(limited.url, DEMO_RATE_LIMIT, None)
        print(
            f"Target {limited.url} answers 429 above 4 requests a second; "
            f"its limit: `relay targets set {limited.url} --rate {DEMO_RATE_LIMIT:g}`."
        )

        print(
            f"Circuit breaker for the demo: a target opens after {DEMO_BREAKER[Setting.BREAKER_FAILURE_THRESHOLD]} "
            f"consecutive failed attempts; {outage.url} is down for a while, then recovers (PAUSED, then DELIVERED)."
        )

        def send(label: str, url: str) -> str:
            message: dict[str, Any] = {
                "messageId": f"demo-{uuid.uuid4().hex[:8]}",
                "senderId": DEFAULT_SENDER,
                "timestamp": iso_seconds(datetime.now(UTC)),
                "targetUrl": url,
                "body": {"demo": label},
            }
            answer = client.send(message)
            print(f"  sent {message['messageId']} -> {label:<22} {answer.status} {answer.body.get('status', '')}")
            return str(message["messageId"])

        sent = {label: send(label, f"{targets.url}{path}") for label, path in DEMO_TARGETS.items()}
        for n in range(1, DEMO_OUTAGE_MESSAGES + 1):
            sent[f"down a while #{n}"] = send(f"down a while #{n}", f"{outage.url}{DEMO_OUTAGE_PATH}")
        limited_ids = [
            send(f"rate-limited {n + 1}/{DEMO_RATE_LIMITED_MESSAGES}", f"{limited.url}{DEMO_RATE_LIMITED_PATH}")
            for n in range(DEMO_RATE_LIMITED_MESSAGES)
        ]
        deadline = time.monotonic() + args.timeout
        records: dict[str, dict[str, Any]] = {}
        limited_records: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            records = {label: client.status(mid).body for label, mid in sent.items()}
            limited_records = [client.status(mid).body for mid in limited_ids]
            if all(
                r.get("status") in ("DELIVERED", "FAILED", "CANCELLED") for r in [*records.values(), *limited_records]
            ):
                break
            time.sleep(0.2)
        if args.json:
            _print_json({**records, "rate-limited": limited_records})
            return 0
        print()
        print(f"{'target':<24}{'status':<12}{'attempts':<10}last error")
        for label, record in records.items():
            status, attempts = record.get("status", "?"), record.get("attempts", 0)
            print(f"{label:<24}{status:<12}{attempts!s:<10}{record.get('lastError', '')}")
        for label, record in records.items():
            print(f"\n{label}: {record.get('messageId')}")
            render_events(record.get("events", []), indent="  ")
        statuses = sorted({str(r.get("status")) for r in limited_records})
        attempts = max((int(r.get("attempts") or 0) for r in limited_records), default=0)
        peak = peak_per_second([request.at for request in limited.received])
        print(
            f"\nrate-limited target (limit {DEMO_RATE_LIMIT:g}/s): {len(limited_records)} messages "
            f"{'/'.join(statuses)}, at most {attempts} attempt(s) each, at most {peak} request(s) in any second"
        )
    return 0


# -- parser -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="Relay: an HTTP message relay in your AWS account.")
    sub = parser.add_subparsers(dest="command", required=True)

    def api_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--url", default=os.environ.get(ToolVariable.URL, DEFAULT_URL), help="API base URL")
        command.add_argument("--token", default=os.environ.get(ToolVariable.TOKEN), help="API token")
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
    dev.add_argument(
        "--template",
        type=Path,
        help="run this synthesized template (default: cdk.out/Relay.template.json, synthesized when stale)",
    )
    dev.add_argument(
        "--env",
        action="append",
        type=_parse_setting,
        metavar="RELAY_NAME=VALUE",
        help="override a function setting locally, e.g. RELAY_BREAKER_FAILURE_THRESHOLD=5 (repeatable)",
    )
    dev.add_argument("--read-timeout", type=float, help="seconds to receive a whole request (408; default 10)")
    dev.add_argument("--idle-timeout", type=float, help="seconds a keep-alive connection may idle (default 5)")
    dev.set_defaults(handler=cmd_dev)

    send = sub.add_parser("send", help="post a message")
    api_options(send)
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

    for name, handler, help_text in (
        ("status", cmd_status, "show a message's status, attempts and events"),
        ("events", cmd_events, "show a message's timeline and its Step Functions runs"),
        ("cancel", cmd_cancel, "stop a pending or retrying message"),
    ):
        command = sub.add_parser(name, help=help_text)
        api_options(command)
        command.add_argument("message_id")
        command.set_defaults(handler=handler)

    replaying = sub.add_parser(
        "replay",
        help="deliver a finished message again (MESSAGE_ID), or every match of a filter (--status ...)",
        description="relay replay MESSAGE_ID | relay replay --status FAILED [--since 2h] [--until T] "
        "[--origin URL] [--wait] | relay replay --job JOB_ID",
    )
    api_options(replaying)
    replaying.add_argument("message_id", nargs="?", help="one DELIVERED, FAILED or CANCELLED message")
    replaying.add_argument("--status", choices=["FAILED", "CANCELLED"], help="bulk: replay messages in this status")
    replaying.add_argument(
        "--since", type=parse_moment, help="bulk: reached the status since (2h, 30m, 1d or RFC 3339; default 24h)"
    )
    replaying.add_argument("--until", type=parse_moment, help="bulk: ... and until (default: now)")
    replaying.add_argument("--origin", help="bulk: only messages to this target origin (scheme://host[:port])")
    replaying.add_argument("--wait", action="store_true", help="bulk: wait until the job has finished")
    replaying.add_argument("--job", metavar="JOB_ID", help="show a bulk replay job's progress")
    replaying.set_defaults(handler=cmd_replay)
    sub._name_parser_map["trace"] = sub._name_parser_map["events"]  # `relay trace` is `relay events`

    listing = sub.add_parser("list", help="list your messages in one status, newest first")
    api_options(listing)
    statuses = ["PENDING", "DELIVERING", "RETRYING", "PAUSED", "DELIVERED", "FAILED", "CANCELLED"]
    listing.add_argument("--status", required=True, choices=statuses)
    listing.add_argument("--limit", type=int)
    listing.add_argument("--cursor")
    listing.add_argument("--all", action="store_true", help="follow every page")
    listing.set_defaults(handler=cmd_list)

    targets = sub.add_parser(
        "targets", help="your targets: delivery limits per origin (rate, concurrency) and circuit breaker"
    )
    api_options(targets)
    targets.add_argument(
        "action",
        choices=["set", "list", "delete", "resume", "health"],
        help="set/list/delete limits; resume: close its circuit by hand and re-drive its PAUSED messages; "
        "health: its circuit breaker",
    )
    targets.add_argument("origin", nargs="?", help="scheme://host[:port] of the target, or * for your default")
    targets.add_argument("--rate", type=float, help="attempts per second (set)")
    targets.add_argument("--concurrency", type=int, help="attempts in flight at once (set)")
    targets.set_defaults(handler=cmd_targets)

    senders = sub.add_parser("senders", help="manage senders (local relay, or a deployment with --stack/--table)")
    api_options(senders)
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
    senders.add_argument("--usage-plan-id", help="the stack's UsagePlanId output (with --table)")
    senders.set_defaults(handler=cmd_senders)
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
