"""The web console in a real browser: headless Chromium, driven by Playwright, against a relay.

The browser is the system's Chromium (Debian's `chromium` package), launched by path: Playwright's
own browser download is never used, so these tests run without network. Without a Chromium they
FAIL, saying how to get one: a console that was never opened in a browser must not pass as tested.

One relay (`relay dev`'s runtime, in-process) serves the API and the console for a test module,
with two local targets: `good` (answers per path: /ok, /missing, ...) and `down` (another origin,
whose /fail opens its circuit after 3 failures, tests/support.py CONSOLE_BREAKER). Each test gets
a fresh browser context (its own sessionStorage) and sees every message the module has sent, so
tests name their own messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from relay.client import RelayClient
from relay.local.targets import TargetServer
from tests.support import ChromiumMissing, chromium_executable, console_relay

# Playwright's waits (a refresh of the list is every 5 s, of a message every 2 s).
EXPECT_TIMEOUT_MS = 20_000
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture(scope="session")
def chromium() -> str:
    try:
        return chromium_executable()
    except ChromiumMissing as missing:
        pytest.fail(str(missing), pytrace=False)


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Any]:
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("The browser tests need Playwright: pip install -e '.[dev]'.", pytrace=False)
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Targets:
    good: TargetServer
    down: TargetServer


@pytest.fixture(scope="module")
def targets() -> Iterator[Targets]:
    with TargetServer() as good, TargetServer() as down:
        yield Targets(good, down)


# Per module: one embedded AWS runs in a process at a time, and the other suites start their own.
@pytest.fixture(scope="module")
def relay() -> Iterator[Any]:
    with console_relay() as started:
        yield started


@pytest.fixture(scope="module")
def client(relay: Any) -> RelayClient:
    return RelayClient(relay.url, relay.dev_token)


@dataclass
class ConsolePage:
    """One tab on the console, and what it logged and asked for."""

    page: Any
    url: str
    token: str
    errors: list[str] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)

    def open(self, route: str = "") -> None:
        self.page.goto(f"{self.url}/console{route}")

    def sign_in(self) -> None:
        self.open()
        self.page.get_by_label("API token").fill(self.token)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.get_by_role("heading", name="Messages").wait_for()

    def outside_requests(self) -> list[str]:
        return [request.url for request in self.requests if not request.url.startswith(f"{self.url}/")]


@pytest.fixture
def console(browser: Any, relay: Any) -> Iterator[ConsolePage]:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    tab = ConsolePage(page, relay.url, relay.dev_token)
    page.on("console", lambda message: tab.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: tab.errors.append(str(error)))
    page.on("request", lambda request: tab.requests.append(request))
    try:
        yield tab
    finally:
        context.close()
