"""`relay dev` as a user runs it: a subprocess on a free loopback port, spoken to over real HTTP."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.common import spawn_relay_dev, stop_process
from functions.contract.settings_names import ToolVariable

ROOT = Path(__file__).resolve().parents[2]
# relay dev saves its development credentials here; tests keep them out of the user's home.
# (setdefault: this module may be imported twice, as pytest's conftest and as tests.e2e.conftest.)
RELAY_HOME = Path(os.environ.setdefault(ToolVariable.HOME, tempfile.mkdtemp(prefix="relay-home-")))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RelayDev:
    process: subprocess.Popen[str]
    url: str
    output: list[str] = field(default_factory=list)

    def _printed(self, pattern: str, what: str) -> str:
        # The banner is printed just after the server starts answering; give it a moment.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for line in list(self.output):
                match = re.search(pattern, line)
                if match:
                    return match.group(1)
            time.sleep(0.05)
        raise AssertionError(f"relay dev did not print the development sender's {what}")

    @property
    def dev_token(self) -> str:
        return self._printed(r"(rly_[A-Za-z0-9_-]+)", "token")

    @property
    def dev_secret(self) -> str:
        return self._printed(r"(whsec_[A-Za-z0-9+/=]+)", "signing secret")

    def stop(self) -> None:
        stop_process(self.process)


def start_relay_dev(*extra: str) -> RelayDev:
    port = free_port()
    process, output = spawn_relay_dev(["--port", str(port), *extra], str(RELAY_HOME))
    relay = RelayDev(process, f"http://127.0.0.1:{port}", output)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("relay dev exited:\n" + "".join(relay.output))
        try:
            with urllib.request.urlopen(f"{relay.url}/health", timeout=1):
                return relay
        except OSError:
            time.sleep(0.2)
    relay.stop()
    raise RuntimeError("relay dev did not start within 60 s")


@pytest.fixture(scope="module")
def relay(target: Any) -> Iterator[Any]:
    """`relay dev`'s runtime in this process (for tests that look inside it), delivering to `target`."""
    from relay.local.runtime import LocalRelay

    local = LocalRelay(port=0, time_scale=0.01).start()
    try:
        yield local
    finally:
        target.stop()  # releases /hang first, so no worker waits on it while stopping
        local.stop()


@pytest.fixture(scope="module")
def relay_dev_process() -> Iterator[RelayDev]:
    relay = start_relay_dev("--time-scale", "0.01")
    try:
        yield relay
    finally:
        relay.stop()


@pytest.fixture(scope="module")
def relay_dev(relay_dev_process: RelayDev) -> str:
    return relay_dev_process.url


@pytest.fixture(scope="module")
def dev_token(relay_dev_process: RelayDev) -> str:
    return relay_dev_process.dev_token
