"""`make screenshots`: a picture of each page of the web console, kept in docs/console/ for the README.

A fresh relay (tests/support.py's console_relay) with two local targets gets a few messages (some
delivered, one refused with a 404 and replayed, some to a target that keeps failing until its
circuit opens) and a target with limits; headless Chromium then signs in and photographs the
sign-in page, the messages, the failed message and the targets at 1280x800.

    python -m tests.browser.screenshots     # or: make screenshots
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from relay.client import RelayClient
from relay.local.targets import TargetServer
from tests.support import (
    ChromiumMissing,
    chromium_executable,
    console_relay,
    dev_message,
    wait_for,
    wait_for_circuit,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"
VIEWPORT = {"width": 1280, "height": 800}
LIMITED_ORIGIN = "https://hooks.example.com"


def seed(client: RelayClient, good: TargetServer, down: TargetServer) -> str:
    """Messages and targets worth looking at; returns the id of the failed (then replayed) message."""
    for message_id, path in (
        ("order-1042.created", "/ok"),
        ("order-1043.created", "/ok"),
        ("invoice-77.paid", "/missing"),
    ):
        body = {"order": message_id.split(".")[0], "total": "42.00"}
        client.send(dev_message(f"{good.url}{path}", messageId=message_id, headers={"X-Shop": "7"}, body=body))
        wait_for(client, message_id)
    client.replay("invoice-77.paid")
    wait_for(client, "invoice-77.paid", ("FAILED",))
    for number in range(3):
        client.send(dev_message(f"{down.url}/fail", messageId=f"refund-{number + 9}.issued"))
    wait_for_circuit(client, down.url, "OPEN")
    client.put_target(LIMITED_ORIGIN, 5, 2)
    return "invoice-77.paid"


def photograph(page: Any, relay: Any, failed: str) -> list[Path]:
    """Each page of the console, signed in as the development sender."""
    shots: list[Path] = []

    def shot(name: str, full_page: bool = False) -> None:
        path = DOCS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        shots.append(path)

    page.goto(f"{relay.url}/console")
    page.get_by_label("API token").wait_for()
    shot("sign-in")
    page.get_by_label("API token").fill(relay.dev_token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name=failed, exact=True).wait_for()
    shot("messages")
    page.get_by_role("link", name=failed, exact=True).click()
    page.get_by_role("table", name="Every event, oldest first").get_by_text("REPLAYED").wait_for()
    shot("message", full_page=True)
    page.get_by_role("link", name="Targets").click()
    page.get_by_role("row").filter(has_text="OPEN").wait_for()
    shot("targets", full_page=True)
    return shots


def main() -> int:
    try:
        chromium = chromium_executable()
    except ChromiumMissing as missing:
        print(missing, file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")  # the relay's own warnings are not the point here
    DOCS.mkdir(parents=True, exist_ok=True)
    with TargetServer() as good, TargetServer() as down, console_relay() as relay:
        failed = seed(RelayClient(relay.url, relay.dev_token), good, down)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True)
            try:
                shots = photograph(browser.new_page(viewport=VIEWPORT), relay, failed)
            finally:
                browser.close()
    for path in shots:
        print(f"wrote {path.relative_to(DOCS.parents[1])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
