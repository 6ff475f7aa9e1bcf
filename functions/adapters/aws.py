"""boto3 clients, created once per process (they are thread-safe and reuse connections).

Everything a warm Lambda keeps between invocations that is bound to the AWS it talks to (clients,
Powertools parameter providers and their value caches, objects built from the settings) is
registered here with `on_reset`, so `reset_process_state()` forgets all of it at once. On AWS that
never happens; `relay dev` and the tests call it whenever an embedded AWS starts or stops, so no
client, cached secret or setting of one embedded AWS reaches the next.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CLIENT_CONFIG = Config(
    # At most 2 x (1 s + 3 s) per call, well inside a step's Lambda timeout, so a slow call becomes
    # a retryable domain error instead of a timed-out function; the state machines retry the step.
    connect_timeout=1,
    read_timeout=3,
    retries={"mode": "standard", "max_attempts": 2},
)

_RESETS: list[Callable[[], None]] = []


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CLIENT_CONFIG)  # type: ignore[call-overload]


def on_reset(forget: Callable[[], None]) -> Callable[[], None]:
    """Register a function that forgets process state bound to the current AWS endpoint."""
    _RESETS.append(forget)
    return forget


def reset_process_state() -> None:
    """Forget every client and cache bound to the current AWS (see the module docstring)."""
    client.cache_clear()
    for forget in _RESETS:
        forget()
