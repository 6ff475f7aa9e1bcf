"""Fuzzing fixtures: `relay dev` in-process on a free port, with nothing delivered.

The workers (queue consumer and reconciler) are stopped right after start: fuzzed messages that
the API accepts stay PENDING instead of being delivered to whatever URL a generator made up.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from relay.local.runtime import LocalRelay


def quiet_relay() -> LocalRelay:
    relay = LocalRelay(port=0, time_scale=0.001).start()
    for worker in relay.workers:
        worker.stop()
    if relay.reconciler is not None:
        relay.reconciler.stop()
    return relay


@pytest.fixture(scope="module")
def local_relay() -> Iterator[LocalRelay]:
    relay = quiet_relay()
    try:
        yield relay
    finally:
        relay.stop()


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request; the answer's status and JSON body (raw text when it is not JSON)."""
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")
