"""`relay dev`: run Relay locally (embedded AWS, no account, no Docker) until stopped."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from functions.contract.settings_names import PREFIX as SETTING_PREFIX
from functions.domain.clock import iso_seconds
from relay.cli.common import DEFAULT_SENDER
from relay.client import DEFAULT_URL, save_credentials

if TYPE_CHECKING:
    from relay.local.runtime import LocalRelay


def parse_setting(raw: str) -> tuple[str, str]:
    name, separator, value = raw.partition("=")
    if not separator or not name.startswith(SETTING_PREFIX):
        raise argparse.ArgumentTypeError("expected RELAY_NAME=VALUE (a RELAY_* variable of the functions)")
    return name, value


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
    _print_welcome(relay, args)
    _serve_until_stopped(relay)
    return 0


def _print_welcome(relay: LocalRelay, args: argparse.Namespace) -> None:
    """Where Relay runs, the development sender's credentials (saved for the CLI), and how to start."""
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
    print(f"Or look in a browser: {relay.url}/console (sign in with the API token above).")
    private = "allowed" if args.allow_private_targets else "blocked"
    print(f"Private targets are {private}; time scale {args.time_scale}.")
    sys.stdout.flush()


def _serve_until_stopped(relay: LocalRelay) -> None:
    """Until Ctrl-C or SIGTERM; then stop the local relay."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        relay.stop()
