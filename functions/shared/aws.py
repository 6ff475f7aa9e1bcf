"""boto3 clients, created once per process (they are thread-safe and reuse connections)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CLIENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    # Retries inside one step stay short; the state machines' Retry policies do the rest.
    retries={"mode": "standard", "max_attempts": 3},
)


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CLIENT_CONFIG)  # type: ignore[call-overload]


def reset_clients() -> None:
    """Forget cached clients (tests and the local runtime swap the AWS backend underneath)."""
    client.cache_clear()
