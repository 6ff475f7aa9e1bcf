"""boto3 clients, created once per process (they are thread-safe and reuse connections)."""

from __future__ import annotations

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


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CLIENT_CONFIG)  # type: ignore[call-overload]


def reset_clients() -> None:
    """Forget cached clients (tests and the local runtime swap the AWS backend underneath)."""
    client.cache_clear()
